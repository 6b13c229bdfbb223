"""The canvas tool bar: tools, brush size and hardness, mask overlay and mask actions, extend.

It wires itself to a CanvasView (and, when given, to the generation controls' grow / feather /
outpaint-fill fields) and mirrors the canvas' state through its signals, so keys pressed on the
canvas (B, E, [, ]) and clicks here always agree.

Shortcuts: keys the canvas handles itself in keyPressEvent (B, E, [, ]) get no QAction shortcut,
which would make them ambiguous; their tooltips show the key. Single-letter shortcuts that are new
(X, M) work while the canvas has focus, like B and E, so they never steal a letter from a text
field. A shortcut the window already binds (Edit > Clear mask, Ctrl+Shift+M) is left to the window:
the action here keeps the key in its tooltip only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence, QShowEvent
from PySide6.QtWidgets import QLabel, QMenu, QSlider, QSpinBox, QToolBar, QWidget

from studio.ui.canvas import BRUSH, ERASER, EXTEND, CanvasView
from studio.ui.controls import GenerationControls

# The MaskLayer's default tint; the canvas has no getter, and the opacity slider must keep it.
MASK_TINT = QColor(190, 70, 255)
SIZE_MAX = 1024  # the slider's top; the canvas allows more through ] and set_brush_size
SIZE_STEPS = 240  # slider positions, logarithmic in size: 1 px and 1000 px are both reachable
EXTEND_DEFAULT, EXTEND_STEP, EXTEND_MAX = 64, 8, 2048
# The grow / feather a generation uses when there are no controls (GenerationRequest's defaults).
DEFAULT_GROW, DEFAULT_FEATHER = 0, 4

TOOLS = (  # name, label, key, what it does; B and E are the canvas' own keys
    (BRUSH, "✎ Brush", "B", "Paint the inpaint mask: white = repaint"),
    (ERASER, "⌫ Eraser", "E", "Erase the inpaint mask"),
    (EXTEND, "⬚ Extend", "X", "Drag an image edge outwards to extend the canvas for an outpaint"),
)
CANVAS_KEYS = frozenset({"B", "E"})
SIDES = (  # name, label, (left, top, right, bottom) multipliers
    ("left", "← Left", (1, 0, 0, 0)),
    ("top", "↑ Top", (0, 1, 0, 0)),
    ("right", "→ Right", (0, 0, 1, 0)),
    ("bottom", "↓ Bottom", (0, 0, 0, 1)),
    ("all", "All sides", (1, 1, 1, 1)),
)


def size_to_pos(size: int) -> int:
    return round(math.log(min(max(size, 1), SIZE_MAX)) / math.log(SIZE_MAX) * SIZE_STEPS)


def pos_to_size(pos: int) -> int:
    return max(1, round(SIZE_MAX ** (pos / SIZE_STEPS)))


class CanvasToolBar(QToolBar):
    """Tool bar for a CanvasView; `actions_by_name` holds every action (tests and menus use it)."""

    def __init__(self, canvas: CanvasView, controls: GenerationControls | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__("Canvas", parent)
        self.setObjectName("canvas_toolbar")  # QMainWindow.saveState needs it
        self.canvas = canvas
        self.controls = controls
        self.actions_by_name: dict[str, QAction] = {}
        self._opacity = 0.5
        self._build_tools()
        self.addSeparator()
        self._build_brush()
        self.addSeparator()
        self._build_mask()
        self.addSeparator()
        self._build_extend()
        canvas.tool_changed.connect(self._tool_changed)
        canvas.brush_size_changed.connect(self._size_changed)
        canvas.image_changed.connect(self._sync_enabled)
        canvas.mask_changed.connect(self._sync_enabled)
        if controls is not None:
            controls.mask_grow.valueChanged.connect(self._update_mask_preview)
            controls.mask_feather.valueChanged.connect(self._update_mask_preview)
            controls.outpaint_fill.currentTextChanged.connect(self._fill_changed)
            self._fill_changed(controls.outpaint_fill.currentText())
        self._tool_changed(canvas.tool())
        self._sync_enabled()

    # ------------------------------------------------------------------------------------ building

    def _action(self, name: str, text: str, tip: str, slot: Callable[..., object] | None, key: str = "",
                local: bool = False, checkable: bool = False) -> QAction:
        """An action with its key in the tooltip. `local`: the key works while the canvas has focus;
        a key in CANVAS_KEYS is shown only (the canvas handles it)."""
        action = QAction(text, self)
        action.setCheckable(checkable)
        if key and key not in CANVAS_KEYS:
            action.setShortcut(QKeySequence(key))
            if local:
                action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
                self.canvas.addAction(action)  # WidgetShortcut: active while the canvas has focus
        shown = QKeySequence(key).toString(QKeySequence.SequenceFormat.NativeText) if key else ""
        action.setToolTip(f"{tip} ({shown})" if shown else tip)
        action.setStatusTip(tip)
        if slot is not None:
            action.triggered.connect(slot)
        self.actions_by_name[name] = action
        return action

    def _build_tools(self) -> None:
        self.tool_group = QActionGroup(self)
        self.tool_group.setExclusive(True)
        for name, text, key, tip in TOOLS:
            action = self._action(name, text, tip, lambda _=False, n=name: self.canvas.set_tool(n), key,
                                  local=True, checkable=True)
            self.tool_group.addAction(action)
            self.addAction(action)

    def _build_brush(self) -> None:
        self.size_slider = self._slider(0, SIZE_STEPS, size_to_pos(self.canvas.brush_size()),
                                        "Brush size ([ smaller, ] larger)", self._size_slid)
        self.size_label = QLabel()
        self.size_label.setMinimumWidth(self.size_label.fontMetrics().horizontalAdvance("2048 px") + 4)
        self.size_label.setToolTip(self.size_slider.toolTip())
        self._show_size(self.canvas.brush_size())
        self.hardness_slider = self._slider(0, 100, round(self.canvas.brush_hardness() * 100),
                                            "Brush hardness: 0 % a soft edge, 100 % a hard edge",
                                            lambda v: self.canvas.set_brush_hardness(v / 100))
        self.opacity_slider = self._slider(0, 100, round(self._opacity * 100),
                                           "Mask overlay opacity: how strongly the mask tints the picture",
                                           self._opacity_slid)
        for caption, widgets in (("Size", (self.size_slider, self.size_label)), ("Hardness", (self.hardness_slider,)),
                                 ("Overlay", (self.opacity_slider,))):
            label = QLabel(f" {caption} ")
            label.setToolTip(widgets[0].toolTip())
            self.addWidget(label)
            for w in widgets:
                self.addWidget(w)

    def _slider(self, lo: int, hi: int, value: int, tip: str, slot: Callable[[int], object]) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(lo, hi)
        slider.setValue(value)
        slider.setFixedWidth(72)  # narrow enough that the whole toolbar fits a 1280 px window
        slider.setToolTip(tip)
        slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keep the keyboard on the canvas
        slider.valueChanged.connect(slot)
        return slider

    def _build_mask(self) -> None:
        for name, text, key, tip, slot in (
            ("clear_mask", "□ Clear", "Ctrl+Shift+M", "Clear the mask", self.canvas.clear_mask),
            ("invert_mask", "◑ Invert", "Ctrl+I", "Invert the mask", self.canvas.invert_mask),
            ("fill_mask", "■ Fill", "Ctrl+Shift+F", "Fill the mask: repaint the whole picture", self.canvas.fill_mask),
        ):
            self.addAction(self._action(name, text, tip, slot, key))
        effective = self._action("effective_mask", "◐ Effective", "Show the effective mask: grown and feathered as "
                                 "a generation uses it", None, "M", local=True, checkable=True)
        effective.toggled.connect(self._update_mask_preview)
        self.addAction(effective)

    def _build_extend(self) -> None:
        """"Extend by [64 px] ← ↑ → ↓ All": one click per side; the same actions in `extend_menu`."""
        self.extend_by = QSpinBox()
        self.extend_by.setRange(EXTEND_STEP, EXTEND_MAX)
        self.extend_by.setSingleStep(EXTEND_STEP)
        self.extend_by.setValue(EXTEND_DEFAULT)
        self.extend_by.setSuffix(" px")
        self.extend_by.setToolTip("How far the Extend buttons grow the canvas")
        label = QLabel(" Extend by ")
        label.setToolTip(self.extend_by.toolTip())
        self.addWidget(label)
        self.addWidget(self.extend_by)
        self.extend_menu = QMenu("Extend canvas", self)
        for name, text, sides in SIDES:
            action = self._action(f"extend_{name}", text, "", lambda _=False, s=sides: self.extend_sides(*s))
            action.setIconText(text.split()[0] if name != "all" else "All")
            self.extend_menu.addAction(action)
            self.addAction(action)
        self.extend_by.valueChanged.connect(self._extend_tips)
        self._extend_tips(self.extend_by.value())

    def _extend_tips(self, n: int) -> None:
        for name, _text, _sides in SIDES:
            where = "on every side" if name == "all" else f"on the {name}"
            tip = f"Extend the canvas {n} px {where} for an outpaint"
            self.actions_by_name[f"extend_{name}"].setToolTip(tip)
            self.actions_by_name[f"extend_{name}"].setStatusTip(tip)

    # ------------------------------------------------------------------------------------ behaviour

    def extend_sides(self, left: int, top: int, right: int, bottom: int) -> None:
        """Extend the canvas by the spin box's amount on the sides given as 1 (0: leave)."""
        if not self.canvas.has_image():
            return
        n = self.extend_by.value()
        fill = self.controls.outpaint_fill.currentText() if self.controls is not None else None
        self.canvas.extend(left * n, top * n, right * n, bottom * n, fill=fill)

    def _tool_changed(self, tool: str) -> None:
        action = self.actions_by_name.get(tool)
        if action is not None and not action.isChecked():
            action.setChecked(True)

    def _size_slid(self, pos: int) -> None:
        self.canvas.set_brush_size(pos_to_size(pos))
        self._show_size(self.canvas.brush_size())

    def _size_changed(self, size: int) -> None:
        # Several slider positions give the same small size; move the slider only when it disagrees.
        if pos_to_size(self.size_slider.value()) != size:
            self.size_slider.blockSignals(True)
            self.size_slider.setValue(size_to_pos(size))
            self.size_slider.blockSignals(False)
        self._show_size(size)

    def _show_size(self, size: int) -> None:
        self.size_label.setText(f"{size} px")

    def _opacity_slid(self, value: int) -> None:
        self._opacity = value / 100
        self.canvas.set_overlay(MASK_TINT, self._opacity)

    def _fill_changed(self, fill: str) -> None:
        try:
            self.canvas.set_extend_fill(fill)
        except ValueError:
            pass  # the controls list the engine's fills; a mismatch must not break the tool bar

    def mask_preview_settings(self) -> tuple[int, int]:
        """(grow, feather) as a generation would use them."""
        if self.controls is None:
            return DEFAULT_GROW, DEFAULT_FEATHER
        return self.controls.mask_grow.value(), self.controls.mask_feather.value()

    def _update_mask_preview(self, *_: object) -> None:
        on = self.actions_by_name["effective_mask"].isChecked()
        self.canvas.set_mask_preview(*(self.mask_preview_settings() if on else (0, 0)))

    def _sync_enabled(self) -> None:
        image = self.canvas.has_image()
        for name in ("invert_mask", "fill_mask", "effective_mask"):
            self.actions_by_name[name].setEnabled(image)
        self.actions_by_name["clear_mask"].setEnabled(self.canvas.has_mask())
        for name, _text, _sides in SIDES:
            self.actions_by_name[f"extend_{name}"].setEnabled(image)

    # ------------------------------------------------------------------------------------ shortcuts

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.yield_shortcuts()

    def yield_shortcuts(self) -> list[str]:
        """Drop this tool bar's shortcut from any action whose key another action in the window
        already binds (two bindings would make the key do nothing); the tooltip keeps the key.
        Runs when the tool bar is first shown; returns the names of the actions that yielded."""
        window = self.window()
        if window is self:
            return []
        mine = set(self.actions_by_name.values())
        taken = {seq.toString() for a in window.findChildren(QAction) if a not in mine for seq in a.shortcuts()}
        yielded = []
        for name, action in self.actions_by_name.items():
            if not action.shortcut().isEmpty() and action.shortcut().toString() in taken:
                action.setShortcut(QKeySequence())
                yielded.append(name)
        return yielded
