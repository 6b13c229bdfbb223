"""A grid of N live previews (seed variations); click a tile to keep that image, double-click to adopt its seed."""

from __future__ import annotations

import math

from PySide6.QtCore import QPoint, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.ui.canvas_view import FIT_MARGIN

GAP = 8.0  # between tiles


class VariationGrid(QWidget):
    """Tiles laid out in a near-square grid; each shows its latest preview, then its final image."""

    chosen = Signal(int)  # keep this image (canvas + gallery)
    seed_chosen = Signal(int)  # make this tile's seed the new seed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._images: list[QImage | None] = []
        self._seeds: list[int] = []
        self._labels: list[str] = []
        self._stopped = False
        self._final: list[bool] = []
        self._hover = -1
        self._aspect = 1.0  # width / height of the pictures being made
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Click a variation to keep it; double-click to use its seed")

    def start(self, seeds: list[int], labels: list[str] | None = None, aspect: float = 1.0) -> None:
        """One tile per seed, captioned "seed N" unless `labels` says more (a variation seed), shaped
        like the pictures (`aspect` = width / height), so a preview is never stretched."""
        self._seeds = list(seeds)
        self._aspect = aspect
        self._labels = list(labels) if labels is not None else [f"seed {s}" for s in seeds]
        self._images = [None] * len(seeds)
        self._final = [False] * len(seeds)
        self._stopped = False
        self.update()

    def stop(self) -> None:
        """The run was cancelled: the unfinished tiles keep their last preview and say so."""
        self._stopped = True
        self.update()

    def label(self, k: int) -> str:
        """Tile k's caption: its seed, then "…" while it forms or "cancelled" if it never will."""
        if self._final[k]:
            return self._labels[k]
        return self._labels[k] + (" · cancelled" if self._stopped else " …")

    def count(self) -> int:
        return len(self._seeds)

    def set_previews(self, images: list[QImage]) -> None:
        for k, img in enumerate(images[: len(self._images)]):
            if not img.isNull() and not self._final[k]:
                self._images[k] = img
        self.update()  # coalesced by Qt: many calls before a paint cost one paint

    def set_final(self, index: int, image: QImage) -> None:
        if 0 <= index < len(self._images):
            self._images[index] = image
            self._final[index] = True
            self.update()

    def image(self, index: int) -> QImage | None:
        return self._images[index] if 0 <= index < len(self._images) else None

    def _grid(self) -> tuple[int, int]:
        cols = max(1, math.ceil(math.sqrt(len(self._seeds))))
        rows = max(1, math.ceil(len(self._seeds) / cols))
        return cols, rows

    def tile_rect(self, index: int) -> QRectF:
        """The largest tiles of the pictures' shape that fit, inside the canvas' own fit margin: a
        single preview lands exactly where the canvas then shows the finished picture."""
        cols, rows = self._grid()
        room_w = (self.width() - 2 * FIT_MARGIN - GAP * (cols - 1)) / cols
        room_h = (self.height() - 2 * FIT_MARGIN - GAP * (rows - 1)) / rows
        h = max(1.0, min(room_w / self._aspect, room_h))
        w = h * self._aspect
        x0 = (self.width() - (w * cols + GAP * (cols - 1))) / 2
        y0 = (self.height() - (h * rows + GAP * (rows - 1))) / 2
        r, c = divmod(index, cols)
        return QRectF(x0 + c * (w + GAP), y0 + r * (h + GAP), w, h)

    def index_at(self, x: float, y: float) -> int:
        for k in range(len(self._seeds)):
            if self.tile_rect(k).contains(x, y):
                return k
        return -1

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(512, 512)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        pal = self.palette()
        p.fillRect(self.rect(), pal.window())
        for k in range(len(self._seeds)):
            rect = self.tile_rect(k)
            img = self._images[k]
            if img is None:
                p.fillRect(rect, pal.base())
            else:
                p.drawImage(rect, img)
            pen = QPen(pal.highlight().color() if k == self._hover else pal.mid().color(), 2 if k == self._hover else 1)
            p.setPen(pen)
            p.drawRect(rect)
            label = self.label(k)
            box = p.fontMetrics().boundingRect(label).adjusted(-6, -3, 6, 3)
            box.moveBottomLeft(rect.bottomLeft().toPoint() + QPoint(6, -6))
            p.fillRect(box, QColor(0, 0, 0, 150))  # legible on any picture
            p.setPen(pal.brightText().color())
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, label)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        hover = self.index_at(event.position().x(), event.position().y())
        if hover != self._hover:
            self._hover = hover
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        k = self.index_at(event.position().x(), event.position().y())
        if k >= 0 and event.button() == Qt.MouseButton.LeftButton and self._final[k]:
            self.chosen.emit(k)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        k = self.index_at(event.position().x(), event.position().y())
        if k >= 0:
            self.seed_chosen.emit(self._seeds[k])
