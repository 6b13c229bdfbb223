"""CanvasView: mask strokes from real mouse events, undo/redo, zoom/pan, extend, previews, opening."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QGuiApplication, QImage, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from studio.engine.canvas_ops import MaskError
from studio.ui.canvas import CanvasView
from studio.ui.canvas_images import pil_to_qimage

W, H = 200, 100


def picture(w: int = W, h: int = H) -> Image.Image:
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    arr = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], -1).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


@pytest.fixture
def canvas(qtbot) -> CanvasView:
    view = CanvasView()
    qtbot.addWidget(view)
    view.resize(420, 300)
    view.show()
    qtbot.waitExposed(view)
    view.set_image(picture())
    view.set_brush_size(10)
    view.set_brush_hardness(1.0)
    return view


def at(view: CanvasView, x: float, y: float) -> QPoint:
    """The widget point that shows image point (x, y)."""
    return view.map_from_image(QPointF(x, y)).toPoint()


def drag(qtbot, view: CanvasView, points: list[tuple[float, float]], button=Qt.MouseButton.LeftButton) -> None:
    """Press at the first image point, move through the rest, release at the last: a real stroke."""
    QTest.mousePress(view, button, Qt.KeyboardModifier.NoModifier, at(view, *points[0]))
    for p in points[1:]:
        QTest.mouseMove(view, at(view, *p))
    with qtbot.waitSignal(view.mask_changed, timeout=1000, raising=False):
        QTest.mouseRelease(view, button, Qt.KeyboardModifier.NoModifier, at(view, *points[-1]))


def mask_array(view: CanvasView) -> np.ndarray:
    return np.asarray(view.mask()).copy()


def test_stroke_paints_the_mask_where_the_mouse_went(qtbot, canvas: CanvasView) -> None:
    assert not canvas.has_mask()
    with qtbot.waitSignal(canvas.mask_changed, timeout=1000):
        drag(qtbot, canvas, [(40, 50), (80, 50), (120, 50)])
    m = mask_array(canvas)
    assert canvas.has_mask()
    assert m[50, 40] == m[50, 80] == m[50, 120] == m[47, 100] == 255
    assert m[60, 80] == 0 and m[50, 30] == 0 and m[50, 130] == 0 and m[20, 80] == 0
    assert canvas.mask().size == (W, H) and canvas.mask().mode == "L"


def test_soft_brush_leaves_a_soft_edge(qtbot, canvas: CanvasView) -> None:
    canvas.set_brush_size(30)
    canvas.set_brush_hardness(0.0)
    drag(qtbot, canvas, [(50, 50), (150, 50)])
    column = mask_array(canvas)[32:51, 100].astype(int)  # from outside the stroke to its centre
    assert column[-1] > 200 and column[0] == 0
    assert np.all(np.diff(column) >= 0) and np.count_nonzero((column > 10) & (column < 200)) >= 5


def test_eraser_removes_paint(qtbot, canvas: CanvasView) -> None:
    canvas.set_brush_size(16)
    drag(qtbot, canvas, [(20, 50), (180, 50)])
    QTest.keyClick(canvas, Qt.Key.Key_E)
    assert canvas.tool() == "eraser"
    drag(qtbot, canvas, [(100, 20), (100, 80)])
    m = mask_array(canvas)
    assert m[50, 100] == 0 and m[50, 30] == 255 and m[50, 170] == 255
    QTest.keyClick(canvas, Qt.Key.Key_B)
    assert canvas.tool() == "brush"


def test_undo_redo_restores_strokes_exactly(qtbot, canvas: CanvasView) -> None:
    canvas.set_brush_hardness(0.3)
    drag(qtbot, canvas, [(30, 30), (90, 70)])
    first = mask_array(canvas)
    drag(qtbot, canvas, [(150, 20), (150, 80), (60, 80)])
    second = mask_array(canvas)
    assert canvas.undo_stack.count() == 2 and not np.array_equal(first, second)
    canvas.undo_stack.undo()
    assert np.array_equal(mask_array(canvas), first)
    canvas.undo_stack.undo()
    assert not mask_array(canvas).any() and not canvas.has_mask()
    canvas.undo_stack.redo()
    assert np.array_equal(mask_array(canvas), first)
    canvas.undo_stack.redo()
    assert np.array_equal(mask_array(canvas), second)


def test_stroke_undo_stores_only_touched_tiles(qtbot) -> None:
    view = CanvasView()
    qtbot.addWidget(view)
    view.set_image(Image.new("RGB", (1024, 1024), (40, 40, 40)))
    view.begin_stroke(QPointF(100, 100))
    view.stroke_to(QPointF(160, 110))
    command = view.end_stroke()
    assert command is not None and command.nbytes < 1024 * 1024 // 50


def test_the_brush_follows_the_picture_size_until_the_designer_sets_one(qtbot) -> None:
    view = CanvasView()
    qtbot.addWidget(view)
    view.set_image(picture(64, 64))
    assert view.brush_size() == 8  # not 48 px on a 64 px picture
    view.set_image(picture(1024, 768))
    assert view.brush_size() == 48
    view.set_brush_size(20)
    view.set_image(picture(64, 64))
    assert view.brush_size() == 20  # the designer's size stays


def test_bracket_keys_change_brush_size(qtbot, canvas: CanvasView) -> None:
    canvas.set_brush_size(20)
    with qtbot.waitSignal(canvas.brush_size_changed, timeout=1000) as bigger:
        QTest.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert bigger.args == [25] and canvas.brush_size() == 25
    QTest.keyClick(canvas, Qt.Key.Key_BracketLeft)
    QTest.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert canvas.brush_size() < 20
    canvas.set_brush_size(1)
    QTest.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert canvas.brush_size() == 1


def test_zoom_does_not_change_which_pixels_a_stroke_hits(qtbot, canvas: CanvasView) -> None:
    path = [(40.0, 30.0), (100.0, 60.0), (160.0, 40.0)]
    drag(qtbot, canvas, path)
    fitted = mask_array(canvas) >= 128
    canvas.undo_stack.undo()
    with qtbot.waitSignal(canvas.zoom_changed, timeout=1000):
        canvas.set_zoom(4.0, QPointF(at(canvas, 100, 50)))
    drag(qtbot, canvas, path[1:])  # the zoomed view shows only the middle of the image
    canvas.set_zoom(0.5)
    drag(qtbot, canvas, path[:2])
    zoomed = mask_array(canvas) >= 128
    assert (fitted ^ zoomed).sum() < 0.05 * fitted.sum()
    for x, y in path:
        assert zoomed[int(y), int(x)]


def test_wheel_zooms_around_the_cursor(qtbot, canvas: CanvasView) -> None:
    cursor = QPointF(at(canvas, 150, 25))
    under = canvas.map_to_image(cursor)
    before = canvas.zoom()
    event = QWheelEvent(
        cursor, QPointF(canvas.mapToGlobal(cursor)), QPoint(0, 0), QPoint(0, 240),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
    )
    with qtbot.waitSignal(canvas.zoom_changed, timeout=1000):
        QApplication.sendEvent(canvas, event)
    assert canvas.zoom() == pytest.approx(before * 1.44)
    after = canvas.map_to_image(cursor)
    assert after.x() == pytest.approx(under.x()) and after.y() == pytest.approx(under.y())


def test_fit_and_actual_size_shortcuts(qtbot, canvas: CanvasView) -> None:
    QTest.keyClick(canvas, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert canvas.zoom() == 1.0
    QTest.keyClick(canvas, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    rect = canvas.image_rect()
    assert rect.width() <= canvas.width() and rect.height() <= canvas.height()
    assert rect.center().x() == pytest.approx(canvas.width() / 2)
    assert canvas.zoom() == pytest.approx((420 - 48) / W)


def test_middle_drag_and_space_drag_pan_without_painting(qtbot, canvas: CanvasView) -> None:
    start = canvas.image_rect().topLeft()
    drag(qtbot, canvas, [(50, 50), (70, 60)], Qt.MouseButton.MiddleButton)
    moved = canvas.image_rect().topLeft() - start
    assert moved.x() > 10 and moved.y() > 5
    QTest.keyPress(canvas, Qt.Key.Key_Space)
    drag(qtbot, canvas, [(50, 50), (30, 50)])
    QTest.keyRelease(canvas, Qt.Key.Key_Space)
    assert not canvas.has_mask() and canvas.undo_stack.count() == 0
    drag(qtbot, canvas, [(100, 50), (110, 50)])  # after panning, strokes still land in image pixels
    assert mask_array(canvas)[50, 105] == 255


def test_extend_grows_the_image_and_is_undoable(qtbot, canvas: CanvasView) -> None:
    drag(qtbot, canvas, [(90, 50), (110, 50)])
    old_image, old_mask = np.asarray(canvas.image()), mask_array(canvas)
    with qtbot.waitSignal(canvas.image_changed, timeout=1000):
        canvas.extend(64, 0, 64, 0)
    new = np.asarray(canvas.image())
    assert new.shape[:2] == (H, W + 128)
    assert np.array_equal(new[:, 64 : 64 + W], old_image)
    m = mask_array(canvas)
    assert np.all(m[:, :64] == 255) and np.all(m[:, 64 + 16 : 64 + 60] == 0)  # the default 16 px overlap
    assert np.array_equal(m[:, 64 + 60 : 64 + 140], old_mask[:, 60:140])  # the painted stroke moved with the image
    canvas.undo_stack.undo()
    assert np.array_equal(np.asarray(canvas.image()), old_image)
    assert np.array_equal(mask_array(canvas), old_mask)
    canvas.undo_stack.redo()
    assert canvas.image().size == (W + 128, H)
    with pytest.raises(ValueError, match="all four extents are 0"):
        canvas.extend(0, 0, 0, 0)


def test_extending_a_second_side_keeps_the_first_sides_mask(qtbot, canvas: CanvasView) -> None:
    canvas.extend(32, 0, 0, 0)
    canvas.extend(0, 0, 32, 0)  # one side at a time, as the toolbar's arrows do it
    m = mask_array(canvas)
    assert np.all(m[:, :32] == 255) and np.all(m[:, -32:] == 255)  # both new strips are repainted
    assert np.all(m[:, 32 + 16 : -32 - 16] == 0)  # the original stays, apart from the overlaps


def test_extend_keeps_old_pixels_in_place_on_screen(qtbot, canvas: CanvasView) -> None:
    canvas.set_zoom(1.0)
    before = canvas.map_from_image(QPointF(10, 10))
    canvas.extend(32, 20, 0, 0)  # 232 x 120: already multiples of 8, so no snapping
    after = canvas.map_from_image(QPointF(10 + 32, 10 + 20))
    assert after.x() == pytest.approx(before.x()) and after.y() == pytest.approx(before.y())


def test_dragging_an_edge_with_the_extend_tool(qtbot, canvas: CanvasView) -> None:
    canvas.set_tool("extend")
    with qtbot.waitSignal(canvas.extend_requested, timeout=1000) as requested:
        drag(qtbot, canvas, [(W - 2, 50), (W + 20, 50), (W + 37, 50)])
    assert requested.args == [0, 0, 40, 0]
    assert canvas.image().size == (W + 40, H)
    canvas.undo_stack.undo()
    assert canvas.image().size == (W, H)


def test_apply_result_is_undoable_and_keeps_mask_of_same_size(qtbot, canvas: CanvasView) -> None:
    drag(qtbot, canvas, [(50, 50), (60, 50)])
    mask = mask_array(canvas)
    result = Image.new("RGB", (W, H), (250, 10, 10))
    canvas.apply_result(result, "Generate")
    assert canvas.image().getpixel((5, 5)) == (250, 10, 10)
    assert np.array_equal(mask_array(canvas), mask)
    canvas.apply_result(Image.new("RGB", (64, 64), (0, 0, 0)), "Generate")
    assert canvas.image().size == (64, 64) and not canvas.has_mask()
    canvas.undo_stack.undo()
    canvas.undo_stack.undo()
    assert np.array_equal(np.asarray(canvas.image()), np.asarray(picture()))


def test_mask_commands_fill_invert_clear_set(qtbot, canvas: CanvasView) -> None:
    drag(qtbot, canvas, [(50, 50), (60, 50)])
    painted = mask_array(canvas)
    canvas.invert_mask()
    assert np.array_equal(mask_array(canvas), 255 - painted)
    canvas.fill_mask()
    assert np.all(mask_array(canvas) == 255)
    canvas.clear_mask()
    assert not canvas.has_mask()
    for _ in range(3):
        canvas.undo_stack.undo()
    assert np.array_equal(mask_array(canvas), painted)
    with pytest.raises(MaskError, match="mask is 10x10 but the image is 200x100"):
        canvas.set_mask(Image.new("L", (10, 10), 255))
    canvas.set_mask(Image.new("L", (W, H), 77))
    assert np.all(mask_array(canvas) == 77)


def test_mask_preview_shows_the_grown_mask(qtbot, canvas: CanvasView) -> None:
    canvas.set_overlay(QColor(0, 255, 0), 1.0)
    drag(qtbot, canvas, [(100, 50), (101, 50)])
    probe = at(canvas, 100, 62)  # 12 px below the stroke: outside the raw mask
    raw = canvas.grab().toImage().pixelColor(probe)
    assert (raw.red(), raw.blue()) == pytest.approx((127, 90), abs=3)  # the picture itself
    canvas.set_mask_preview(10, 0)
    grown = canvas.grab().toImage().pixelColor(probe)
    assert (grown.red(), grown.green(), grown.blue()) == (0, 255, 0)  # the opaque green tint
    eff = np.asarray(canvas.effective_mask())
    assert eff[62, 100] == 255 and mask_array(canvas)[62, 100] == 0


def test_show_preview_draws_over_the_box_through_the_mask(qtbot, canvas: CanvasView) -> None:
    half = np.zeros((H, W), np.uint8)
    half[:, :100] = 255
    canvas.set_mask(Image.fromarray(half))
    preview = QImage(32, 32, QImage.Format.Format_RGB32)
    preview.fill(QColor(0, 0, 255))
    canvas.show_preview(preview, (0, 0, W, H))
    shot = canvas.grab().toImage()
    assert shot.pixelColor(at(canvas, 40, 50)).blue() > 240
    assert shot.pixelColor(at(canvas, 160, 50)).blue() < 120  # unmasked: the picture, not the preview
    canvas.show_preview(None)
    assert canvas.grab().toImage().pixelColor(at(canvas, 40, 50)).blue() < 200


def test_drop_and_paste_open_images(qtbot, canvas: CanvasView, tmp_path) -> None:
    path = tmp_path / "dropped.png"
    Image.new("RGB", (48, 32), (9, 99, 199)).save(path)
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, data, buttons, mods)
    QApplication.sendEvent(canvas, enter)
    assert enter.isAccepted()  # Qt delivers a drop only to the widget that accepted the enter
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, data, buttons, mods)
    with qtbot.waitSignal(canvas.image_dropped, timeout=1000) as dropped:
        QApplication.sendEvent(canvas, drop)
    assert dropped.args == [str(path)] and canvas.image().size == (48, 32)
    QGuiApplication.clipboard().setImage(pil_to_qimage(Image.new("RGB", (20, 10), (1, 2, 3))))
    assert canvas.paste_from_clipboard()
    assert canvas.image().size == (20, 10) and canvas.image().getpixel((0, 0)) == (1, 2, 3)
    canvas.undo_stack.undo()
    assert canvas.image().size == (48, 32)


def test_broken_file_reports_load_failed(qtbot, canvas: CanvasView, tmp_path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with qtbot.waitSignal(canvas.load_failed, timeout=1000) as failed:
        assert not canvas.open_file(str(bad))
    assert "broken.png" in failed.args[0] and "not an image file Studio can read" in failed.args[0]
    assert canvas.image().size == (W, H)
    buf = io.BytesIO()
    picture().save(buf, "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with qtbot.waitSignal(canvas.load_failed, timeout=1000) as failed:
        assert not canvas.open_file(str(cut))
    assert failed.args[0] == "cannot open cut.png: the file is cut short or corrupt"
    with qtbot.waitSignal(canvas.load_failed, timeout=1000) as failed:
        assert not canvas.open_file(str(tmp_path / "gone.png"))
    assert "does not exist" in failed.args[0]


def test_rgba_image_round_trips_exactly(qtbot, canvas: CanvasView) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    canvas.set_image(Image.fromarray(arr, "RGBA"))
    out = canvas.image()
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out), arr)
    assert canvas.undo_stack.count() == 0


def test_actual_size_shows_the_image_pixels_exactly(qtbot, canvas: CanvasView) -> None:
    canvas.set_zoom(1.37)
    canvas.actual_size()
    shot = canvas.grab().toImage()
    pic = picture()
    for x, y in [(0, 0), (57, 33), (123, 64), (199, 99)]:
        c = shot.pixelColor(at(canvas, x, y))
        assert (c.red(), c.green(), c.blue()) == pic.getpixel((x, y))


def test_a_mask_handed_out_does_not_change_with_later_strokes_or_pictures(qtbot, canvas: CanvasView) -> None:
    """A queued inpaint holds the mask it was given: painting on, or a new picture, must not reach it
    (a 200 px wide mask has no row padding, and PIL shared its memory)."""
    drag(qtbot, canvas, [(40, 50), (80, 50)])
    handed_out = canvas.mask()
    before = np.asarray(handed_out).copy()
    drag(qtbot, canvas, [(150, 20), (150, 80)])
    canvas.set_image(picture())
    assert np.array_equal(np.asarray(handed_out), before)


def label_ink(view: CanvasView) -> int:
    """Dark pixels in the corner of a white picture where the size label goes (0: no label)."""
    shot = view.grab().toImage()
    corner = view.image_rect().topLeft().toPoint()
    return sum(QColor(shot.pixel(corner.x() + dx, corner.y() + dy)).lightness() < 128
               for dx in range(4, 70) for dy in range(4, 24))


def test_the_canvas_shows_its_size_while_extending(qtbot, canvas: CanvasView) -> None:
    white = Image.new("RGB", (64, 64), "white")
    canvas.set_image(white)
    assert canvas.size_label() == "" and label_ink(canvas) == 0  # painting: the picture alone
    canvas.set_tool("extend")
    assert canvas.size_label() == "64 × 64" and label_ink(canvas) > 20
    right = canvas.image_rect().right()
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(int(right) - 2, 100))
    QTest.mouseMove(canvas, QPoint(int(right + 20 * canvas.zoom()), 100))
    assert canvas.size_label() == "64 × 64"  # the drag's frame shows the size it would make instead
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       QPoint(int(right + 20 * canvas.zoom()), 100))
    assert canvas.image().size == (88, 64) and canvas.size_label() == "88 × 64"
    canvas.set_tool("brush")
    assert canvas.size_label() == "88 × 64" and label_ink(canvas) > 20  # until a generation fills it
    canvas.apply_result(Image.new("RGB", (88, 64), "white"), "Generate")
    assert canvas.size_label() == "" and label_ink(canvas) == 0
    canvas.undo_stack.undo()
    assert canvas.size_label() == "88 × 64"


def test_an_extension_is_an_outpaint_of_the_picture_before_it_until_the_mask_changes(qtbot, canvas: CanvasView) -> None:
    from studio.engine import canvas_ops

    canvas.extend(30, 0, 0, 0, fill="blur")
    canvas.extend(0, 0, 0, 12, fill="blur")  # one side at a time: still one outpaint of the first picture
    source, extension = canvas.outpaint()
    assert np.array_equal(np.asarray(source), np.asarray(picture()))
    assert (extension.extents, extension.fill, extension.overlap) == ((32, 0, 0, 12), "blur", 16)
    grown, mask = canvas_ops.extend_canvas(source, *extension.extents, overlap=16, fill="blur")
    assert np.array_equal(np.asarray(grown), np.asarray(canvas.image())) and np.array_equal(mask, mask_array(canvas))
    canvas.extend(0, 8, 0, 0, fill="edge")
    assert canvas.outpaint() is None  # two fills: no single outpaint makes this
    canvas.undo_stack.undo()
    assert canvas.outpaint()[1].extents == (32, 0, 0, 12)
    drag(qtbot, canvas, [(100, 50), (120, 50)])
    assert canvas.outpaint() is None  # a painted mask makes it an inpaint of what is there
