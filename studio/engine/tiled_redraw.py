"""Tiled redraw: a picture upscaled, then repainted tile by tile with image-to-image, for detail past 2x.

The way of the Ultimate SD Upscale extension (A1111) and node (ComfyUI): the picture is brought to the
target size (Lanczos or an upscaler file, as Upscale does), then each tile, at the model's own size, is
repainted by the engine's image-to-image path at a low denoise, and laid over the picture with a
cross-fade where it meets the tiles repainted before it. Tiles run in rows, left to right, top to
bottom, each cut from the picture as it stands, so it sees its repainted neighbours and continues them.

Replay rule: tile k (in that order, from 0) uses the seed (seed + k) mod 2^32, so the same request
gives the same pixels, and no two tiles share a noise pattern (one seed for all repeats its texture
across the picture). Each tile runs steps x denoise steps, as image-to-image does. No Qt here.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from studio.engine import upscale
from studio.engine.enlarge import load_upscaler, upscaled, upscaler_path
from studio.engine.hires import target_size
from studio.recipe.request import SEED_MAX, GenerationRequest, GenerationResult, StepInfo, from_recipe, to_recipe

if TYPE_CHECKING:
    from studio.engine.generate import Engine, StepCallback, StopCheck

Box = tuple[int, int, int, int]
# What a tile's own recipe says about the run that every tile shares: the model, sampler, LoRAs, device.
_RUN_KEYS = ("app_version", "scheduler_class", "scheduler_config", "model", "loras", "vae", "device", "dtype")


@dataclass(frozen=True)
class Tile:
    """One tile: its box on the upscaled picture and the px it shares with the tiles done before it."""

    index: int
    box: Box
    shared_left: int  # with the tile to its left (0: none)
    shared_top: int  # with the tile above it


def tile_seed(seed: int, index: int) -> int:
    """The replay rule: tile `index` of a redraw with `seed` starts from this noise."""
    return (seed + index) % (SEED_MAX + 1)


def layout(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """The tile side and where tiles start along one side: `tile` px (the whole side when it is shorter;
    the model works at its own size), as few as share at least `overlap` px, evenly spread edge to edge."""
    if length <= tile:
        return length, [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return tile, [round(k * step) for k in range(count)]


def plan(size: tuple[int, int], tile: int, overlap: int) -> list[Tile]:
    """Every tile of a picture of `size`, in the order they are repainted (rows, top to bottom)."""
    overlap = min(overlap, tile // 2)
    tile_w, xs = layout(size[0], tile, overlap)
    tile_h, ys = layout(size[1], tile, overlap)
    tiles: list[Tile] = []
    for row, y in enumerate(ys):
        for col, x in enumerate(xs):
            tiles.append(Tile(len(tiles), (x, y, x + tile_w, y + tile_h),
                              xs[col - 1] + tile_w - x if col else 0, ys[row - 1] + tile_h - y if row else 0))
    return tiles


def blend(canvas: np.ndarray, tile: Tile, pixels: np.ndarray) -> None:
    """Lay a repainted tile on the picture: whole where nothing was repainted yet (the next tile fades over
    it), cross-faded over what it shares with the tiles before it, its outer quarter of that skipped
    (its edge saw the least context), as Upscale's tiles are."""
    x0, y0, x1, y1 = tile.box
    wx = upscale.ramp(x1 - x0, tile.shared_left, 0, tile.shared_left // 4)
    wy = upscale.ramp(y1 - y0, tile.shared_top, 0, tile.shared_top // 4)
    weight = (wy[:, None] * wx[None, :])[:, :, None]
    region = canvas[y0:y1, x0:x1]
    region += (pixels.astype(np.float32) - region) * weight


def generate(engine: Engine, request: GenerationRequest, on_step: StepCallback | None = None,
             should_stop: StopCheck | None = None, preview: bool = True,
             preview_interval: float = 0.0) -> list[GenerationResult]:
    """The request's init image upscaled by `redraw_scale` and repainted tile by tile; one result."""
    from studio.engine.generate import Cancelled

    request.validate()
    start = time.perf_counter()
    model = engine.ensure_loaded(request.model)
    source = request.init_image.convert("RGB")  # type: ignore[union-attr]  # validate() checked it is there
    size = target_size(source.width, source.height, request.redraw_scale or 1.0)
    upscaler = load_upscaler(engine, upscaler_path(engine, request.redraw_upscaler))
    big = upscaled(source, size, upscaler, should_stop)
    side = request.redraw_tile or model.native_size
    tiles = plan(size, side, request.redraw_overlap)
    canvas = np.array(big, dtype=np.float32)
    report = _Progress(on_step, len(tiles), start, (source.width / size[0], source.height / size[1]))
    run: dict[str, Any] = {}
    for tile in tiles:
        if should_stop is not None and should_stop():
            raise Cancelled()
        x0, y0, x1, y1 = tile.box
        crop = Image.fromarray(np.rint(canvas[y0:y1, x0:x1]).astype(np.uint8), "RGB")
        [done] = engine.generate(_tile_request(request, crop, tile.index),
                                 on_step=report.for_tile(tile) if on_step is not None else None,
                                 should_stop=should_stop, preview=preview, preview_interval=preview_interval)
        blend(canvas, tile, np.asarray(done.image.convert("RGB")))
        run = run or done.recipe
    seconds = time.perf_counter() - start
    image = Image.fromarray(np.rint(canvas).clip(0, 255).astype(np.uint8), "RGB")
    recipe = to_recipe(request)
    recipe.update({key: run[key] for key in _RUN_KEYS if key in run})
    # The tile side it ran at (0 asks for the model's), so a replay on another model keeps it. Width and height
    # are the picture's, as hires fix records its first pass: Reuse settings then draws at the size the model
    # drew it (from_recipe drops them for a redraw, whose size the scale makes).
    recipe.update(width=source.width, height=source.height, redraw_tile=side, redraw_size=list(size),
                  redraw_tiles=len(tiles), seconds=round(seconds, 3),
                  created_at=_dt.datetime.now(_dt.timezone.utc).isoformat())
    if upscaler is not None:
        recipe["redraw_upscaler_path"] = str(upscaler.path)
    return [GenerationResult(image, request.seed, recipe, seconds)]


def settings_of(recipe: dict[str, Any]) -> GenerationRequest:
    """What a picture was made with (its own batch item's seed), for redrawing it: the prompt, model, sampler,
    steps, CFG and seed; the request's defaults where it has no recipe."""
    request = from_recipe(recipe)
    return request.item(min(int(recipe.get("batch_index") or 0), request.batch_size - 1))


def redraw_request(settings: GenerationRequest, picture: Image.Image, parent_id: int | None,
                   **redraw: Any) -> GenerationRequest:
    """A redraw of `picture` with `settings`' prompt, model, sampler, steps, CFG and seed and the `redraw_*`
    fields given: one picture, on this computer (a server cannot run it), linked to `parent_id`."""
    return replace(settings, init_image=picture.convert("RGB"), mask=None, outpaint=None, hires_scale=None,
                   batch_size=1, width=None, height=None, variation_seed=None, variation_strength=0.0,
                   parent_id=parent_id, backend="local", **redraw).validate()


def _tile_request(request: GenerationRequest, crop: Image.Image, index: int) -> GenerationRequest:
    """Tile `index` as the image-to-image the engine runs: the request's prompt, model, sampler, steps and
    CFG, the tile's own seed, at the tile's size."""
    return replace(request, redraw_scale=None, init_image=crop, strength=request.redraw_denoise,
                   seed=tile_seed(request.seed, index), width=crop.width, height=crop.height, parent_id=None)


class _Progress:
    """Every tile's steps as one count, its previews placed over the tile's box on the source picture."""

    def __init__(self, on_step: StepCallback | None, tiles: int, start: float, scale: tuple[float, float]) -> None:
        self.on_step, self.tiles, self.start, self.scale = on_step, tiles, start, scale

    def for_tile(self, tile: Tile) -> StepCallback:
        sx, sy = self.scale
        x0, y0, x1, y1 = tile.box
        region = (math.floor(x0 * sx), math.floor(y0 * sy), math.ceil(x1 * sx), math.ceil(y1 * sy))

        def step(info: StepInfo) -> None:
            assert self.on_step is not None
            # Every tile runs as many steps as the first (same steps, same denoise).
            self.on_step(replace(info, step=tile.index * info.total + info.step, total=self.tiles * info.total,
                                 elapsed=time.perf_counter() - self.start, item=0, items=1, region=region))

        return step
