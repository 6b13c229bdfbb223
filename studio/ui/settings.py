"""Every persisted setting, declared once: name, type, default, description. Stored with QSettings.
The generation fields take their defaults from the request (`studio.recipe.request`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from studio.engine.memory import MemoryPreset
from studio.recipe.request import default, knobs  # a generation field's default and choices are the request's


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    description: str
    choices: tuple[str, ...] = ()  # the values it may take; any other (a newer Studio's) reads as the default


SETTINGS: tuple[Setting, ...] = (
    Setting("prompt", str, "a large red circle in the center, blue background", "the last prompt"),
    Setting("negative_prompt", str, "", "the last negative prompt"),
    Setting("steps", int, default("steps"), "denoising steps"),
    Setting("cfg", float, default("cfg"), "classifier-free guidance scale"),
    Setting("seed", int, default("seed"), "the seed of the next generation"),
    Setting("seed_locked", bool, False, "keep the seed instead of picking a new one each run"),
    Setting("width", int, 0, "image width in pixels (0: the model's native size)"),
    Setting("height", int, 0, "image height in pixels (0: the model's native size)"),
    Setting("scheduler", str, default("scheduler"), "sampler", knobs()["scheduler"].choices),
    Setting("strength", float, default("strength"), "denoising strength for image-to-image, inpaint and outpaint"),
    Setting("batch", int, default("batch_size"), "images per click (seed, seed+1, ...)"),
    Setting("variation_strength", float, default("variation_strength"), "how far variations move from the seed"),
    Setting("mask_grow", int, default("mask_grow"), "grow the painted mask by this many pixels"),
    Setting("mask_feather", int, default("mask_feather"), "soften the mask edge by this many pixels"),
    Setting("inpaint_area", str, default("inpaint_area"), "repaint the whole image or only a box around the mask",
            knobs()["inpaint_area"].choices),
    Setting("padding", int, default("padding"), "padding around the mask for 'only masked'"),
    Setting("outpaint_fill", str, default("outpaint_fill"), "how a canvas extension is prefilled",
            knobs()["outpaint_fill"].choices),
    Setting("model", str, default("model"), "the model to load at start"),
    Setting("memory", str, "auto", "GPU memory preset: auto, high, low or lowest",
            tuple(p.value for p in MemoryPreset)),
    Setting("vaes", str, "{}", "each model's VAE override from the library, as JSON: model -> VAE path"),
    Setting("window_geometry", bytes, b"", "main window size and place"),
    Setting("window_state", bytes, b"", "dock layout"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


class Settings:
    """Typed access to QSettings; a value of the wrong type reads back as the default."""

    def __init__(self, path: Path | None = None) -> None:
        self._q = (QSettings(str(path), QSettings.Format.IniFormat) if path is not None
                   else QSettings("Studio", "Studio"))

    def get(self, name: str) -> Any:
        setting = _BY_NAME[name]
        value = self._q.value(name, setting.default)
        try:
            if setting.type is bool and isinstance(value, str):
                return value.lower() == "true"
            if setting.type is bytes:
                return bytes(value) if value else b""
            value = setting.type(value)
        except (TypeError, ValueError):
            return setting.default
        return setting.default if setting.choices and value not in setting.choices else value

    def set(self, name: str, value: Any) -> None:
        if name not in _BY_NAME:
            raise KeyError(name)
        self._q.setValue(name, value)

    def sync(self) -> None:
        self._q.sync()
