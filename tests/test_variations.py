"""The preview grid: tiles shaped like the pictures, a single preview where the canvas will show it."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QColor, QImage

from studio.ui.canvas import CanvasView
from studio.ui.variations import VariationGrid


def test_a_single_preview_lands_where_the_canvas_then_shows_the_picture(qtbot):
    grid, canvas = VariationGrid(), CanvasView()
    for widget in (grid, canvas):
        qtbot.addWidget(widget)
        widget.resize(370, 560)
    grid.start([7])
    picture = QImage(64, 64, QImage.Format.Format_RGB32)
    picture.fill(QColor("orange"))
    canvas.set_image(picture)
    shown = QRectF(canvas.map_from_image(QPointF(0, 0)), canvas.map_from_image(QPointF(64, 64)))
    tile = grid.tile_rect(0)
    for a, b in ((tile.left(), shown.left()), (tile.top(), shown.top()), (tile.width(), shown.width())):
        assert abs(a - b) < 1.0, (tile, shown)  # no jump when the finished picture replaces the preview


def test_tiles_keep_the_pictures_shape_and_stay_inside_the_widget(qtbot):
    grid = VariationGrid()
    qtbot.addWidget(grid)
    grid.resize(600, 500)
    grid.start([1, 2, 3, 4], aspect=512 / 768)
    rects = [grid.tile_rect(k) for k in range(4)]
    for r in rects:
        assert abs(r.width() / r.height() - 512 / 768) < 1e-6  # a portrait preview is not squashed square
        assert grid.rect().toRectF().contains(r)
    assert not rects[0].intersects(rects[1]) and not rects[0].intersects(rects[2])
    assert grid.index_at(rects[3].center().x(), rects[3].center().y()) == 3


def test_a_tile_loses_its_hover_frame_when_the_mouse_leaves_the_grid(qtbot):
    """The frame under the pointer goes when the pointer leaves the grid (onto the controls, say).
    Under Xvfb with a real X pointer the old grid kept it; here QTest's offscreen moves do not deliver
    the grid its Leave across tests, so the test hands it the Leave event Qt sends."""
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    grid = VariationGrid()
    qtbot.addWidget(grid)
    grid.resize(500, 400)
    grid.show()
    qtbot.waitExposed(grid)
    grid.start([1, 2, 3, 4])

    def frame(k: int) -> QColor:
        rect = grid.tile_rect(k).toRect()
        return QColor(grid.grab().toImage().pixel(rect.left(), rect.center().y()))

    plain = frame(1)
    qtbot.mouseMove(grid, grid.tile_rect(1).center().toPoint())
    assert frame(1) == grid.palette().highlight().color() != plain
    QApplication.sendEvent(grid, QEvent(QEvent.Type.Leave))
    assert frame(1) == plain
