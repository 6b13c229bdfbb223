"""Pixel operations behind inpainting and outpainting: masks, crop boxes, paste-back, canvas extension.

Pure functions on PIL images and numpy arrays: no Qt, no torch. Studio's mask convention is the one
diffusers uses: a single-channel 8-bit image where white (255) means "repaint" and black (0) means
"keep"; values in between blend.

Why not diffusers' helpers: `VaeImageProcessor.get_crop_region` scans the mask column by column in
Python, can leave the image when the aspect expansion is larger than the image, and knows nothing of
size multiples; `apply_overlay` round-trips through premultiplied RGBa, which rounds soft-mask pixels
and resizes with its own crop mode. `Image.composite` does the same blend exactly, so these are
written here on numpy and Pillow's C filters instead.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

Box = tuple[int, int, int, int]
FillMode = Literal["edge", "blur", "noise", "none"]
FILL_MODES: tuple[str, ...] = ("edge", "blur", "noise", "none")

# A mask pixel at or below this level counts as black: JPEG-saved masks carry noise of a few levels.
EMPTY_LEVEL = 4
# Largest per-pixel channel spread still taken as grey (JPEG chroma noise on a black/white mask).
GREY_TOLERANCE = 12


class MaskError(ValueError):
    """A mask that cannot be used, with a message meant for the person who made it."""


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# ----------------------------------------------------------------------------------------- validate


def validate_mask(mask: Image.Image, image_size: tuple[int, int]) -> Image.Image:
    """Check a user mask against the image it belongs to and return it as mode "L" (white = repaint).

    Accepted: "L", "1", grey "RGB"/"P", 16-bit/float greys, and masks with alpha ("LA", "RGBA", "PA"):
    - alpha fully opaque: the grey values are the mask (a black and white image saved as RGBA);
    - grey uniform, alpha varying: the alpha is the mask (strokes painted on a transparent layer,
      whatever the brush colour);
    - both varying: the grey composited over black, so transparent pixels are kept.
    Rejected with a MaskError: a size that differs from the image, a colour (non-grey) mask, and an
    empty mask (nothing to repaint). An all-white mask is valid and means "repaint everything".
    """
    if mask.size != tuple(image_size):
        raise MaskError(f"mask is {_size(mask.size)} but the image is {_size(image_size)}")
    grey = to_grey(mask)
    if int(grey.max()) <= EMPTY_LEVEL:
        raise MaskError("mask is empty (all black): nothing to repaint; paint white where the image should change")
    return Image.fromarray(grey, "L")


def to_grey(mask: Image.Image) -> np.ndarray:
    """The mask as a uint8 (H, W) array, applying the alpha rules of validate_mask (no size or
    emptiness checks; a colour mask still raises MaskError)."""
    if mask.mode == "1":
        return np.asarray(mask.convert("L"))
    if mask.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(mask, dtype=np.float64)
        scale = 255.0 / 65535.0 if values.max(initial=0) > 255 else 1.0
        return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    if mask.mode == "P":
        mask = mask.convert("RGBA")
    elif mask.mode not in ("L", "LA", "RGB", "RGBA"):
        mask = mask.convert("RGBA")
    arr = np.asarray(mask)
    if arr.ndim == 2:
        return arr.copy()
    has_alpha = mask.mode in ("LA", "RGBA")
    colour = arr[..., :-1] if has_alpha else arr
    grey = _grey_channel(colour)
    if not has_alpha:
        return grey
    alpha = arr[..., -1]
    if alpha.min() == 255:
        return grey
    if grey.min() == grey.max():
        return alpha.copy()
    return ((grey.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def _grey_channel(colour: np.ndarray) -> np.ndarray:
    """The single grey channel of (H, W, C) pixels, or a MaskError naming a coloured pixel."""
    if colour.shape[-1] == 1:
        return colour[..., 0].copy()
    spread = colour.max(axis=-1).astype(np.int16) - colour.min(axis=-1)
    if int(spread.max()) > GREY_TOLERANCE:
        y, x = np.unravel_index(int(np.argmax(spread)), spread.shape)
        rgb = tuple(int(v) for v in colour[y, x])
        raise MaskError(
            f"mask has colour (pixel {x},{y} is RGB{rgb}); a mask must be greyscale: white = repaint, black = keep"
        )
    return np.rint(colour.mean(axis=-1)).astype(np.uint8)


# ------------------------------------------------------------------------------------- grow/feather


def grow_and_feather(mask: Image.Image, grow: int, feather: int) -> Image.Image:
    """Dilate the mask by `grow` pixels (a round brush; negative shrinks), then soften its edge.

    The feather is a Gaussian blur with sigma = feather / 2, so the soft edge spans about `feather`
    pixels on each side of the grown edge. Shrinking treats the outside of the image as white, so a
    mask that touches the border (an outpaint) stays on the border. Work is done on the mask's
    bounding box only, which keeps a small mask on a large image cheap.
    """
    grey = to_grey(mask) if mask.mode != "L" else np.asarray(mask)
    box = nonzero_box(grey)
    if box is None or (grow == 0 and feather <= 0):
        return Image.fromarray(grey.copy(), "L")
    sigma = max(feather, 0) / 2.0
    margin = max(grow, 0) + (math.ceil(3 * sigma) + 2 if feather > 0 else 0) + 1
    x0, y0, x1, y1 = _expand(box, margin, grey.shape[1], grey.shape[0])
    region = grey[y0:y1, x0:x1]
    if grow > 0:
        region = _dilate_disc(region, grow)
    elif grow < 0:
        region = 255 - _dilate_disc(255 - region, -grow)
    out = grey.copy()
    soft = Image.fromarray(np.ascontiguousarray(region), "L")
    if feather > 0:
        soft = soft.filter(ImageFilter.GaussianBlur(sigma))
    out[y0:y1, x0:x1] = np.asarray(soft)
    return Image.fromarray(out, "L")


def _dilate_disc(a: np.ndarray, r: int) -> np.ndarray:
    """Grey dilation of `a` by a disc of radius r (pixels with dx*dx + dy*dy <= r*r); outside is 0.

    A disc is a stack of horizontal chords, so dilate rows by each chord half-width (built up one
    pixel at a time), then take the max over the rows of the disc: O(r) array passes, not O(r*r).
    """
    h, w = a.shape
    padded = np.zeros((h + 2 * r, w + 2 * r), np.uint8)
    padded[r : r + h, r : r + w] = a
    half = {dy: math.isqrt(r * r - dy * dy) for dy in range(-r, r + 1)}
    rows = padded.copy()
    out = np.zeros_like(a)
    for k in range(r + 1):
        if k > 0:
            np.maximum(rows[:, :-k], padded[:, k:], out=rows[:, :-k])
            np.maximum(rows[:, k:], padded[:, :-k], out=rows[:, k:])
        for dy in (d for d, hw in half.items() if hw == k):
            np.maximum(out, rows[r + dy : r + dy + h, r : r + w], out=out)
    return out


def nonzero_box(grey: np.ndarray) -> Box | None:
    """(x0, y0, x1, y1) around the non-zero pixels, or None for an all-black array."""
    cols = np.flatnonzero(grey.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(grey.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _expand(box: Box, margin: int, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return max(0, x0 - margin), max(0, y0 - margin), min(width, x1 + margin), min(height, y1 + margin)


# ----------------------------------------------------------------------------------------- crop box


def crop_box(mask: Image.Image, padding: int, target_aspect: float | None = None, multiple: int = 8) -> Box:
    """The region to repaint for an "only masked" inpaint, as a PIL box (x0, y0, x1, y1).

    The mask's bounding box grown by `padding`, widened or heightened around its centre to
    `target_aspect` (width / height) when given, each side rounded up to `multiple` where the image
    is large enough, then shifted (never cut) to lie inside the image. The box always contains every
    non-zero mask pixel; when the image is too small for the aspect or the multiple, that side is
    the whole image side.
    """
    if padding < 0:
        raise ValueError(f"crop padding must be >= 0 (got {padding})")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1 (got {multiple})")
    if target_aspect is not None and not target_aspect > 0:
        raise ValueError(f"target aspect must be > 0 (got {target_aspect})")
    grey = to_grey(mask) if mask.mode != "L" else np.asarray(mask)
    box = nonzero_box(grey)
    if box is None:
        raise MaskError("mask is empty (all black): nothing to repaint; paint white where the image should change")
    width, height = mask.size
    x0, y0, x1, y1 = box[0] - padding, box[1] - padding, box[2] + padding, box[3] + padding
    w, h = float(x1 - x0), float(y1 - y0)
    if target_aspect is not None:
        w, h = max(w, h * target_aspect), max(h, w / target_aspect)
    bw = _snap_side(math.ceil(w - 1e-6), multiple, width)
    bh = _snap_side(math.ceil(h - 1e-6), multiple, height)
    left = _place(box[0], box[2], bw, width)
    top = _place(box[1], box[3], bh, height)
    return left, top, left + bw, top + bh


def _snap_side(side: int, multiple: int, limit: int) -> int:
    """`side` rounded up to a multiple, or the whole image side when it does not fit."""
    snapped = -(-side // multiple) * multiple
    return snapped if snapped <= limit else limit


def _place(lo: int, hi: int, side: int, limit: int) -> int:
    """Start of a span of length `side` centred on [lo, hi), shifted to stay in [0, limit)."""
    start = (lo + hi - side) // 2
    return min(max(start, 0), limit - side)


# --------------------------------------------------------------------------------------- paste back


def paste_back(
    original: Image.Image, generated: Image.Image, mask: Image.Image, box: Box | None = None
) -> Image.Image:
    """Blend a generated image into `original` through the (feathered) mask.

    `generated` is the repainted crop of `box` (resized to the box if the pipeline worked at another
    size) or, without a box, the whole image. `mask` covers the whole original, or just the box.
    Where the mask is 0, and everywhere outside the box, the result is bit-identical to `original`.
    """
    base = original if original.mode in ("RGB", "RGBA") else original.convert("RGB")
    box = box or (0, 0, base.width, base.height)
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= base.width and 0 <= y0 < y1 <= base.height):
        raise ValueError(f"paste box {box} is not inside the {_size(base.size)} image")
    size = (x1 - x0, y1 - y0)
    alpha = mask if mask.mode == "L" else Image.fromarray(to_grey(mask), "L")
    if alpha.size == base.size:
        alpha = alpha.crop(box)
    elif alpha.size != size:
        raise MaskError(f"mask is {_size(alpha.size)} but the image is {_size(base.size)}")
    patch = generated.convert(base.mode)
    if patch.size != size:
        patch = patch.resize(size, Image.Resampling.LANCZOS)
    out = base.copy()
    out.paste(Image.composite(patch, base.crop(box), alpha), (x0, y0))
    return out


# ----------------------------------------------------------------------------------------- outpaint


def extend_canvas(
    image: Image.Image,
    left: int,
    top: int,
    right: int,
    bottom: int,
    overlap: int = 8,
    fill: str = "edge",
    multiple: int = 8,
    seed: int = 0,
    mask: Image.Image | None = None,
) -> tuple[Image.Image, Image.Image]:
    """A larger canvas for an outpaint, and the mask that repaints its new area.

    Each side grows by its extent; the new width and height are then rounded up to `multiple` by
    adding to the extended sides only (an axis with no extended side keeps its size). The original
    is pasted unchanged. The mask is white over the new area and ramps down to 0 across `overlap`
    pixels inside the original along each extended side, so the model blends into the old pixels
    instead of meeting them at a hard line. The new area is prefilled (`fill`): "edge" stretches the
    border pixels outwards and blurs them, "blur" uses the mean colour of a band along each side,
    "noise" the stretched edge plus seeded noise, "none" mid grey. Alpha is dropped (RGB out).
    A `mask` already on `image` carries over into its place (the larger value wins), so extending a
    second side, or extending after painting, keeps what the first would repaint.
    """
    extents = {"left": left, "top": top, "right": right, "bottom": bottom}
    for name, value in extents.items():
        if value < 0:
            raise ValueError(f"outpaint extents must be >= 0 (got {name}={value})")
    if not any(extents.values()):
        raise ValueError("nothing to extend: all four extents are 0")
    if fill not in FILL_MODES:
        raise ValueError(f"unknown fill {fill!r}; choose one of {', '.join(FILL_MODES)}")
    if overlap < 0 or multiple < 1:
        raise ValueError(f"overlap must be >= 0 and multiple >= 1 (got {overlap}, {multiple})")
    src = np.asarray(image.convert("RGB"))
    h, w = src.shape[:2]
    left, top, right, bottom = snap_extents(image.size, (left, top, right, bottom), multiple)
    canvas = _prefill(src, (left, top, right, bottom), fill, seed)
    canvas[top : top + h, left : left + w] = src
    out = np.full(canvas.shape[:2], 255, np.uint8)
    inner = _overlap_ramp(w, h, (left, top, right, bottom), overlap)
    if mask is not None:
        if mask.size != image.size:
            raise MaskError(f"mask is {_size(mask.size)} but the image is {_size(image.size)}")
        inner = np.maximum(inner, to_grey(mask))
    out[top : top + h, left : left + w] = inner
    return Image.fromarray(canvas, "RGB"), Image.fromarray(out, "L")


def snap_extents(size: tuple[int, int], extents: Box, multiple: int = 8) -> Box:
    """The (left, top, right, bottom) extents extend_canvas really uses for an image of `size`."""
    left, top, right, bottom = extents
    left, right = _snap_axis(size[0], left, right, multiple)
    top, bottom = _snap_axis(size[1], top, bottom, multiple)
    return left, top, right, bottom


def _snap_axis(size: int, before: int, after: int, multiple: int) -> tuple[int, int]:
    """Add the pixels that round `size + before + after` up to `multiple`, split over extended sides."""
    extra = -(size + before + after) % multiple
    if before and after:
        return before + extra // 2, after + extra - extra // 2
    if before:
        return before + extra, after
    if after:
        return before, after + extra
    return before, after


def _overlap_ramp(w: int, h: int, extents: Box, overlap: int) -> np.ndarray:
    """Mask values inside the original: a linear ramp from near 255 at an extended border to 0."""
    left, top, right, bottom = extents

    def ramp(n: int, before: bool, after: bool) -> np.ndarray:
        o = min(overlap, n)
        steps = 255.0 * (1.0 - np.arange(1, o + 1) / (o + 1))
        line = np.zeros(n)
        if before:
            line[:o] = np.maximum(line[:o], steps)
        if after:
            line[n - o :] = np.maximum(line[n - o :], steps[::-1])
        return line

    cols = ramp(w, left > 0, right > 0)
    rows = ramp(h, top > 0, bottom > 0)
    return np.rint(np.maximum(cols[None, :], rows[:, None])).astype(np.uint8)


def _prefill(src: np.ndarray, extents: Box, fill: str, seed: int) -> np.ndarray:
    """The full new canvas with the new area prefilled (the original region is overwritten later)."""
    left, top, right, bottom = extents
    pad = ((top, bottom), (left, right), (0, 0))
    if fill == "none":
        return np.full((src.shape[0] + top + bottom, src.shape[1] + left + right, 3), 128, np.uint8)
    if fill == "blur":
        canvas = _side_means(src, extents)
        radius = max(8.0, max(extents) / 3)
    else:
        canvas = np.pad(src, pad, mode="edge")
        # Stretched edge pixels make streaks; a blur proportional to the extension softens them.
        radius = max(2.0, max(extents) / 8) if fill == "edge" else 2.0
    canvas = _blur(canvas, radius)
    if fill == "noise":
        rng = np.random.default_rng(seed)
        noise = rng.normal(0.0, 32.0, canvas.shape)
        canvas = np.clip(canvas + noise, 0, 255).astype(np.uint8)
    return canvas


def _side_means(src: np.ndarray, extents: Box) -> np.ndarray:
    """Each new side filled with the mean colour of a band of the original along that side."""
    left, top, right, bottom = extents
    h, w = src.shape[:2]
    band = max(1, min(16, w, h))
    canvas = np.pad(src, ((top, bottom), (left, right), (0, 0)), mode="edge").astype(np.float32)
    sides = [
        (left, (slice(None), slice(0, left)), src[:, :band]),
        (right, (slice(None), slice(left + w, None)), src[:, w - band :]),
        (top, (slice(0, top), slice(None)), src[:band]),
        (bottom, (slice(top + h, None), slice(None)), src[h - band :]),
    ]
    for extent, region, strip in sides:
        if extent:
            canvas[region] = strip.reshape(-1, 3).mean(axis=0)
    return canvas.astype(np.uint8)


def _blur(arr: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(arr, "RGB").filter(ImageFilter.GaussianBlur(radius))).copy()


# ------------------------------------------------------------------------------------- seam metric


def seam_score(image: Image.Image, seam: Box | Image.Image, band: int = 8) -> dict[str, float]:
    """How visible the border of a repainted region is: 1.0 means no more visible than the texture.

    `seam` is either a box (for an outpaint: where the original sits in the new canvas; for an
    "only masked" inpaint: the crop box) or a mask whose >= 128 region's border is the seam. Box
    edges on the image border are not seams. The seam step is the mean absolute colour difference
    (0..255, mean of RGB) between the two pixels on either side of the seam; the baseline is the
    same step between neighbouring pixels, in the same direction, within `band` pixels of the seam.
    Returns seam_step, baseline_step, ratio = (seam_step + 0.5) / (baseline_step + 0.5) (half a grey
    level added to both so a flat image scores 1.0, not 0/0) and seam_pixels (pairs across the seam).
    """
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = arr.shape[:2]
    inside = _seam_region(seam, w, h)
    cross_h = inside[:, 1:] != inside[:, :-1]
    cross_v = inside[1:, :] != inside[:-1, :]
    n_h, n_v = int(cross_h.sum()), int(cross_v.sum())
    if n_h + n_v == 0:
        raise ValueError("no seam: the region's border lies entirely on the image border")
    step_h = np.abs(arr[:, 1:] - arr[:, :-1]).mean(axis=-1)
    step_v = np.abs(arr[1:, :] - arr[:-1, :]).mean(axis=-1)
    edge = np.zeros((h, w), bool)
    edge[:, 1:] |= cross_h
    edge[:, :-1] |= cross_h
    edge[1:, :] |= cross_v
    edge[:-1, :] |= cross_v
    near = _box_any(edge, band)
    seam_step = (step_h[cross_h].sum() + step_v[cross_v].sum()) / (n_h + n_v)
    base_h = _masked_mean(step_h, near[:, 1:] & near[:, :-1] & ~cross_h)
    base_v = _masked_mean(step_v, near[1:, :] & near[:-1, :] & ~cross_v)
    baseline = (base_h * n_h + base_v * n_v) / (n_h + n_v)
    return {
        "seam_step": float(seam_step),
        "baseline_step": float(baseline),
        "ratio": float((seam_step + 0.5) / (baseline + 0.5)),
        "seam_pixels": float(n_h + n_v),
    }


def _seam_region(seam: Box | Image.Image, w: int, h: int) -> np.ndarray:
    if isinstance(seam, Image.Image):
        if seam.size != (w, h):
            raise MaskError(f"mask is {_size(seam.size)} but the image is {_size((w, h))}")
        return to_grey(seam) >= 128
    x0, y0, x1, y1 = (int(v) for v in seam)
    inside = np.zeros((h, w), bool)
    inside[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return inside


def _box_any(flags: np.ndarray, radius: int) -> np.ndarray:
    """True where any flag lies within a (2r+1)-square window: a box dilation via summed areas."""
    if radius <= 0:
        return flags.copy()
    h, w = flags.shape
    sat = np.zeros((h + 1, w + 1), np.int64)
    sat[1:, 1:] = flags.cumsum(0).cumsum(1)
    ys, xs = np.arange(h), np.arange(w)
    y0, y1 = np.clip(ys - radius, 0, h), np.clip(ys + radius + 1, 0, h)
    x0, x1 = np.clip(xs - radius, 0, w), np.clip(xs + radius + 1, 0, w)
    total = sat[y1][:, x1] - sat[y0][:, x1] - sat[y1][:, x0] + sat[y0][:, x0]
    return total > 0


def _masked_mean(values: np.ndarray, where: np.ndarray) -> float:
    count = int(where.sum())
    return float(values[where].sum() / count) if count else 0.0
