"""Exact conversions between PIL images, numpy arrays and QImages for the canvas.

The canvas keeps its picture as a 32-bit QImage (RGB32, or non-premultiplied ARGB32 when there is
alpha) because those formats draw fastest and convert back to the same RGB(A) bytes; premultiplied
formats would round transparent pixels on the way back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage

from studio.images import open_image, unreadable_reason  # noqa: F401  (the canvas reports with it)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def gray_view(image: QImage) -> np.ndarray:
    """A writable (H, W) uint8 view of a Grayscale8 QImage's pixels (rows are padded to 4 bytes)."""
    h, w, stride = image.height(), image.width(), image.bytesPerLine()
    return np.frombuffer(image.bits(), np.uint8).reshape(h, stride)[:, :w]


def bgra_view(image: QImage) -> np.ndarray:
    """A writable (H, W, 4) uint8 view of a 32-bit QImage: B, G, R, A in memory on little-endian."""
    h, w, stride = image.height(), image.width(), image.bytesPerLine()
    return np.frombuffer(image.bits(), np.uint8).reshape(h, stride // 4, 4)[:, :w]


def pil_to_qimage(img: Image.Image) -> QImage:
    """A deep-copied 32-bit QImage of `img`: RGB32 for opaque images, ARGB32 when there is alpha."""
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    h, w = rgba.shape[:2]
    out = QImage(w, h, QImage.Format.Format_ARGB32 if has_alpha else QImage.Format.Format_RGB32)
    view = bgra_view(out)
    view[..., 0] = rgba[..., 2]
    view[..., 1] = rgba[..., 1]
    view[..., 2] = rgba[..., 0]
    view[..., 3] = rgba[..., 3] if has_alpha else 255
    return out


def qimage_to_pil(image: QImage) -> Image.Image:
    """The pixels of any QImage as a PIL image: "RGBA" if it has alpha, else "RGB"."""
    has_alpha = image.hasAlphaChannel()
    fmt = QImage.Format.Format_ARGB32 if has_alpha else QImage.Format.Format_RGB32
    src = image if image.format() == fmt else image.convertToFormat(fmt)
    h, w, stride = src.height(), src.width(), src.bytesPerLine()
    bgra = np.frombuffer(src.constBits(), np.uint8).reshape(h, stride // 4, 4)[:, :w]
    rgb = bgra[..., [2, 1, 0, 3] if has_alpha else [2, 1, 0]]
    return Image.fromarray(np.ascontiguousarray(rgb), "RGBA" if has_alpha else "RGB")


def gray_to_pil(image: QImage) -> Image.Image:
    """A Grayscale8 QImage as a PIL "L" image (copied)."""
    return Image.fromarray(np.ascontiguousarray(gray_view_const(image)), "L")


def gray_view_const(image: QImage) -> np.ndarray:
    """A read-only (H, W) view of a Grayscale8 QImage, without detaching shared data."""
    h, w, stride = image.height(), image.width(), image.bytesPerLine()
    return np.frombuffer(image.constBits(), np.uint8).reshape(h, stride)[:, :w]


def pil_to_gray(img: Image.Image) -> QImage:
    """A PIL "L" image as a new Grayscale8 QImage."""
    arr = np.asarray(img.convert("L"))
    out = QImage(arr.shape[1], arr.shape[0], QImage.Format.Format_Grayscale8)
    gray_view(out)[:] = arr
    return out


def as_qimage(img: Image.Image | QImage) -> QImage:
    """The canvas's 32-bit form of a PIL image or any QImage."""
    if isinstance(img, QImage):
        fmt = QImage.Format.Format_ARGB32 if img.hasAlphaChannel() else QImage.Format.Format_RGB32
        return img.convertToFormat(fmt) if img.format() != fmt else img.copy()
    return pil_to_qimage(img)


def load_image_file(path: str) -> Image.Image:
    """Read an image file upright (EXIF orientation applied); raises ImageFileError if unreadable."""
    return open_image(path)


def local_image_paths(data: QMimeData | None) -> list[str]:
    """Local image files named by a drag's or the clipboard's URLs (remote URLs are not fetched)."""
    if data is None or not data.hasUrls():
        return []
    paths = [u.toLocalFile() for u in data.urls() if u.isLocalFile()]
    return [p for p in paths if Path(p).suffix.lower() in IMAGE_SUFFIXES]
