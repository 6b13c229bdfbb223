"""The gallery grid's data side: the lazy model, thumbnails decoded off the GUI thread, the delegate.

The model never holds more than the pages the view has scrolled through (`canFetchMore` /
`fetchMore`, 200 rows a page), so 100,000 images open as fast as 200. Thumbnails are decoded and
scaled on a private QThreadPool (QImage is safe off the GUI thread; QPixmap is not), results come
back by a queued signal, and the GUI thread turns them into pixmaps kept in a bounded LRU cache.
Newer requests run first, so what is on screen now wins over what was on screen a moment ago.
"""

from __future__ import annotations

import html
import itertools
from collections import OrderedDict
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from studio.gallery import Gallery, ImageRecord, Query

PAGE = 200         # rows fetched at a time
GRID_SIZE = 256    # thumbnails on disk
CELL = 150         # grid cell (logical pixels), before stretching to fill the width

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
        except Exception:  # noqa: BLE001 - a thread boundary: any failure just shows the placeholder
            image = QImage()
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

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
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


class GalleryModel(QAbstractListModel):
    """Rows of the current query, fetched a page at a time as the view scrolls."""

    def __init__(self, gallery: Gallery, loader: ThumbnailLoader, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.gallery = gallery
        self.loader = loader
        self.query = Query()
        self.total = 0
        self._records: list[ImageRecord] = []
        self._rows: dict[int, int] = {}  # image id -> row
        loader.ready.connect(self._thumbnail_ready)

    # -- loading
    def set_query(self, query: Query) -> None:
        self.query = query
        self.reload()

    def reload(self, keep_loaded: bool = False) -> None:
        """Re-run the query from the first page (new images, changed filters, deletes); with
        `keep_loaded`, as many rows as were loaded (up to 20 pages), so the view keeps its place."""
        limit = min(max(PAGE, len(self._records)), 20 * PAGE) if keep_loaded else PAGE
        self.beginResetModel()
        self.loader.clear_queue()
        self.total = self.gallery.count(self.query)
        self._records = self.gallery.find(self.query, offset=0, limit=limit)
        self._rows = {r.id: i for i, r in enumerate(self._records)}
        self.endResetModel()

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:
        return not parent.isValid() and len(self._records) < self.total

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> None:
        if parent.isValid():
            return
        page = self.gallery.find(self.query, offset=len(self._records), limit=PAGE)
        page = [r for r in page if r.id not in self._rows]  # rows shifted by a save in between
        if not page:
            self.total = len(self._records)  # the query shrank meanwhile: stop asking
            return
        first = len(self._records)
        self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
        self._records.extend(page)
        self._rows.update({r.id: first + i for i, r in enumerate(page)})
        self.endInsertRows()

    # -- access
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._records)

    def record(self, row: int) -> ImageRecord | None:
        return self._records[row] if 0 <= row < len(self._records) else None

    def row_of(self, image_id: int) -> int | None:
        return self._rows.get(image_id)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        record = self.record(index.row()) if index.isValid() else None
        if record is None:
            return None
        if role == Qt.ItemDataRole.DecorationRole:
            return self.loader.pixmap(record.id, record.file, GRID_SIZE, CELL * 2)
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [html.escape(record.prompt[:300]) or "<i>no prompt</i>",
                     f"seed {record.seed}" if record.seed is not None else "", record.created_at[:16].replace("T", " ")]
            return "<br>".join(line for line in lines if line)
        if role == Qt.ItemDataRole.AccessibleTextRole or role == Qt.ItemDataRole.DisplayRole:
            return record.prompt[:80]
        if role == FavoriteRole:
            return record.favorite
        if role == MissingRole:
            return record.missing or self.loader.failed(record.id, GRID_SIZE)
        if role == IdRole:
            return record.id
        if role == RecordRole:
            return record
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def replace(self, record: ImageRecord) -> None:
        """Show a changed row (favourite toggled) without reloading the list."""
        row = self._rows.get(record.id)
        if row is not None:
            self._records[row] = record
            index = self.index(row)
            self.dataChanged.emit(index, index)

    # -- drag out: file URLs, so the canvas (or a file manager) can take the image
    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:  # type: ignore[override]
        data = QMimeData()
        records = [self.record(i.row()) for i in indexes]
        data.setUrls([QUrl.fromLocalFile(str(r.file)) for r in records if r is not None])
        return data

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    def _thumbnail_ready(self, image_id: int, size: int) -> None:
        row = self._rows.get(image_id)
        if row is not None and size == GRID_SIZE:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
