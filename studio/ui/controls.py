"""The generation controls: prompt, sliders paired with spin boxes, seed tools, size, sampler."""

from __future__ import annotations

import random
from typing import Any

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.recipe.request import SCHEDULERS, SEED_MAX, knobs, variation_seed_for
from studio.ui.settings import Settings

# SDXL's training buckets (about a megapixel each), the sizes SDXL models draw best at.
SDXL_BUCKETS = ((1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344),
                (1536, 640), (640, 1536))


def size_presets(native: int | None) -> list[str]:
    """The size menu for a model of `native` px: around its own size (SDXL's buckets for SDXL), so a
    64 px model is not offered 1024 px pictures it would fill with repeats."""
    if native == 1024:
        sizes = list(SDXL_BUCKETS)
    else:
        n = native or 512
        half = n * 3 // 2 // 8 * 8
        sizes = [(n, n), (n, half), (half, n), (half, half), (2 * n, 2 * n)]
    return ["Native", *(f"{w} × {h}" for w, h in sizes), "Custom"]


KNOBS = knobs()  # every request field's range, step and choices: the widgets take theirs from here


def _slider(name: str) -> SliderSpin:
    k = KNOBS[name]
    assert k.low is not None and k.high is not None
    decimals = 0 if k.step >= 1 else len(f"{k.step:g}".split(".")[1])
    low = k.low + k.step if k.low_open else k.low  # strength: above 0, so its first notch
    widget = SliderSpin(low, k.high, k.step, decimals=decimals)
    widget.setToolTip(k.help[:1].upper() + k.help[1:])
    return widget


def _spin(name: str) -> QSpinBox:
    k = KNOBS[name]
    assert k.low is not None and k.high is not None
    spin = QSpinBox()
    spin.setRange(int(k.low), int(k.high))
    spin.setSingleStep(int(k.step))
    return spin


class SliderSpin(QWidget):
    """A slider and a spin box showing one value; either one edits it."""

    valueChanged = Signal(float)

    def __init__(self, minimum: float, maximum: float, step: float, decimals: int = 0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scale = 1 / step
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(round(minimum * self._scale), round(maximum * self._scale))
        self.spin: QSpinBox | QDoubleSpinBox = QDoubleSpinBox() if decimals else QSpinBox()
        self.spin.setRange(minimum, maximum)  # type: ignore[arg-type]
        self.spin.setSingleStep(step)  # type: ignore[arg-type]
        if decimals:
            self.spin.setDecimals(decimals)  # type: ignore[union-attr]
        self.spin.setFixedWidth(72)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)
        self.slider.valueChanged.connect(lambda v: self.spin.setValue(v / self._scale))
        self.spin.valueChanged.connect(self._from_spin)

    def _from_spin(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * self._scale))
        self.slider.blockSignals(False)
        self.valueChanged.emit(float(value))

    def value(self) -> float:
        return float(self.spin.value())

    def setValue(self, value: float) -> None:  # noqa: N802 - Qt naming, like the widgets it wraps
        self.spin.setValue(value)  # type: ignore[arg-type]


