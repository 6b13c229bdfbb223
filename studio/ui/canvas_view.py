"""Zoom and pan for the canvas: the transform between widget and image coordinates.

widget = offset + image * zoom. Strokes, boxes and extents are all kept in image coordinates, so
nothing but drawing depends on the zoom.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, QSizeF, Signal
from PySide6.QtGui import QImage, QPainter, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import QWidget

MIN_ZOOM, MAX_ZOOM = 1 / 64, 64.0
FIT_MARGIN = 24
WHEEL_STEP = 1.2  # zoom factor per wheel notch


class ZoomPanView(QWidget):
    """A widget that shows content of `_content_size()` image pixels through a zoom and an offset."""

    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._zoom = 1.0
        self._offset = QPointF(0, 0)
        self._fit_mode = True
        self._pan_from: QPointF | None = None

    def _content_size(self) -> QSize:
        raise NotImplementedError

    def _fit_margin(self) -> float:
        return FIT_MARGIN

    def sizeHint(self) -> QSize:
        return QSize(800, 600)

    def zoom(self) -> float:
        return self._zoom

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the image point under `anchor` (widget coordinates; default the centre) still."""
        zoom = min(max(zoom, MIN_ZOOM), MAX_ZOOM)
        anchor = QPointF(self.width() / 2, self.height() / 2) if anchor is None else QPointF(anchor)
        fixed = self.map_to_image(anchor)
        self._fit_mode = False
        self._offset = anchor - fixed * zoom
        if zoom >= 1 and zoom == int(zoom):
            # Whole-pixel offsets at integer zooms keep pixels crisp (no resampling at 100%).
            self._offset = QPointF(round(self._offset.x()), round(self._offset.y()))
        self._set_zoom_value(zoom)
        self.update()

    def fit(self) -> None:
        """Zoom so the whole image fits the widget, centred (Ctrl+0); later resizes keep it fitted."""
        self._fit_mode = True
        size = self._content_size()
        if size.isEmpty():
            return
        iw, ih, margin = size.width(), size.height(), self._fit_margin()
        zoom = min((self.width() - 2 * margin) / iw, (self.height() - 2 * margin) / ih)
        zoom = min(max(zoom, MIN_ZOOM), MAX_ZOOM)
        self._offset = QPointF((self.width() - iw * zoom) / 2, (self.height() - ih * zoom) / 2)
        self._set_zoom_value(zoom)
        self.update()

    def actual_size(self) -> None:
        """One image pixel per screen pixel, around the centre of the view (Ctrl+1)."""
        self.set_zoom(1.0)

    def map_to_image(self, pos: QPointF) -> QPointF:
        return (QPointF(pos) - self._offset) / self._zoom

    def map_from_image(self, pos: QPointF) -> QPointF:
        return QPointF(pos) * self._zoom + self._offset

    def image_rect(self) -> QRectF:
        """Where the image is drawn, in widget coordinates."""
        return QRectF(self._offset, QSizeF(self._content_size()) * self._zoom)

    def _set_zoom_value(self, zoom: float) -> None:
        if zoom != self._zoom:
            self._zoom = zoom
            self.zoom_changed.emit(zoom)

    def _to_widget_rect(self, rect: QRectF) -> QRect:
        """The widget pixels covering an image rectangle (for partial repaints)."""
        tl = self.map_from_image(rect.topLeft())
        return QRectF(tl, rect.size() * self._zoom).toAlignedRect().adjusted(-2, -2, 2, 2)

    def _pan_by(self, pos: QPointF) -> None:
        """Move the image with the pointer while a pan is under way (started by setting _pan_from)."""
        if self._pan_from is not None:
            self._offset += pos - self._pan_from
            self._pan_from = QPointF(pos)
            self._fit_mode = False
            self.update()

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps and not self._content_size().isEmpty():
            self.set_zoom(self._zoom * math.pow(WHEEL_STEP, steps), event.position())
        event.accept()

    def resizeEvent(self, event: QResizeEvent) -> None:
        if self._fit_mode:
            self.fit()

    @staticmethod
    def _draw_part(p: QPainter, img: QImage, target: QRectF, exposed: QRectF) -> None:
        """Draw the part of `img` (stretched over `target`) that falls inside `exposed`, only: the
        cost follows the window's size, not the image's."""
        visible = target.intersected(exposed)
        if visible.isEmpty():
            return
        sx, sy = img.width() / target.width(), img.height() / target.height()
        x0 = math.floor((visible.left() - target.left()) * sx)
        y0 = math.floor((visible.top() - target.top()) * sy)
        x1 = min(img.width(), math.ceil((visible.right() - target.left()) * sx) + 1)
        y1 = min(img.height(), math.ceil((visible.bottom() - target.top()) * sy) + 1)
        source = QRectF(x0, y0, x1 - x0, y1 - y0)
        dest = QRectF(target.left() + x0 / sx, target.top() + y0 / sy, (x1 - x0) / sx, (y1 - y0) / sy)
        p.drawImage(dest, img, source)
