"""The Upscale command in the window: a small dialog, then a job on the backend thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QSpinBox,
    QWidget,
)

from studio.engine.upscale import LANCZOS
from studio.recipe.request import HIRES_MAX_SCALE as MAX_SCALE
from studio.recipe.request import default, knobs

DEFAULT_SCALE = 4.0  # the ESRGAN family's native factor


class RedrawGroup(QGroupBox):
    """Tiled redraw's denoise, tile and overlap (the request's redraw fields); unchecked: a plain upscale."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Redraw detail (tiled diffusion)", parent)
        self.setCheckable(True)
        self.setChecked(False)
        self.setToolTip("Then repaint the upscaled picture tile by tile at the model's size, with the picture's own "
                        "prompt, model and seed: detail instead of blur (Ultimate SD Upscale's way)")
        k = knobs()
        denoise = k["redraw_denoise"]
        self.denoise = QDoubleSpinBox(decimals=2, minimum=denoise.step, maximum=denoise.high, singleStep=0.05,
                                      value=default("redraw_denoise"))
        self.tile = self._spin("redraw_tile")
        self.tile.setSpecialValueText("model's size")  # 0
        self.tile.setSuffix(" px")
        self.overlap = self._spin("redraw_overlap")
        self.overlap.setSuffix(" px")
        form = QFormLayout(self)
        for label, widget, name in (("Denoise", self.denoise, "redraw_denoise"), ("Tile", self.tile, "redraw_tile"),
                                    ("Overlap", self.overlap, "redraw_overlap")):
            widget.setToolTip(k[name].help[:1].upper() + k[name].help[1:])
            form.addRow(label, widget)

    @staticmethod
    def _spin(name: str) -> QSpinBox:
        k = knobs()[name]
        assert k.low is not None and k.high is not None
        return QSpinBox(minimum=int(k.low), maximum=int(k.high), singleStep=int(k.step), value=default(name))

    def fields(self) -> dict[str, Any] | None:
        """The redraw fields (without the scale and upscaler), or None when unchecked."""
        if not self.isChecked():
            return None
        return dict(redraw_denoise=self.denoise.value(), redraw_tile=self.tile.value(),
                    redraw_overlap=self.overlap.value())


class UpscaleDialog(QDialog):
    """Factor and upscaler for one picture."""

    def __init__(self, upscalers: list[str], size: tuple[int, int] | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Upscale")
        self.scale = QDoubleSpinBox(decimals=2, minimum=1.0, maximum=MAX_SCALE, singleStep=0.5, value=DEFAULT_SCALE)
        self.scale.setSuffix(" ×")
        self.upscaler = QComboBox()
        self.upscaler.addItems([LANCZOS, *sorted(upscalers)])
        self.upscaler.setToolTip("Lanczos, or an upscaler file (ESRGAN family) from the model library, run in "
                                 "tiles so any size fits")
        self.redraw = RedrawGroup()
        form = QFormLayout(self)
        form.addRow("Upscale by", self.scale)
        form.addRow("Upscaler", self.upscaler)
        form.addRow(self.redraw)
        if size is not None:
            self.result_size = QComboBox()  # read-only line: what the picture becomes
            self.result_size.setEnabled(False)
            form.addRow("Result", self.result_size)
            self.scale.valueChanged.connect(lambda v: self._show_size(size, v))
            self._show_size(size, self.scale.value())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _show_size(self, size: tuple[int, int], scale: float) -> None:
        self.result_size.clear()
        self.result_size.addItem(f"{round(size[0] * scale)} × {round(size[1] * scale)} px")

    def choice(self) -> tuple[float, str]:
        return self.scale.value(), self.upscaler.currentText()

    def redraw_fields(self) -> dict[str, Any] | None:
        """Every redraw field of the request when Redraw detail is on (the scale and upscaler too), else None."""
        fields = self.redraw.fields()
        if fields is None:
            return None
        scale, upscaler = self.choice()
        return dict(redraw_scale=scale, redraw_upscaler=upscaler, **fields)


def upscale_task(scale: float, upscaler: str, recipe: dict[str, Any], parent_id: int | None,
                 path: Path | None = None, image: Image.Image | None = None) -> Any:
    """A backend task: the picture (read from `path` on the worker, or given) upscaled as a new result."""

    def task(engine: Any, on_step: Any, should_stop: Any) -> list[Any]:
        from studio.engine.enlarge import upscale_picture

        picture = image
        if picture is None and path is not None:
            with Image.open(path) as opened:
                picture = opened.convert("RGB")
        assert picture is not None
        return [upscale_picture(engine, picture, scale, upscaler, recipe, parent_id, on_step, should_stop)]

    return task
