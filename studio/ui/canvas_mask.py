"""The canvas's inpaint mask: an 8-bit grey QImage painted with a round soft brush, and its overlay.

White (255) means repaint. Strokes are painted dab by dab with QPainter in the segment's rectangle
only; dabs combine with "lighten" (max) for the brush and "darken" (min) for the eraser, so a soft
stroke never builds up past its own profile. Before a tile is first touched by a stroke its pixels
are saved, so an undo step stores only the tiles the stroke crossed (zlib-compressed), not the mask.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QRadialGradient

from studio.engine import canvas_ops
from studio.ui.canvas_images import bgra_view, gray_view, gray_view_const

TILE = 128
# Dab spacing as a fraction of the brush diameter: close enough that max-combined soft dabs leave no
# visible scallops along the stroke edge, far enough that a large brush stays cheap.
SPACING = 0.08
# The grow/feather preview is computed on a copy no larger than this, then drawn scaled up.
PREVIEW_SIDE = 1024


@dataclass(frozen=True)
class Patch:
    """A rectangle of mask pixels, zlib-compressed: masks are mostly runs of 0 and 255."""

    x: int
    y: int
    w: int
    h: int
    data: bytes

    @classmethod
    def take(cls, pixels: np.ndarray, x: int, y: int, w: int, h: int) -> Patch:
        region = np.ascontiguousarray(pixels[y : y + h, x : x + w])
        return cls(x, y, w, h, zlib.compress(region.tobytes(), 1))

    def array(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), np.uint8).reshape(self.h, self.w)

    @property
    def rect(self) -> QRect:
        return QRect(self.x, self.y, self.w, self.h)


@dataclass(frozen=True)
class MaskSnapshot:
    """A whole mask kept small: its size and the patch around its non-zero pixels (None if empty)."""

    width: int
    height: int
    patch: Patch | None

    @property
    def nbytes(self) -> int:
        return len(self.patch.data) if self.patch else 0


@dataclass
class StrokeDelta:
    """What one stroke changed: the tiles it touched, before and after."""

    before: list[Patch] = field(default_factory=list)
    after: list[Patch] = field(default_factory=list)
    bounds: QRect = field(default_factory=QRect)

    @property
    def nbytes(self) -> int:
        return sum(len(p.data) for p in self.before) + sum(len(p.data) for p in self.after)


@dataclass
class _Stroke:
    erase: bool
    radius: float
    hardness: float
    last: QPointF
    carry: float = 0.0
    saved: dict[tuple[int, int], Patch] = field(default_factory=dict)
    bounds: QRect = field(default_factory=QRect)


class MaskLayer:
    """The mask pixels, the tinted overlay that shows them, and the stroke machinery."""

    def __init__(self, width: int = 0, height: int = 0) -> None:
        # Violet: rare in photographs and in the built-in world, so the mask reads on most images.
        self._tint = QColor(190, 70, 255)
        self._opacity = 0.5
        self._stroke: _Stroke | None = None
        self.reset(width, height)

    def reset(self, width: int, height: int) -> None:
        """An empty mask of a new size (the layer object stays, so undo commands can keep it)."""
        self.image = QImage(width, height, QImage.Format.Format_Grayscale8)
        self.image.fill(0)
        self.overlay = QImage(width, height, QImage.Format.Format_ARGB32_Premultiplied)
        self.overlay.fill(0)
        self._stroke = None
        self._empty: bool | None = True

    @property
    def width(self) -> int:
        return self.image.width()

    @property
    def height(self) -> int:
        return self.image.height()

    @property
    def stroking(self) -> bool:
        return self._stroke is not None

    # ---------------------------------------------------------------------------------- whole mask

    def is_empty(self) -> bool:
        if self._empty is None:
            self._empty = not bool(gray_view_const(self.image).any())
        return self._empty

    def to_pil(self) -> Image.Image:
        # A copy: PIL shares a contiguous array's memory (a width divisible by 4 has no row padding),
        # and the mask's memory is painted on, and freed when a new picture comes, while a queued
        # request still holds its mask.
        return Image.fromarray(gray_view_const(self.image).copy(), "L")

    def set_array(self, values: np.ndarray) -> None:
        gray_view(self.image)[:] = values
        self._changed(QRect(0, 0, self.width, self.height))

    def snapshot(self) -> MaskSnapshot:
        return snapshot_array(gray_view_const(self.image))

    def restore(self, snap: MaskSnapshot) -> None:
        """Set the mask to a snapshot of the same size."""
        pixels = gray_view(self.image)
        pixels[:] = 0
        if snap.patch is not None:
            p = snap.patch
            pixels[p.y : p.y + p.h, p.x : p.x + p.w] = p.array()
        self._changed(QRect(0, 0, self.width, self.height))

    def put(self, patches: list[Patch]) -> QRect:
        """Write patches back (undo/redo of a stroke); returns the rectangle that changed."""
        pixels = gray_view(self.image)
        dirty = QRect()
        for p in patches:
            pixels[p.y : p.y + p.h, p.x : p.x + p.w] = p.array()
            # Per patch, not the union: a diagonal stroke's bounding box is mostly untouched.
            self._changed(p.rect)
            dirty = dirty.united(p.rect)
        return dirty

    # -------------------------------------------------------------------------------------- overlay

    def set_tint(self, color: QColor, opacity: float) -> None:
        self._tint = QColor(color)
        self._opacity = min(max(opacity, 0.0), 1.0)
        self.refresh_overlay(QRect(0, 0, self.width, self.height))

    def refresh_overlay(self, rect: QRect) -> None:
        """Recompute the premultiplied tint overlay inside `rect` from the mask values."""
        r = rect.intersected(QRect(0, 0, self.width, self.height))
        if r.isEmpty():
            return
        ys, xs = slice(r.top(), r.bottom() + 1), slice(r.left(), r.right() + 1)
        tint_overlay(gray_view_const(self.image)[ys, xs], bgra_view(self.overlay)[ys, xs], self._tint, self._opacity)

    def effective_overlay(self, grow: int, feather: int) -> QImage:
        """The grow/feather result as a tinted overlay, computed on a copy at most PREVIEW_SIDE wide."""
        scale = max(1, math.ceil(max(self.width, self.height) / PREVIEW_SIDE))
        small = self.to_pil()
        if scale > 1:
            small = small.reduce(scale)
        eff = canvas_ops.grow_and_feather(small, round(grow / scale), round(feather / scale))
        values = np.asarray(eff)
        out = QImage(values.shape[1], values.shape[0], QImage.Format.Format_ARGB32_Premultiplied)
        tint_overlay(values, bgra_view(out), self._tint, self._opacity)
        return out

    def _changed(self, rect: QRect) -> None:
        self._empty = None
        self.refresh_overlay(rect)

    # -------------------------------------------------------------------------------------- strokes

    def begin_stroke(self, pos: QPointF, size: float, hardness: float, erase: bool) -> QRect:
        """Start a stroke with one dab at `pos` (image coordinates); returns the dirty rectangle."""
        self._stroke = _Stroke(erase, max(size, 1.0) / 2.0, min(max(hardness, 0.0), 1.0), QPointF(pos))
        return self._paint_dabs([QPointF(pos)])

    def stroke_to(self, pos: QPointF) -> QRect:
        """Continue the stroke to `pos` with evenly spaced dabs; returns the dirty rectangle."""
        s = self._stroke
        if s is None:
            return QRect()
        step = max(1.0, 2 * s.radius * SPACING)
        dx, dy = pos.x() - s.last.x(), pos.y() - s.last.y()
        length = math.hypot(dx, dy)
        dabs: list[QPointF] = []
        t = step - s.carry
        while t <= length:
            dabs.append(QPointF(s.last.x() + dx * t / length, s.last.y() + dy * t / length))
            t += step
        s.carry = length - (t - step) if dabs else s.carry + length
        s.last = QPointF(pos)
        return self._paint_dabs(dabs)

    def end_stroke(self) -> StrokeDelta | None:
        """Finish the stroke; the tiles it changed before and after, or None if nothing changed."""
        s, self._stroke = self._stroke, None
        if s is None or not s.saved:
            return None
        pixels = gray_view_const(self.image)
        delta = StrokeDelta(bounds=s.bounds)
        for before in s.saved.values():
            after = Patch.take(pixels, before.x, before.y, before.w, before.h)
            if after.data != before.data:
                delta.before.append(before)
                delta.after.append(after)
        return delta if delta.before else None

    def _paint_dabs(self, centres: list[QPointF]) -> QRect:
        s = self._stroke
        if s is None or not centres:
            return QRect()
        r = s.radius
        dirty = QRect()
        for c in centres:
            dirty = dirty.united(QRectF(c.x() - r, c.y() - r, 2 * r, 2 * r).toAlignedRect().adjusted(-1, -1, 1, 1))
        dirty = dirty.intersected(QRect(0, 0, self.width, self.height))
        if dirty.isEmpty():
            return dirty
        self._save_tiles(s, dirty)
        painter = QPainter(self.image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        modes = QPainter.CompositionMode
        painter.setCompositionMode(modes.CompositionMode_Darken if s.erase else modes.CompositionMode_Lighten)
        for c in centres:
            painter.setBrush(_dab_brush(c, r, s.hardness, s.erase))
            painter.drawEllipse(c, r, r)
        painter.end()
        s.bounds = s.bounds.united(dirty)
        self._changed(dirty)
        return dirty

    def _save_tiles(self, s: _Stroke, rect: QRect) -> None:
        """Keep the untouched pixels of every tile this rectangle enters for the first time."""
        pixels: np.ndarray | None = None
        for ty in range(rect.top() // TILE, rect.bottom() // TILE + 1):
            for tx in range(rect.left() // TILE, rect.right() // TILE + 1):
                if (tx, ty) in s.saved:
                    continue
                pixels = gray_view_const(self.image) if pixels is None else pixels
                x, y = tx * TILE, ty * TILE
                w, h = min(TILE, self.width - x), min(TILE, self.height - y)
                s.saved[(tx, ty)] = Patch.take(pixels, x, y, w, h)


def snapshot_array(values: np.ndarray) -> MaskSnapshot:
    """A compact snapshot of mask values: only the box around the non-zero pixels is kept."""
    h, w = values.shape
    box = canvas_ops.nonzero_box(values)
    if box is None:
        return MaskSnapshot(w, h, None)
    x0, y0, x1, y1 = box
    return MaskSnapshot(w, h, Patch.take(values, x0, y0, x1 - x0, y1 - y0))


def _dab_brush(centre: QPointF, radius: float, hardness: float, erase: bool) -> QBrush:
    """A radial profile: full strength out to `hardness` of the radius, then a linear fall to 0."""
    full, none = (QColor(0, 0, 0), QColor(255, 255, 255)) if erase else (QColor(255, 255, 255), QColor(0, 0, 0))
    gradient = QRadialGradient(centre, radius)
    gradient.setColorAt(0.0, full)
    gradient.setColorAt(min(hardness, 0.999), full)
    gradient.setColorAt(1.0, none)
    return QBrush(gradient)


def tint_overlay(values: np.ndarray, out_bgra: np.ndarray, tint: QColor, opacity: float) -> None:
    """Write premultiplied tint pixels whose alpha is mask value x opacity into a BGRA view."""
    alpha = values.astype(np.uint32) * round(opacity * 255) // 255
    out_bgra[..., 3] = alpha
    out_bgra[..., 2] = alpha * tint.red() // 255
    out_bgra[..., 1] = alpha * tint.green() // 255
    out_bgra[..., 0] = alpha * tint.blue() // 255
