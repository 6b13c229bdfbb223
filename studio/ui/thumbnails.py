"""Thumbnails for the gallery grid: decoded off the GUI thread, cached as pixmaps, painted by a delegate.

Decoding and scaling happen on a private QThreadPool (QImage is safe off the GUI thread; QPixmap is
not), results come back by a queued signal, and the GUI thread turns them into pixmaps kept in a
bounded LRU cache. Newer requests run first, so what is on screen now wins over what was on screen
a moment ago while scrolling fast.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, QRect, QRectF, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from studio.gallery import Gallery, GalleryError

FavoriteRole = Qt.ItemDataRole.UserRole + 1
MissingRole = Qt.ItemDataRole.UserRole + 2
IdRole = Qt.ItemDataRole.UserRole + 3
RecordRole = Qt.ItemDataRole.UserRole + 4


class _Relay(QObject):
    """Carries results from pool threads to the GUI thread (a queued connection)."""

    done = Signal(int, int, QImage)  # image id, size, image (null when it failed)


class _Job(QRunnable):
    def __init__(self, relay: _Relay, gallery: Gallery, image_id: int, file: Path, size: int, scale_to: int) -> None:
        super().__init__()
        self.relay, self.gallery, self.image_id, self.file = relay, gallery, image_id, file
        self.size, self.scale_to = size, scale_to

    def run(self) -> None:
        image = QImage()
        try:
            thumb = self.gallery.thumbnail(self.file, self.size)
            image = QImage(str(thumb))
            if not image.isNull() and max(image.width(), image.height()) > self.scale_to:
                image = image.scaled(self.scale_to, self.scale_to, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation)
        except (GalleryError, OSError):
            pass  # a missing or unreadable file shows the placeholder; the grid says why
        self.relay.done.emit(self.image_id, self.size, image)


class ThumbnailLoader(QObject):
    """Asynchronous thumbnails by (image id, size) with a bounded pixmap cache."""

    ready = Signal(int, int)  # image id, size: the pixmap is now in the cache

    def __init__(self, gallery: Gallery, max_pixmaps: int = 800, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.gallery = gallery
        self.max_pixmaps = max_pixmaps
        self._cache: OrderedDict[tuple[int, int], QPixmap] = OrderedDict()
        self._failed: set[tuple[int, int]] = set()
        self._pending: set[tuple[int, int]] = set()
        self._order = itertools.count()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, min(4, QThreadPool.globalInstance().maxThreadCount() - 1)))
        self._relay = _Relay()
        self._relay.done.connect(self._arrived)

    def pixmap(self, image_id: int, file: Path, size: int = 256, scale_to: int | None = None) -> QPixmap | None:
        """The cached pixmap, or None after queueing its decoding (`ready` fires when it lands)."""
        key = (image_id, size)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        if key not in self._pending and key not in self._failed:
            self._pending.add(key)
            # Priorities grow, so the latest request (what is visible now) is decoded first.
            priority = next(self._order) % 2**31
            self._pool.start(_Job(self._relay, self.gallery, image_id, file, size, scale_to or size), priority)
        return None

    def failed(self, image_id: int, size: int = 256) -> bool:
        return (image_id, size) in self._failed

    def forget(self, image_id: int) -> None:
        """Drop an image's pixmaps (its file changed or came back)."""
        for key in [k for k in self._cache if k[0] == image_id]:
            del self._cache[key]
        self._failed = {k for k in self._failed if k[0] != image_id}

    def clear_queue(self) -> None:
        """Forget requests not yet started (the list they were for is gone)."""
        self._pool.clear()
        self._pending.clear()

    def shutdown(self, timeout_ms: int = 3000) -> None:
        self._pool.clear()
        self._pool.waitForDone(timeout_ms)

    def _arrived(self, image_id: int, size: int, image: QImage) -> None:
        key = (image_id, size)
        self._pending.discard(key)
        if image.isNull():
            self._failed.add(key)
        else:
            self._cache[key] = QPixmap.fromImage(image)
            while len(self._cache) > self.max_pixmaps:
                self._cache.popitem(last=False)
        self.ready.emit(image_id, size)


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints a grid cell: the thumbnail fitted in a rounded tile, selection ring, favourite star."""

    def __init__(self, loader: ThumbnailLoader, cell: int = 168, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.loader = loader
        self.cell = cell

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        return QSize(self.cell, self.cell)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        palette: QPalette = option.palette  # type: ignore[attr-defined]
        rect: QRect = option.rect.adjusted(4, 4, -4, -4)  # type: ignore[attr-defined]
        state = option.state  # type: ignore[attr-defined]
        selected = bool(state & QStyle.StateFlag.State_Selected)
        hovered = bool(state & QStyle.StateFlag.State_MouseOver)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        tile = QPainterPath()
        tile.addRoundedRect(QRectF(rect), 6, 6)
        painter.fillPath(tile, palette.color(QPalette.ColorRole.AlternateBase if hovered else QPalette.ColorRole.Base))
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            self._draw_pixmap(painter, pixmap, rect.adjusted(4, 4, -4, -4), tile)
        else:
            self._draw_placeholder(painter, palette, rect, bool(index.data(MissingRole)))
        if selected:
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Highlight), 3))
            painter.drawRoundedRect(QRectF(rect).adjusted(1.5, 1.5, -1.5, -1.5), 6, 6)
        if index.data(FavoriteRole):
            self._draw_star(painter, palette, rect)
        painter.restore()

    @staticmethod
    def _draw_pixmap(painter: QPainter, pixmap: QPixmap, area: QRect, clip: QPainterPath) -> None:
        ratio = pixmap.devicePixelRatio() or 1.0
        size = QSize(int(pixmap.width() / ratio), int(pixmap.height() / ratio))
        size.scale(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(area.center())
        painter.setClipPath(clip)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(target, pixmap)
        painter.setClipping(False)

    @staticmethod
    def _draw_placeholder(painter: QPainter, palette: QPalette, rect: QRect, missing: bool) -> None:
        colour = palette.color(QPalette.ColorRole.PlaceholderText)
        painter.setPen(colour)
        font = painter.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        painter.setFont(font)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "File missing" if missing else "…")

    @staticmethod
    def _draw_star(painter: QPainter, palette: QPalette, rect: QRect) -> None:
        badge = QRect(rect.right() - 26, rect.top() + 4, 22, 22)
        shade = QColor(palette.color(QPalette.ColorRole.Window))
        shade.setAlpha(200)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(shade)
        painter.drawEllipse(badge)
        painter.setPen(QColor(palette.color(QPalette.ColorRole.Highlight)).lighter(140))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "★")