class SeedBox(QWidget):
    """Seed field (0..2^32-1) with random, lock and previous/next buttons for clicking through seeds."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{1,10}")))
        self.edit.setToolTip("Seed: the same seed and settings give the same image")
        self.prev_button = self._button("◀", "Previous seed (Alt+Left)", lambda: self.step(-1))
        self.next_button = self._button("▶", "Next seed (Alt+Right)", lambda: self.step(1))
        self.dice = self._button("Random", "Random seed (Ctrl+R)", self.randomise)
        self.lock = self._button("Lock", "Lock the seed: keep it between runs (Ctrl+L)", None)
        self.lock.setCheckable(True)
        self._last_run: int | None = None  # the seed of the picture on screen
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.edit, self.prev_button, self.next_button, self.dice, self.lock):
            layout.addWidget(w)
        layout.setStretch(0, 1)

    def _button(self, text: str, tip: str, slot: Any) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.setAutoRaise(True)
        if slot is not None:
            b.clicked.connect(slot)
        return b

    def seed(self) -> int:
        text = self.edit.text()
        return min(int(text), SEED_MAX) if text else 0

    def set_seed(self, seed: int) -> None:
        self.edit.setText(str(seed % (SEED_MAX + 1)))

    def step(self, delta: int) -> None:
        self.set_seed(self.seed() + delta)

    def randomise(self) -> None:
        self.set_seed(random.randint(0, SEED_MAX))

    def before_run(self) -> None:
        """An unlocked seed that made the last picture moves on (random), so each click gives a new
        picture, while between runs the field shows the seed of the picture on screen: ◀ and ▶ step
        from there, and a seed typed or stepped to is used as it is."""
        if not self.lock.isChecked() and self.seed() == self._last_run:
            self.randomise()
        self._last_run = self.seed()

    def mark_used(self) -> None:
        """The field's seed already made a picture (a restored session's last seed)."""
        self._last_run = self.seed()


class GenerationControls(QWidget):
    """Everything a generation needs except the canvas' image and mask."""

    generate_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.native_size: int | None = None  # the loaded model's (set_native_size keeps it current)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Describe the image… (Ctrl+Enter generates)")
        self.prompt.setFixedHeight(76)
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("Negative prompt: what to keep out")
        self.negative.setFixedHeight(48)
        self.steps, self.cfg, self.strength = _slider("steps"), _slider("cfg"), _slider("strength")
        self.seed = SeedBox()
        self.size = QComboBox()
        self.size.addItems(size_presets(None))
        self.width_spin, self.height_spin = self._size_spin(), self._size_spin()
        self.scheduler = QComboBox()
        self.scheduler.addItems(KNOBS["scheduler"].choices)
        self.batch = _spin("batch_size")
        self.batch.setToolTip("Images per click: seeds seed, seed+1, … (4 or 9 show as a grid); with a "
                              "Variation, variations of the one seed")
        # Short: the dock is as narrow as its widest row allows, and the canvas gets the rest.
        self.from_canvas = QCheckBox("Start from the canvas image")
        self.from_canvas.setToolTip("Image to image: use the picture on the canvas as the starting point, changed "
                                    "as much as Strength says. With a mask painted, only the mask is repainted.")
        self.variation = _slider("variation_strength")
        self.variation.setToolTip("Variation strength: 0 keeps the seed's image, higher moves towards a "
                                  "variation seed (seed + 1000)")
        self._build_layout()
        self.size.currentTextChanged.connect(self._preset_chosen)

    def _size_spin(self) -> QSpinBox:
        spin = _spin("width")
        spin.setValue(512)  # SD 1.x's size until the loaded model tells its own
        spin.setEnabled(False)
        return spin

    def _build_layout(self) -> None:
        main = QVBoxLayout(self)
        main.addWidget(QLabel("Prompt"))
        main.addWidget(self.prompt)
        main.addWidget(self.negative)
        form = QFormLayout()
        form.addRow("Steps", self.steps)
        self.cfg_label = QLabel("Guidance")
        form.addRow(self.cfg_label, self.cfg)
        form.addRow("Seed", self.seed)
        size_row = QHBoxLayout()
        size_row.addWidget(self.size, 1)
        size_row.addWidget(self.width_spin)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_spin)
        form.addRow("Size", size_row)
        form.addRow("Sampler", self.scheduler)
        form.addRow("Batch", self.batch)
        form.addRow("Variation", self.variation)
        form.addRow("Strength", self.strength)
        form.addRow("", self.from_canvas)
        self.strength.setToolTip("Denoising strength for image-to-image, inpaint and outpaint")
        main.addLayout(form)
        self.mask_group = self._mask_group()
        main.addWidget(self.mask_group)
        from studio.ui.hires_group import HiresGroup

        self.hires = HiresGroup()
        main.addWidget(self.hires)
        main.addStretch(1)

    def _mask_group(self) -> QGroupBox:
        group = QGroupBox("Inpaint and outpaint")
        form = QFormLayout(group)
        self.inpaint_area = QComboBox()
        self.inpaint_area.addItem("Whole image", "whole")
        self.inpaint_area.addItem("Only masked (full detail)", "masked")
        self.padding, self.mask_grow, self.mask_feather = _spin("padding"), _spin("mask_grow"), _spin("mask_feather")
        for spin in (self.padding, self.mask_grow, self.mask_feather):
            spin.setSuffix(" px")
        self.outpaint_fill = QComboBox()
        self.outpaint_fill.addItems(KNOBS["outpaint_fill"].choices)
        form.addRow("Area", self.inpaint_area)
        form.addRow("Padding", self.padding)
        form.addRow("Grow", self.mask_grow)
        form.addRow("Feather", self.mask_feather)
        form.addRow("Outpaint fill", self.outpaint_fill)
        return group

    def _preset_chosen(self, text: str) -> None:
        custom = text == "Custom"
        self.width_spin.setEnabled(custom)
        self.height_spin.setEnabled(custom)
        if "×" in text:
            w, h = (int(v) for v in text.split("×"))
            self.width_spin.setValue(w)
            self.height_spin.setValue(h)

    def set_family(self, family: str) -> None:
        """Speak the loaded model's knobs: FLUX's guidance is distilled (no negative prompt), and FLUX and
        SD 3 sample with their own flow-matching Euler, whatever the sampler menu says."""
        flux, flow = family.startswith("FLUX"), family.startswith(("FLUX", "SD 3"))
        self.negative.setEnabled(not flux)
        self.negative.setPlaceholderText("FLUX has no negative prompt: its guidance is built into the model"
                                         if flux else "Negative prompt: what to keep out")
        self.cfg_label.setText("FLUX guidance" if flux else "Guidance")
        self.cfg.setToolTip("FLUX's distilled guidance (about 3.5 for dev; schnell ignores it)" if flux else
                            "How strongly the picture follows the prompt (classifier-free guidance)")
        self.cfg.setEnabled(not family.endswith("schnell"))  # schnell reads no guidance at all
        self.scheduler.setEnabled(not flow)
        self.scheduler.setToolTip("This model samples with its own flow-matching Euler" if flow else "")

    def set_native_size(self, native: int) -> None:
        """Offer the sizes that suit a model of `native` px, keeping the chosen size where it still fits."""
        self.native_size = native
        chosen = self.size_value()
        self.size.blockSignals(True)
        self.size.clear()
        self.size.addItems(size_presets(native))
        self.size.blockSignals(False)
        self.size.setToolTip(f"This model draws best at about {native} × {native} px; much larger pictures "
                             "tend to repeat their subject")
        self.set_size(*chosen)
        self._preset_chosen(self.size.currentText())

    def size_value(self) -> tuple[int | None, int | None]:
        if self.size.currentText() == "Native":
            return None, None
        return self.width_spin.value(), self.height_spin.value()

    def set_size(self, width: int | None, height: int | None) -> None:
        if not width or not height:
            self.size.setCurrentText("Native")
            return
        label = f"{width} × {height}"
        presets = [self.size.itemText(k) for k in range(self.size.count())]
        self.size.setCurrentText(label if label in presets else "Custom")
        self.width_spin.setValue(width)
        self.height_spin.setValue(height)

    def request_fields(self) -> dict[str, Any]:
        """The GenerationRequest keyword arguments these controls decide."""
        width, height = self.size_value()
        strength = self.variation.value()
        seed = self.seed.seed()
        return dict(
            prompt=self.prompt.toPlainText().strip(), negative_prompt=self.negative.toPlainText().strip(),
            steps=int(self.steps.value()), cfg=self.cfg.value(), seed=seed, width=width, height=height,
            scheduler=self.scheduler.currentText(), strength=self.strength.value(), batch_size=self.batch.value(),
            variation_seed=variation_seed_for(seed) if strength > 0 else None, variation_strength=strength,
            mask_grow=self.mask_grow.value(), mask_feather=self.mask_feather.value(),
            inpaint_area=self.inpaint_area.currentData(), padding=self.padding.value(),
            outpaint_fill=self.outpaint_fill.currentText(),
            **self.hires.fields(),
        )

    def apply_recipe(self, recipe: dict[str, Any], seed_only: bool = False) -> None:
        """Fill the controls from a stored recipe (gallery "reuse settings" / "reuse seed")."""
        if recipe.get("seed") is not None:
            self.seed.set_seed(int(recipe["seed"]))
            self.seed.lock.setChecked(True)  # reusing a seed means keeping it
        if seed_only:
            return
        self.hires.apply_recipe(recipe)
        self.prompt.setPlainText(str(recipe.get("prompt") or ""))
        self.negative.setPlainText(str(recipe.get("negative_prompt") or ""))
        for key, widget in (("steps", self.steps), ("cfg", self.cfg), ("strength", self.strength)):
            if isinstance(recipe.get(key), (int, float)):
                widget.setValue(float(recipe[key]))
        if recipe.get("scheduler") in SCHEDULERS:
            self.scheduler.setCurrentText(recipe["scheduler"])
        if recipe.get("width") and recipe.get("height"):
            size = (int(recipe["width"]), int(recipe["height"]))
            # The loaded model's own size stays "Native", so the settings still fit the next model.
            native = (self.native_size, self.native_size)
            self.set_size(*((None, None) if size == native else size))

    def load(self, s: Settings) -> None:
        self.prompt.setPlainText(s.get("prompt"))
        self.negative.setPlainText(s.get("negative_prompt"))
        self.steps.setValue(s.get("steps"))
        self.cfg.setValue(s.get("cfg"))
        self.seed.set_seed(s.get("seed"))
        self.seed.mark_used()
        self.seed.lock.setChecked(s.get("seed_locked"))
        self.set_size(s.get("width") or None, s.get("height") or None)
        self.scheduler.setCurrentText(s.get("scheduler"))
        self.strength.setValue(s.get("strength"))
        self.batch.setValue(s.get("batch"))
        self.variation.setValue(s.get("variation_strength"))
        self.mask_grow.setValue(s.get("mask_grow"))
        self.mask_feather.setValue(s.get("mask_feather"))
        self.inpaint_area.setCurrentIndex(max(0, self.inpaint_area.findData(s.get("inpaint_area"))))
        self.padding.setValue(s.get("padding"))
        self.outpaint_fill.setCurrentText(s.get("outpaint_fill"))

    def save(self, s: Settings) -> None:
        f = self.request_fields()
        for key in ("steps", "cfg", "seed", "scheduler", "strength", "mask_grow", "mask_feather",
                    "inpaint_area", "padding", "outpaint_fill"):
            s.set(key, f[key])
        s.set("prompt", self.prompt.toPlainText())
        s.set("negative_prompt", self.negative.toPlainText())
        s.set("seed_locked", self.seed.lock.isChecked())
        s.set("width", f["width"] or 0)
        s.set("height", f["height"] or 0)
        s.set("batch", f["batch_size"])
        s.set("variation_strength", f["variation_strength"])
