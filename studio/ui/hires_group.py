"""The Hires fix group of the generation controls (off by default)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QSpinBox, QWidget

from studio.engine.upscale import LANCZOS
from studio.recipe.request import HIRES_MAX_SCALE as MAX_SCALE
from studio.recipe.request import GenerationRequest

_DEFAULTS = {f.name: f.default for f in fields(GenerationRequest)}
SCALE_SHOWN = 2.0  # what the scale box offers when the group is switched on (A1111's default)


class HiresGroup(QGroupBox):
    """Scale, steps, denoise and upscaler of the second pass; unchecked means one pass only."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Hires fix", parent)
        self.setCheckable(True)
        self.setChecked(False)
        self.setToolTip("Draw at the model's size, upscale, then repaint at the larger size: detail instead of "
                        "repeated objects")
        self.scale = QDoubleSpinBox(decimals=2, minimum=1.0, maximum=MAX_SCALE, singleStep=0.25, value=SCALE_SHOWN)
        self.scale.setSuffix(" ×")
        self.steps = QSpinBox(minimum=0, maximum=150, value=_DEFAULTS["hires_steps"])
        self.steps.setSpecialValueText("as Steps")  # 0: as many as the first pass (A1111's convention)
        self.denoise = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=1.0, singleStep=0.05,
                                      value=_DEFAULTS["hires_denoise"])
        self.denoise.setToolTip("How much the second pass repaints: low keeps the picture, high redraws it")
        self.upscaler = QComboBox(editable=True)
        self.upscaler.addItem(LANCZOS)
        self.upscaler.setToolTip("Lanczos, or an upscaler file (ESRGAN family) from the model library")
        form = QFormLayout(self)
        form.addRow("Upscale by", self.scale)
        form.addRow("Hires steps", self.steps)
        form.addRow("Denoise", self.denoise)
        form.addRow("Upscaler", self.upscaler)

    def set_upscalers(self, names: list[str]) -> None:
        """Offer Lanczos and the library's upscalers, keeping the current choice."""
        current = self.upscaler.currentText()
        self.upscaler.clear()
        self.upscaler.addItems([LANCZOS, *sorted(names)])
        self.upscaler.setCurrentText(current)

    def fields(self) -> dict[str, Any]:
        """The GenerationRequest hires fields (hires_scale None when the group is off)."""
        return dict(hires_scale=self.scale.value() if self.isChecked() else None, hires_steps=self.steps.value(),
                    hires_denoise=self.denoise.value(), hires_upscaler=self.upscaler.currentText().strip() or LANCZOS)

    def apply_recipe(self, recipe: dict[str, Any]) -> None:
        scale = recipe.get("hires_scale")
        self.setChecked(isinstance(scale, (int, float)) and scale > 0)
        if not self.isChecked():
            return
        self.scale.setValue(float(scale))  # type: ignore[arg-type]
        if isinstance(recipe.get("hires_steps"), int):
            self.steps.setValue(recipe["hires_steps"])
        if isinstance(recipe.get("hires_denoise"), (int, float)):
            self.denoise.setValue(float(recipe["hires_denoise"]))
        if isinstance(recipe.get("hires_upscaler"), str):
            self.upscaler.setCurrentText(recipe["hires_upscaler"])
