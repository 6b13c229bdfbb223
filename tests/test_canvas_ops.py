"""canvas_ops: masks, grow/feather, crop boxes, paste-back, canvas extension, the seam metric."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from studio.engine import canvas_ops as co
from studio.engine.canvas_ops import MaskError


def gradient_image(w: int = 96, h: int = 64, seed: int = 1) -> Image.Image:
    """A textured RGB test picture: gradients plus seeded noise, so every pixel differs."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)
    arr = np.clip(arr + rng.integers(-20, 21, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def mask_with(w: int, h: int, box: tuple[int, int, int, int], value: int = 255) -> Image.Image:
    arr = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = value
    return Image.fromarray(arr, "L")


# ------------------------------------------------------------------------------------ validate_mask


def test_validate_rejects_wrong_size_with_both_sizes() -> None:
    with pytest.raises(MaskError, match=r"^mask is 64x48 but the image is 64x64$"):
        co.validate_mask(Image.new("L", (64, 48), 255), (64, 64))


def test_validate_rejects_empty_mask() -> None:
    with pytest.raises(MaskError, match="empty.*nothing to repaint"):
        co.validate_mask(Image.new("L", (32, 32), 0), (32, 32))


def test_validate_rejects_colour_mask_naming_a_pixel() -> None:
    img = Image.new("RGB", (16, 16), (0, 0, 0))
    img.putpixel((5, 7), (255, 0, 0))
    with pytest.raises(MaskError, match=r"colour \(pixel 5,7 is RGB\(255, 0, 0\)\).*greyscale"):
        co.validate_mask(img, (16, 16))


def test_validate_accepts_grey_rgb_and_mode_1() -> None:
    rgb = Image.new("RGB", (8, 8), (0, 0, 0))
    rgb.putpixel((2, 3), (200, 200, 200))
    out = co.validate_mask(rgb, (8, 8))
    assert out.mode == "L" and out.getpixel((2, 3)) == 200 and out.getpixel((0, 0)) == 0
    bw = Image.new("1", (8, 8), 0)
    bw.putpixel((1, 1), 1)
    assert co.validate_mask(bw, (8, 8)).getpixel((1, 1)) == 255


def test_validate_uses_alpha_of_a_painted_layer_whatever_the_colour() -> None:
    layer = np.zeros((8, 8, 4), np.uint8)  # black strokes on a transparent layer
    layer[2:4, 2:4, 3] = 255
    out = np.asarray(co.validate_mask(Image.fromarray(layer, "RGBA"), (8, 8)))
    assert out[2, 2] == 255 and out[0, 0] == 0


def test_validate_opaque_rgba_uses_grey_values() -> None:
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 3] = 255
    arr[1, 1, :3] = 255
    out = np.asarray(co.validate_mask(Image.fromarray(arr, "RGBA"), (8, 8)))
    assert out[1, 1] == 255 and out.sum() == 255


def test_validate_all_white_is_valid_and_unchanged() -> None:
    out = co.validate_mask(Image.new("L", (10, 10), 255), (10, 10))
    assert np.all(np.asarray(out) == 255)


# ------------------------------------------------------------------------------------- grow/feather


def test_dot_grows_to_a_disc_of_the_given_radius() -> None:
    dot = mask_with(101, 101, (50, 50, 51, 51))
    grown = np.asarray(co.grow_and_feather(dot, 10, 0))
    ys, xs = np.nonzero(grown)
    dist = np.hypot(xs - 50, ys - 50)
    assert dist.max() == pytest.approx(10.0)
    yy, xx = np.mgrid[0:101, 0:101]
    expected = (xx - 50) ** 2 + (yy - 50) ** 2 <= 100
    assert np.array_equal(grown == 255, expected)
    assert abs(expected.sum() - math.pi * 100) < 0.05 * math.pi * 100


def test_negative_grow_shrinks() -> None:
    square = mask_with(64, 64, (10, 10, 50, 50))
    shrunk = np.asarray(co.grow_and_feather(square, -4, 0))
    assert shrunk[14, 14] == 255 and shrunk[13, 30] == 0 and shrunk[30, 46] == 0 and shrunk[30, 45] == 255


def test_shrink_keeps_a_mask_that_touches_the_image_border() -> None:
    band = mask_with(64, 64, (0, 0, 16, 64))  # an outpaint strip along the left edge
    shrunk = np.asarray(co.grow_and_feather(band, -4, 0))
    assert shrunk[32, 0] == 255 and shrunk[32, 11] == 255 and shrunk[32, 12] == 0


def test_feather_is_a_monotone_soft_edge() -> None:
    square = mask_with(128, 128, (32, 32, 96, 96))
    soft = np.asarray(co.grow_and_feather(square, 0, 12)).astype(int)
    row = soft[64, 64:128]  # from the centre outwards across the right edge at x = 96
    assert np.all(np.diff(row) <= 0)
    assert row[0] == 255 and row[-1] == 0
    assert 100 < soft[64, 96] < 160  # the old edge sits about half way
    assert np.count_nonzero((row > 5) & (row < 250)) >= 8  # a real ramp, not a step


def test_grow_and_feather_zero_is_identity() -> None:
    m = mask_with(20, 20, (3, 4, 9, 12), 180)
    assert np.array_equal(np.asarray(co.grow_and_feather(m, 0, 0)), np.asarray(m))


# ------------------------------------------------------------------------------------------ crop_box


def test_crop_box_pads_and_snaps_to_multiples() -> None:
    m = mask_with(200, 160, (50, 40, 70, 55))
    x0, y0, x1, y1 = co.crop_box(m, padding=10, multiple=8)
    assert x0 <= 40 and y0 <= 30 and x1 >= 80 and y1 >= 65
    assert (x1 - x0) % 8 == 0 and (y1 - y0) % 8 == 0


@pytest.mark.parametrize("corner", [(0, 0), (190, 150), (0, 150), (190, 0)])
def test_crop_box_is_shifted_inside_the_image_not_cut(corner: tuple[int, int]) -> None:
    x, y = corner
    m = mask_with(200, 160, (x, y, x + 10, y + 10))
    box = co.crop_box(m, padding=32, target_aspect=1.0, multiple=8)
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 160
    assert x1 - x0 == y1 - y0 == 80  # 10 + 2*32 = 74, rounded up to 80, square, uncut
    assert x0 <= x and y0 <= y and x1 >= x + 10 and y1 >= y + 10


def test_crop_box_expands_to_the_target_aspect() -> None:
    m = mask_with(512, 512, (200, 250, 300, 262))  # wide and flat
    x0, y0, x1, y1 = co.crop_box(m, padding=0, target_aspect=2.0, multiple=8)
    assert (x1 - x0) / (y1 - y0) == pytest.approx(2.0, rel=0.1)
    assert x0 <= 200 and x1 >= 300 and y0 <= 250 and y1 >= 262


def test_crop_box_uses_whole_side_when_image_is_too_small() -> None:
    m = mask_with(60, 30, (5, 5, 55, 25))
    x0, y0, x1, y1 = co.crop_box(m, padding=16, target_aspect=1.0, multiple=8)
    assert (x0, x1) == (0, 60) and (y0, y1) == (0, 30)


def test_crop_box_of_empty_mask_says_so() -> None:
    with pytest.raises(MaskError, match="empty"):
        co.crop_box(Image.new("L", (32, 32), 0), padding=4)


# ---------------------------------------------------------------------------------------- paste_back


def test_paste_back_leaves_unmasked_pixels_bit_identical() -> None:
    original = gradient_image()
    mask = co.grow_and_feather(mask_with(96, 64, (30, 20, 60, 44)), 2, 6)
    box = co.crop_box(mask, padding=8, multiple=8)
    crop_w, crop_h = box[2] - box[0], box[3] - box[1]
    generated = Image.new("RGB", (crop_w * 2, crop_h * 2), (255, 0, 255))  # pipeline size != box
    out = np.asarray(co.paste_back(original, generated, mask, box)).astype(int)
    orig, m = np.asarray(original).astype(int), np.asarray(mask)
    assert np.array_equal(out[m == 0], orig[m == 0])
    assert np.all(out[m == 255] == [255, 0, 255])
    soft = (m > 0) & (m < 255)
    assert soft.any() and np.all(np.abs(out[soft] - orig[soft]).sum(-1) > 0)


def test_paste_back_full_image_without_box() -> None:
    original = gradient_image(32, 32)
    mask = mask_with(32, 32, (0, 0, 16, 32))
    out = np.asarray(co.paste_back(original, Image.new("RGB", (64, 64), (1, 2, 3)), mask))
    assert np.array_equal(out[:, 16:], np.asarray(original)[:, 16:])
    assert np.all(out[:, :16] == [1, 2, 3])


# ------------------------------------------------------------------------------------- extend_canvas


@pytest.mark.parametrize("fill", co.FILL_MODES)
def test_extend_canvas_sizes_and_preserves_original(fill: str) -> None:
    img = gradient_image(100, 60)
    canvas, mask = co.extend_canvas(img, 30, 0, 21, 10, overlap=8, fill=fill, seed=3)
    assert canvas.size == mask.size == (152, 72)  # 151 -> 152 and 70 -> 72, snapped up to 8
    left, top, right, bottom = co.snap_extents(img.size, (30, 0, 21, 10))
    assert (left, top) == (30, 0) and left + 100 + right == 152 and top + 60 + bottom == 72
    c, m = np.asarray(canvas), np.asarray(mask)
    assert np.array_equal(c[top : top + 60, left : left + 100], np.asarray(img))
    inner = m[top : top + 60 - 8, left + 8 : left + 100 - 8]  # the top side was not extended
    assert np.all(inner == 0)
    assert np.all(m[:, :left] == 255) and np.all(m[top + 60 :, :] == 255)


def test_extend_mask_ramps_across_the_overlap() -> None:
    _, mask = co.extend_canvas(gradient_image(64, 64), 16, 0, 0, 0, overlap=8)
    row = np.asarray(mask)[32].astype(int)
    ramp = row[16:24]
    assert np.all(np.diff(ramp) < 0) and 200 < ramp[0] < 255 and 0 < ramp[-1] < 50
    assert row[24] == 0


def test_extend_carries_an_existing_mask_into_its_place() -> None:
    img = gradient_image(64, 64)
    old = np.zeros((64, 64), np.uint8)
    old[10:20, 30:40] = 200
    _, mask = co.extend_canvas(img, 16, 8, 0, 0, overlap=8, mask=Image.fromarray(old, "L"))
    m = np.asarray(mask)
    assert np.array_equal(m[8 + 10 : 8 + 20, 16 + 30 : 16 + 40], old[10:20, 30:40])
    assert m[8 + 40, 16 + 40] == 0 and np.all(m[:8] == 255)  # elsewhere the usual outpaint mask
    with pytest.raises(co.MaskError, match="mask is"):
        co.extend_canvas(img, 16, 0, 0, 0, mask=Image.new("L", (32, 32)))


def test_extend_noise_depends_on_seed_only() -> None:
    img = gradient_image(32, 32)
    a, _ = co.extend_canvas(img, 0, 0, 16, 0, fill="noise", seed=1)
    b, _ = co.extend_canvas(img, 0, 0, 16, 0, fill="noise", seed=1)
    c, _ = co.extend_canvas(img, 0, 0, 16, 0, fill="noise", seed=2)
    assert a.tobytes() == b.tobytes() != c.tobytes()


def test_extend_edge_fill_continues_the_border_colour() -> None:
    img = Image.new("RGB", (32, 32), (10, 200, 30))
    canvas, _ = co.extend_canvas(img, 0, 0, 32, 0, fill="edge")
    assert np.all(np.abs(np.asarray(canvas)[:, 32:].astype(int) - [10, 200, 30]) <= 1)


@pytest.mark.parametrize(
    ("extents", "message"),
    [((-4, 0, 0, 0), r"must be >= 0 \(got left=-4\)"), ((0, 0, 0, 0), "all four extents are 0")],
)
def test_extend_rejects_bad_extents(extents: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        co.extend_canvas(gradient_image(16, 16), *extents)


def test_extend_rejects_unknown_fill() -> None:
    with pytest.raises(ValueError, match="unknown fill 'paint'"):
        co.extend_canvas(gradient_image(16, 16), 8, 0, 0, 0, fill="paint")


# ---------------------------------------------------------------------------------------- seam_score


def test_seam_score_is_one_for_a_seamless_image_and_high_for_a_hard_seam() -> None:
    img = gradient_image(96, 64)
    box = (24, 0, 72, 64)  # an outpaint that added 24 px left and right
    smooth = co.seam_score(img, box)
    assert smooth["ratio"] == pytest.approx(1.0, abs=0.25)
    pasted = np.asarray(img).copy()
    pasted[:, 24:72] = np.clip(pasted[:, 24:72].astype(int) + 60, 0, 255)
    hard = co.seam_score(Image.fromarray(pasted), box)
    assert hard["ratio"] > 3 and hard["seam_pixels"] == 128  # two vertical seams of 64 rows


def test_seam_score_accepts_a_mask_and_skips_image_border_edges() -> None:
    flat = Image.new("RGB", (32, 32), (50, 50, 50))
    assert co.seam_score(flat, mask_with(32, 32, (8, 8, 24, 24)))["ratio"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no seam"):
        co.seam_score(flat, (0, 0, 32, 32))


def test_engine_module_does_not_import_qt_or_torch() -> None:
    code = (
        "import sys, studio.engine.canvas_ops; "
        "print(any(m.split('.')[0] in ('PySide6', 'torch', 'diffusers') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
