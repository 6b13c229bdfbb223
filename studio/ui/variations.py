"""A grid of N live previews (seed variations): click a tile to pick it, double-click to keep it.

A pick only selects (the window shows the tile's seed and its gallery image); keeping puts the image on
the canvas. The grid gives way to the canvas only on the release that ends a double-click: that release
is still the grid's (it holds the mouse since the press), so no part of a click on a tile ever reaches
the canvas, where it would paint on the mask.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QPoint, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.ui.canvas_view import FIT_MARGIN

GAP = 8.0  # between tiles


class VariationGrid(QWidget):
    """Tiles laid out in a near-square grid; each shows its latest preview, then its final image."""

    picked = Signal(int)  # a click: tile k is the one in view (its seed, its gallery image)
    chosen = Signal(int)  # a double-click: keep tile k's image (canvas) and its seed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._images: list[QImage | None] = []
        self._seeds: list[int] = []
        self._labels: list[str] = []
        self._stopped = False
        self._final: list[bool] = []
        self._hover = -1
        self._picked = -1
        self._keep_on_release = -1  # the tile a double-click landed on, kept when its button comes up
        self._aspect = 1.0  # width / height of the pictures being made
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Click a variation to pick its seed; double-click to keep it on the canvas")

    def start(self, seeds: list[int], labels: list[str] | None = None, aspect: float = 1.0) -> None:
        """One tile per seed, captioned "seed N" unless `labels` says more (a variation seed), shaped
        like the pictures (`aspect` = width / height), so a preview is never stretched."""
        self._seeds = list(seeds)
        self._aspect = aspect
        self._labels = list(labels) if labels is not None else [f"seed {s}" for s in seeds]
        self._images = [None] * len(seeds)
        self._final = [False] * len(seeds)
        self._stopped = False
        self._picked = -1
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

    def seed(self, index: int) -> int:
        return self._seeds[index]

    def picked_index(self) -> int:
        """The tile last clicked, -1 for none."""
        return self._picked

    def set_previews(self, images: list[QImage], first: int = 0) -> None:
        """Tiles `first`, `first` + 1, ... show `images` (a run one picture at a time sends one per step)."""
        for k, img in enumerate(images[: max(len(self._images) - first, 0)], start=first):
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
            p.setPen(self._frame_pen(k))
            p.drawRect(rect)
            label = self.label(k)
            box = p.fontMetrics().boundingRect(label).adjusted(-6, -3, 6, 3)
            box.moveBottomLeft(rect.bottomLeft().toPoint() + QPoint(6, -6))
            p.fillRect(box, QColor(0, 0, 0, 150))  # legible on any picture
            p.setPen(pal.brightText().color())
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, label)

    def _frame_pen(self, k: int) -> QPen:
        """The picked tile wears a thick highlight ring, the one under the mouse a thin one."""
        pal = self.palette()
        if k == self._picked:
            return QPen(pal.highlight().color(), 4)
        return QPen(pal.highlight().color(), 2) if k == self._hover else QPen(pal.mid().color(), 1)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._set_hover(self.index_at(event.position().x(), event.position().y()))

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
        self._set_hover(-1)

    def _set_hover(self, hover: int) -> None:
        if hover != self._hover:
            self._hover = hover
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton:
            return
        k = self.index_at(event.position().x(), event.position().y())
        keep, self._keep_on_release = self._keep_on_release, -1
        if k >= 0 and k == keep:
            self.chosen.emit(k)
        elif k >= 0:
            self._picked = k
            self.update()
            self.picked.emit(k)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        k = self.index_at(event.position().x(), event.position().y())
        if event.button() == Qt.MouseButton.LeftButton and k >= 0 and self._final[k]:
            self._keep_on_release = k
