"""CanvasToolBar: tools, brush size both ways, mask actions, effective-mask preview, extend, shortcuts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMainWindow

from studio.ui.canvas import CanvasView
from studio.ui.canvas_toolbar import SIZE_STEPS, CanvasToolBar, pos_to_size, size_to_pos
from studio.ui.controls import GenerationControls

W, H = 120, 80


def picture() -> Image.Image:
    x, y = np.meshgrid(np.arange(W), np.arange(H))
    return Image.fromarray(np.stack([x * 2, y * 3, np.full_like(x, 90)], -1).astype(np.uint8), "RGB")


@pytest.fixture
def setup(qtbot):
    """A window with a canvas (holding a picture), controls and the tool bar, shown and focused."""
    window = QMainWindow()
    qtbot.addWidget(window)
    canvas = CanvasView()
    controls = GenerationControls()
    window.setCentralWidget(canvas)
    bar = CanvasToolBar(canvas, controls)
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
    window.resize(1200, 500)
    with qtbot.waitExposed(window):
        window.show()
    canvas.set_image(picture())
    canvas.setFocus()
    return window, canvas, controls, bar


def test_clicking_eraser_sets_the_canvas_tool(qtbot, setup) -> None:
    _w, canvas, _c, bar = setup
    button = bar.widgetForAction(bar.actions_by_name["eraser"])
    with qtbot.waitSignal(canvas.tool_changed, timeout=1000):
        QTest.mouseClick(button, Qt.MouseButton.LeftButton)
    assert canvas.tool() == "eraser"
    assert bar.actions_by_name["eraser"].isChecked() and not bar.actions_by_name["brush"].isChecked()


def test_canvas_keys_check_the_tool_actions(qtbot, setup) -> None:
    _w, canvas, _c, bar = setup
    QTest.keyClick(canvas, Qt.Key.Key_E)
    assert canvas.tool() == "eraser" and bar.actions_by_name["eraser"].isChecked()
    QTest.keyClick(canvas, Qt.Key.Key_B)
    assert canvas.tool() == "brush" and bar.actions_by_name["brush"].isChecked()
    canvas.set_tool("extend")
    assert bar.actions_by_name["extend"].isChecked()


def test_canvas_keys_have_no_competing_shortcut_but_show_in_tooltips(setup) -> None:
    _w, _canvas, _c, bar = setup
    for name, key in (("brush", "B"), ("eraser", "E")):
        action = bar.actions_by_name[name]
        assert action.shortcut().isEmpty()
        assert f"({key})" in action.toolTip()
    assert "[" in bar.size_slider.toolTip() and "]" in bar.size_slider.toolTip()
    for name, action in bar.actions_by_name.items():
        if not action.shortcut().isEmpty():
            assert action.shortcut().toString(QKeySequence.SequenceFormat.NativeText) in action.toolTip(), name


def test_x_picks_extend_while_the_canvas_has_focus(qtbot, setup) -> None:
    _w, canvas, _c, bar = setup
    QTest.keyClick(canvas, Qt.Key.Key_X)
    assert canvas.tool() == "extend" and bar.actions_by_name["extend"].isChecked()


def test_size_slider_and_bracket_keys_agree(qtbot, setup) -> None:
    _w, canvas, _c, bar = setup
    bar.size_slider.setValue(size_to_pos(100))
    assert canvas.brush_size() == pos_to_size(size_to_pos(100))
    assert bar.size_label.text() == f"{canvas.brush_size()} px"
    before = canvas.brush_size()
    QTest.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert canvas.brush_size() > before
    assert bar.size_slider.value() == size_to_pos(canvas.brush_size())  # the nearest position
    assert bar.size_label.text() == f"{canvas.brush_size()} px"  # the label is exact
    for _ in range(3):
        QTest.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert canvas.brush_size() < before
    assert bar.size_slider.value() == size_to_pos(canvas.brush_size())
    assert bar.size_label.text() == f"{canvas.brush_size()} px"


def test_size_mapping_round_trips() -> None:
    assert pos_to_size(0) == 1 and pos_to_size(SIZE_STEPS) == 1024
    for size in (1, 2, 3, 5, 10, 20, 1024):  # every small size has its own position
        assert pos_to_size(size_to_pos(size)) == size
    for size in (48, 100, 500):  # larger ones the nearest, within the 3 % a position spans
        assert abs(pos_to_size(size_to_pos(size)) - size) <= 0.03 * size


def test_hardness_and_overlay_sliders_reach_the_canvas(setup) -> None:
    _w, canvas, _c, bar = setup
    bar.hardness_slider.setValue(25)
    assert canvas.brush_hardness() == pytest.approx(0.25)
    canvas.fill_mask()
    bar.opacity_slider.setValue(0)
    blank = canvas.grab().toImage().pixelColor(canvas.map_from_image(QPointF(W / 2, H / 2)).toPoint())
    bar.opacity_slider.setValue(100)
    tinted = canvas.grab().toImage().pixelColor(canvas.map_from_image(QPointF(W / 2, H / 2)).toPoint())
    assert blank != tinted


def test_mask_actions(setup) -> None:
    _w, canvas, _c, bar = setup
    assert not bar.actions_by_name["clear_mask"].isEnabled()
    bar.actions_by_name["fill_mask"].trigger()
    assert np.asarray(canvas.mask()).min() == 255
    assert bar.actions_by_name["clear_mask"].isEnabled()
    bar.actions_by_name["invert_mask"].trigger()
    assert not canvas.has_mask()
    bar.actions_by_name["invert_mask"].trigger()
    bar.actions_by_name["clear_mask"].trigger()
    assert not canvas.has_mask()


def test_extend_left_grows_the_image_and_undoes(qtbot, setup) -> None:
    _w, canvas, controls, bar = setup
    assert bar.extend_by.value() == 64 and bar.extend_by.singleStep() == 8
    controls.outpaint_fill.setCurrentText("none")
    bar.actions_by_name["extend_left"].trigger()
    assert canvas.image().size == (W + 64, H)
    assert canvas.image().getpixel((10, 10)) == (128, 128, 128)  # the controls' fill was used
    assert np.asarray(canvas.mask())[:, :64].min() == 255
    canvas.undo_stack.undo()
    assert canvas.image().size == (W, H)
    canvas.undo_stack.redo()
    assert canvas.image().size == (W + 64, H)


def test_extend_all_sides_by_the_spin_box_amount(setup) -> None:
    _w, canvas, _c, bar = setup
    bar.extend_by.setValue(16)
    assert "16 px" in bar.actions_by_name["extend_all"].toolTip()
    bar.actions_by_name["extend_all"].trigger()
    assert canvas.image().size == (W + 32, H + 32)


def test_extend_and_mask_actions_are_off_without_an_image(qtbot) -> None:
    canvas = CanvasView()
    qtbot.addWidget(canvas)
    bar = CanvasToolBar(canvas)
    qtbot.addWidget(bar)
    assert not bar.actions_by_name["extend_left"].isEnabled()
    bar.extend_sides(1, 0, 0, 0)  # no image: nothing happens, nothing raises
    canvas.set_image(picture())
    assert bar.actions_by_name["extend_left"].isEnabled()


def test_effective_mask_toggle_previews_grow_and_feather_live(qtbot, setup) -> None:
    _w, canvas, controls, bar = setup
    canvas.set_brush_size(10)
    canvas.set_brush_hardness(1.0)
    canvas.begin_stroke(QPointF(60, 40))
    canvas.end_stroke()
    controls.mask_grow.setValue(12)
    controls.mask_feather.setValue(0)
    probe = canvas.map_from_image(QPointF(60 + 12, 40)).toPoint()  # outside the stroke, inside the grown mask

    def colour():
        return canvas.grab().toImage().pixelColor(probe)

    raw = colour()
    bar.actions_by_name["effective_mask"].setChecked(True)
    assert (canvas._grow, canvas._feather) == (12, 0)
    grown = colour()
    assert grown != raw
    controls.mask_grow.setValue(0)  # live: the preview follows the controls
    assert canvas._grow == 0
    assert colour() == raw
    controls.mask_grow.setValue(12)
    bar.actions_by_name["effective_mask"].setChecked(False)
    assert (canvas._grow, canvas._feather) == (0, 0)
    assert colour() == raw


def test_window_shortcuts_win_over_the_tool_bar(qtbot) -> None:
    """Edit > Invert mask (Ctrl+I) in the window: the tool bar's Invert yields, the key still works once."""
    window = QMainWindow()
    qtbot.addWidget(window)
    canvas = CanvasView()
    window.setCentralWidget(canvas)
    calls = []
    invert = QAction("Invert mask", window)
    invert.setShortcut(QKeySequence("Ctrl+I"))
    invert.triggered.connect(lambda: (calls.append(1), canvas.invert_mask()))
    window.addAction(invert)
    bar = CanvasToolBar(canvas)
    window.addToolBar(bar)
    with qtbot.waitActive(window):
        window.show()
        window.activateWindow()
    canvas.set_image(picture())
    canvas.setFocus()
    assert bar.actions_by_name["invert_mask"].shortcut().isEmpty()
    assert "Ctrl+I" in bar.actions_by_name["invert_mask"].toolTip()
    assert not bar.actions_by_name["fill_mask"].shortcut().isEmpty()
    QTest.keyClick(canvas, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    assert calls == [1] and np.asarray(canvas.mask()).min() == 255
