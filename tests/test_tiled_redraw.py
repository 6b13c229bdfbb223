"""Tiled redraw (Ultimate SD Upscale's way): an upscale repainted tile by tile on the built-in model, 64 -> 128 px
in 64 px tiles; its seams, its progress and cancel, and its exact replay from the recipe."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.engine import Cancelled, Engine, GenerationRequest, RequestError, tiled_redraw
from studio.engine.tiled_redraw import plan, redraw_request
from studio.recipe.metadata import format_parameters, read_recipe
from studio.recipe.request import SEED_MAX, from_recipe

pytestmark = pytest.mark.builtin
BORDERS = (32, 64, 96)  # where the 64 px tiles of a 128 px picture start and end (three a side, 32 px apart)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = Engine(device="cpu", data_dir=tmp_path_factory.mktemp("redraw-home"))
    e.load("builtin")
    return e


@pytest.fixture(scope="module")
def settings():
    return GenerationRequest(prompt="a large red circle in the center, blue background", seed=3, steps=20, cfg=2.0)


@pytest.fixture(scope="module")
def picture(engine, settings):
    return engine.generate(settings)[0].image  # 64 px, the model's size


def redraw(engine, settings, picture, **kw):
    fields = dict(redraw_scale=2.0)
    fields.update(kw)
    return engine.generate(redraw_request(settings, picture, None, **fields))[0]


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def lanczos(picture, size=(128, 128)) -> np.ndarray:
    return pixels(picture.resize(size, Image.Resampling.LANCZOS))


def seam_step(image) -> tuple[float, float]:
    """Mean |step| between neighbouring columns and rows at the tile borders, and its median elsewhere."""
    a = pixels(image)
    cols = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # cols[x - 1]: between column x - 1 and x
    rows = np.abs(np.diff(a, axis=0)).mean(axis=(1, 2))
    at = [cols[b - 1] for b in BORDERS] + [rows[b - 1] for b in BORDERS]
    inside = np.delete(np.concatenate([cols, rows]), [b - 1 for b in BORDERS] + [127 + b - 1 for b in BORDERS])
    return float(np.mean(at)), float(np.median(inside))


def test_the_tiles_cover_the_picture_at_the_model_s_size_with_the_overlap():
    tiles = plan((256, 136), 64, 16)
    covered = np.zeros((136, 256), dtype=int)
    for tile in tiles:
        x0, y0, x1, y1 = tile.box
        assert (x1 - x0, y1 - y0) == (64, 64)  # the model works at its own size, never a shrunk tile
        covered[y0:y1, x0:x1] += 1
        assert tile.shared_left == 0 or tile.shared_left >= 16
        assert tile.shared_top == 0 or tile.shared_top >= 16
    assert covered.min() >= 1 and [t.index for t in tiles] == list(range(len(tiles)))
    assert len(tiles) == 5 * 3  # 256 px: five tiles 48 px apart; 136 px: three
    assert plan((48, 40), 64, 16)[0].box == (0, 0, 48, 40)  # a picture smaller than a tile is one tile
    assert tiled_redraw.tile_seed(7, 2) == 9 and tiled_redraw.tile_seed(SEED_MAX, 1) == 0


def test_tiles_add_to_the_upscale_but_keep_its_layout_at_low_denoise(engine, settings, picture):
    base = lanczos(picture)
    result = redraw(engine, settings, picture)  # the default denoise
    assert result.image.size == (128, 128)
    assert result.recipe["mode"] == "redraw" and result.recipe["redraw_tiles"] == 9
    assert np.abs(pixels(result.image) - base).mean() > 2  # the tiles were repainted, not only resized
    low = np.abs(pixels(redraw(engine, settings, picture, redraw_denoise=0.05).image) - base).mean()
    high_image = pixels(redraw(engine, settings, picture, redraw_denoise=0.6).image)
    high = np.abs(high_image - base).mean()
    assert low < high / 2  # one step at the lowest noise leaves the upscale (but for the VAE's own error)...

    def red(a: np.ndarray) -> np.ndarray:
        return a[..., 0] > a[..., 2] + 40

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / max((a | b).sum(), 1))

    low_image = pixels(redraw(engine, settings, picture, redraw_denoise=0.1).image)
    assert iou(red(low_image), red(base)) > 0.6  # ...and the circle stays one circle where it was
    assert iou(red(high_image), red(base)) < iou(red(low_image), red(base))  # high denoise draws one per tile


def test_no_seam_shows_where_tiles_meet(engine, settings, picture, monkeypatch):
    at_borders, elsewhere = seam_step(redraw(engine, settings, picture, redraw_denoise=0.35).image)
    assert at_borders < 3 * elsewhere + 1.0
    # The same tiles laid down without the cross-fade show the seam this measure looks for.

    def hard_paste(canvas, tile, new):
        x0, y0, x1, y1 = tile.box
        canvas[y0:y1, x0:x1] = new

    monkeypatch.setattr(tiled_redraw, "blend", hard_paste)
    hard_borders, hard_elsewhere = seam_step(redraw(engine, settings, picture, redraw_denoise=0.35).image)
    assert hard_borders > 3 * hard_elsewhere + 1.0


def test_one_progress_count_over_every_tile_with_previews_over_each_tile(engine, settings, picture):
    seen = []
    engine.generate(redraw_request(settings, picture, None, redraw_scale=2.0), on_step=seen.append)
    per_tile = int(20 * 0.2)
    assert [info.step for info in seen] == list(range(1, 9 * per_tile + 1))
    assert all(info.total == 9 * per_tile for info in seen)  # known from the first step on
    regions = {info.region for info in seen if info.preview is not None}
    # Each tile's preview is placed over its box on the 64 px source: 32 px, 16 px apart.
    assert regions == {(x, y, x + 32, y + 32) for x in (0, 16, 32) for y in (0, 16, 32)}


def test_cancel_midway_stops_and_returns_nothing(engine, settings, picture):
    seen = []

    def stop() -> bool:
        return any(info.step > 10 for info in seen)  # in the third tile

    with pytest.raises(Cancelled):
        engine.generate(redraw_request(settings, picture, None, redraw_scale=2.0), on_step=seen.append,
                        should_stop=stop)
    assert 10 < max(info.step for info in seen) < seen[-1].total


def test_the_result_replays_to_identical_pixels_from_its_saved_recipe(engine, settings, picture, tmp_path):
    from studio.gallery import Gallery

    gallery = Gallery(tmp_path / "home")
    parent = gallery.save(picture, {"prompt": settings.prompt, "seed": settings.seed})
    request = redraw_request(settings, picture, parent, redraw_scale=2.0, redraw_denoise=0.3)
    result = engine.generate(request)[0]
    child = gallery.save(result.image, result.recipe, parent_id=parent, inputs=(request.init_image,))
    record = gallery.get(child)
    saved = read_recipe(record.file)
    assert record.parent_id == parent and saved["redraw_scale"] == 2.0 and saved["redraw_denoise"] == 0.3
    assert saved["redraw_tile"] == 64 and saved["redraw_overlap"] == 16 and saved["seed"] == 3
    assert "Denoising strength: 0.3" in format_parameters(saved)
    again = engine.generate(from_recipe(saved, gallery.input_image(saved["init_image_hash"])))[0]
    assert np.array_equal(pixels(again.image), pixels(result.image))


@pytest.mark.parametrize(("change", "message"), [
    (dict(redraw_denoise=0.02), "runs no step"),
    (dict(redraw_scale=9.0), "redraw scale must be between 1 and 8"),
    (dict(redraw_upscaler=" "), "name a redraw upscaler"),
])
def test_redraw_settings_are_checked_up_front(settings, picture, change, message):
    with pytest.raises(RequestError, match=message):
        redraw_request(settings, picture, None, **{"redraw_scale": 2.0, **change})
    with pytest.raises(RequestError, match="needs a picture"):
        GenerationRequest(prompt="x", redraw_scale=2.0).validate()
