"""Drawing helpers of the canvas: surround, checkerboard, brush outline, the extend tool's frame.

Colours come from the widget's palette roles, so the canvas follows the application theme (the main
window sets a Fusion dark palette).
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPalette, QPen, QPixmap

SIDES = ("left", "top", "right", "bottom")
# How close (screen pixels) to an image edge a press must be to grab it with the extend tool.
EDGE_GRAB = 14


def surround_color(palette: QPalette) -> QColor:
    """The dark area around the image: a step below the window colour."""
    return palette.color(QPalette.ColorRole.Window).darker(145)


def checker_brush(palette: QPalette, cell: int = 8) -> QBrush:
    """A two-tone checkerboard, shown under transparent pixels."""
    base = palette.color(QPalette.ColorRole.Base)
    light, dark = base.lighter(135), base.lighter(112)
    tile = QPixmap(2 * cell, 2 * cell)
    tile.fill(dark)
    p = QPainter(tile)
    p.fillRect(0, 0, cell, cell, light)
    p.fillRect(cell, cell, cell, cell, light)
    p.end()
    return QBrush(tile)


def draw_placeholder(p: QPainter, rect: QRectF, palette: QPalette) -> None:
    """The empty canvas: an invitation to drop or paste an image."""
    p.setPen(QPen(palette.color(QPalette.ColorRole.PlaceholderText), 1.5, Qt.PenStyle.DashLine))
    p.setBrush(Qt.BrushStyle.NoBrush)
    box = rect.adjusted(40, 40, -40, -40)
    if box.width() > 80 and box.height() > 60:
        p.drawRoundedRect(box, 12, 12)
    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, "Drop an image here\nor paste one (Ctrl+V)")


def draw_image_shadow(p: QPainter, target: QRectF) -> None:
    """A soft two-step shadow that lifts the image off the surround."""
    p.setPen(Qt.PenStyle.NoPen)
    for grow, alpha in ((6.0, 40), (3.0, 70)):
        p.setBrush(QColor(0, 0, 0, alpha))
        p.drawRect(target.adjusted(-grow + 2, -grow + 3, grow + 2, grow + 3))


def draw_brush_outline(p: QPainter, centre: QPointF, radius: float, erase: bool) -> None:
    """The brush footprint: a white circle over a dark one so it reads on any image, plus a dot."""
    p.setBrush(Qt.BrushStyle.NoBrush)
    radius = max(radius, 1.5)
    dash = Qt.PenStyle.DashLine if erase else Qt.PenStyle.SolidLine
    p.setPen(QPen(QColor(0, 0, 0, 170), 3.0))
    p.drawEllipse(centre, radius, radius)
    p.setPen(QPen(QColor(255, 255, 255, 230), 1.2, dash))
    p.drawEllipse(centre, radius, radius)
    p.setPen(QPen(QColor(255, 255, 255, 230), 1.0))
    p.drawLine(centre - QPointF(3, 0), centre + QPointF(3, 0))
    p.drawLine(centre - QPointF(0, 3), centre + QPointF(0, 3))


def brush_outline_rect(centre: QPointF, radius: float) -> QRectF:
    """The screen rectangle the brush outline occupies (to repaint only that)."""
    r = max(radius, 4.0) + 4.0
    return QRectF(centre.x() - r, centre.y() - r, 2 * r, 2 * r)


def hit_sides(pos: QPointF, target: QRectF) -> frozenset[str]:
    """The image edges a press at `pos` (screen) grabs: near an edge, or anywhere beyond it."""
    sides = set()
    if pos.x() < target.left() + EDGE_GRAB:
        sides.add("left")
    elif pos.x() > target.right() - EDGE_GRAB:
        sides.add("right")
    if pos.y() < target.top() + EDGE_GRAB:
        sides.add("top")
    elif pos.y() > target.bottom() - EDGE_GRAB:
        sides.add("bottom")
    return frozenset(sides)


def side_cursor(sides: frozenset[str]) -> Qt.CursorShape:
    horizontal = bool(sides & {"left", "right"})
    vertical = bool(sides & {"top", "bottom"})
    if horizontal and vertical:
        falling = sides in ({"left", "top"}, {"right", "bottom"})
        return Qt.CursorShape.SizeFDiagCursor if falling else Qt.CursorShape.SizeBDiagCursor
    if horizontal:
        return Qt.CursorShape.SizeHorCursor
    if vertical:
        return Qt.CursorShape.SizeVerCursor
    return Qt.CursorShape.ArrowCursor


def drag_extents(
    sides: frozenset[str], pos: QPointF, width: int, height: int, multiple: int = 8
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) for an edge drag to image point `pos`: the grabbed edges follow the
    pointer outwards, rounded up to `multiple` pixels."""

    def snap(v: float) -> int:
        return int(math.ceil(max(v, 0.0) / multiple) * multiple)

    return (
        snap(-pos.x()) if "left" in sides else 0,
        snap(-pos.y()) if "top" in sides else 0,
        snap(pos.x() - width) if "right" in sides else 0,
        snap(pos.y() - height) if "bottom" in sides else 0,
    )


def draw_extend_frame(p: QPainter, target: QRectF, extents: tuple[int, ...], zoom: float, palette: QPalette) -> None:
    """The frame an edge drag would produce: the new area tinted, its outline dashed, its size."""
    left, top, right, bottom = extents
    frame = target.adjusted(-left * zoom, -top * zoom, right * zoom, bottom * zoom)
    accent = palette.color(QPalette.ColorRole.Highlight)
    fill = QColor(accent)
    fill.setAlpha(60)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(fill, Qt.BrushStyle.SolidPattern))
    p.drawRect(QRectF(frame.left(), frame.top(), frame.width(), target.top() - frame.top()))
    p.drawRect(QRectF(frame.left(), target.bottom(), frame.width(), frame.bottom() - target.bottom()))
    p.drawRect(QRectF(frame.left(), target.top(), target.left() - frame.left(), target.height()))
    p.drawRect(QRectF(target.right(), target.top(), frame.right() - target.right(), target.height()))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(QPen(accent, 1.5, Qt.PenStyle.DashLine))
    p.drawRect(frame)
    w = round(target.width() / zoom) + left + right
    h = round(target.height() / zoom) + top + bottom
    draw_label(p, frame.topLeft() + QPointF(6, 6), f"{w} × {h}", palette)


def draw_label(p: QPainter, at: QPointF, text: str, palette: QPalette) -> None:
    """A small rounded tag with text, for sizes and hints drawn over the canvas."""
    font = QFont(p.font())
    font.setPointSizeF(max(font.pointSizeF(), 9.0))
    p.setFont(font)
    metrics = p.fontMetrics()
    box = QRectF(at, metrics.size(0, text)).adjusted(-6, -3, 6, 3)
    box.moveTopLeft(at)
    p.setPen(Qt.PenStyle.NoPen)
    bg = QColor(palette.color(QPalette.ColorRole.ToolTipBase))
    bg.setAlpha(220)
    p.setBrush(bg)
    p.drawRoundedRect(box, 4, 4)
    p.setPen(palette.color(QPalette.ColorRole.ToolTipText))
    p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
