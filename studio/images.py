"""Image files from outside Studio (imports, `--init`/`--mask`, `studio info`, the canvas): opened whole
and safely, with the reason a file cannot be used said in a designer's words. Pure Pillow, no Qt.

Pillow refuses images over twice its `MAX_IMAGE_PIXELS` (about 179 Mpx) at open and only warns between
one and two times it; Studio refuses everything over the limit itself, so a decompression bomb never
reaches the decoder, and the warning (a class name on stderr) is not shown.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from studio.recipe.errors import StudioError

MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # about 89 Mpx: a 100 MP camera's still opens at 2x
READABLE = "PNG, JPEG, WebP, BMP, TIFF, GIF"
_DEEP_GREY = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_OTHER_COLOUR_SPACES = ("CMYK", "YCbCr", "LAB", "HSV")

# Refused below by size, with a message; Pillow's own warning would only repeat it as jargon.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageFileError(StudioError, ValueError):
    """An image file that cannot be used: `reason` says why in a designer's words."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path, self.reason = path, reason


class TooLargeError(ValueError):
    """An image over MAX_PIXELS, refused before its pixels are decoded."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(f"{width}x{height} pixels")
        self.pixels = width * height


def unreadable_reason(exc: BaseException) -> str:
    """Why an image file did not open, in a designer's words rather than the decoder's."""
    if isinstance(exc, ImageFileError):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "the file does not exist (moved or deleted?)"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder, not an image"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, TooLargeError):
        return f"the image is too large to open safely ({exc.pixels / 1e6:.0f} megapixels; the limit is " \
               f"{MAX_PIXELS / 1e6:.0f})"
    if isinstance(exc, Image.DecompressionBombError):
        return f"the image is too large to open safely (over {2 * MAX_PIXELS / 1e6:.0f} megapixels)"
    if isinstance(exc, UnidentifiedImageError):
        return f"not an image file Studio can read ({READABLE})"
    if "truncated" in str(exc).lower():
        return "the file is cut short or corrupt"
    return "the file is corrupt: its pixels cannot be decoded"


def open_image(path: Path | str, upright: bool = True) -> Image.Image:
    """The whole image decoded (a truncated file fails here, not later), turned upright by its EXIF
    orientation, in a mode the rest of Studio reads as it looks (`usable_mode`). Raises ImageFileError."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise ImageFileError(path, "the file is empty (0 bytes)")
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise TooLargeError(image.width, image.height)
            image.load()
            out = ImageOps.exif_transpose(image) if upright else image.copy()
    except ImageFileError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageFileError(path, unreadable_reason(exc)) from None
    return usable_mode(out)


def usable_mode(image: Image.Image) -> Image.Image:
    """Deep greys (16-bit, 32-bit, float) as 8-bit "L", palettes with per-entry alpha as "RGBA", CMYK and
    the other colour spaces as "RGB".

    Pillow's own conversions clip 16-bit values (a 16-bit scan turns white) and warn about palette
    alpha. Grey values above 255 are taken as 16-bit and scaled by 255/65535, as canvas_ops' masks are.
    """
    if image.mode == "P" and isinstance(image.info.get("transparency"), bytes):
        return image.convert("RGBA")
    if image.mode in _OTHER_COLOUR_SPACES:
        return image.convert("RGB")
    if image.mode not in _DEEP_GREY:
        return image
    values = np.asarray(image, dtype=np.float64)
    scale = 255.0 / 65535.0 if values.max(initial=0) > 255 else 1.0
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")
