"""A live generation preview drawn over the part of the image it will replace.

Previews arrive up to ~20 times a second and are small (the latent preview size), so the preview
is composed at its own resolution: for an inpaint the mask's crop is scaled down to the preview and
becomes its alpha, so the designer sees the new pixels only where they will land.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QImage, QPainter

from studio.ui.canvas_images import bgra_view, gray_view_const
from studio.ui.canvas_mask import MaskLayer

Box = tuple[int, int, int, int]


class PreviewLayer:
    """The latest preview image, its box (image coordinates) and its mask-composed form."""

    def __init__(self) -> None:
        self._image: QImage | None = None
        self._box: Box = (0, 0, 0, 0)
        self._composed: QImage | None = None

    @property
    def active(self) -> bool:
        return self._image is not None

    @property
    def box(self) -> Box:
        return self._box

    def set(self, image: QImage, box: Box) -> None:
        self._image = image
        self._box = box
        self._composed = None

    def clear(self) -> None:
        self._image = None
        self._composed = None

    def mask_changed(self) -> None:
        self._composed = None

    def draw(self, p: QPainter, layer: MaskLayer, to_widget: Callable[[QPointF], QPointF], zoom: float) -> None:
        if self._image is None:
            return
        if self._composed is None:
            self._composed = self._compose(layer)
        x0, y0, x1, y1 = self._box
        target = QRectF(to_widget(QPointF(x0, y0)), QRectF(0, 0, (x1 - x0) * zoom, (y1 - y0) * zoom).size())
        p.save()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(target, self._composed)
        p.restore()

    def _compose(self, layer: MaskLayer) -> QImage:
        image = self._image
        assert image is not None
        if layer.is_empty():
            return image
        x0, y0, x1, y1 = self._box
        crop = layer.image.copy(QRect(x0, y0, x1 - x0, y1 - y0))
        alpha = crop.scaled(
            image.size(), Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        out = image.convertToFormat(QImage.Format.Format_ARGB32)
        view = bgra_view(out)
        view[..., 3] = (view[..., 3].astype(np.uint16) * gray_view_const(alpha) // 255).astype(np.uint8)
        return out
