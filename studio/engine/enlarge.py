"""The Upscale command: a picture (from the gallery or the canvas) brought to a larger size as a new
image whose recipe is its parent's plus how it was upscaled, and the upscaler lookup hires fix shares.
No Qt here.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from studio.engine import upscale
from studio.recipe.request import HIRES_MAX_SCALE, MAX_PICTURE_SIDE, GenerationResult, RequestError, StepInfo

if TYPE_CHECKING:
    from studio.engine.generate import Engine, StepCallback, StopCheck

_LATENT = "latent"  # A1111's "Latent (...)" hires upscalers work on latents, which this engine does not


def upscaler_path(engine: Engine, name: str) -> Path | None:
    """An upscaler file by name (its stem in the model library) or path; None for Lanczos; else an error
    that says what there is."""
    from studio.engine.library import ItemKind

    if name.strip().lower() == upscale.LANCZOS.lower():
        return None
    if name.strip().lower().startswith(_LATENT):
        raise RequestError(f"the {name!r} upscaler works on latents, which Studio does not do: choose Lanczos "
                           "or an upscaler file from the model library")
    path = Path(name).expanduser()
    return path if path.is_file() else engine.library.find(ItemKind.UPSCALER, name).path


def load_upscaler(engine: Engine, path: Path | None) -> upscale.UpscaleModel | None:
    """The upscaler on the engine's device (kept loaded for the next picture); None for Lanczos."""
    if path is None:
        return None
    if engine.model is not None:
        device: Any = engine.model.device
    else:
        from studio.engine.models import pick_device

        device = pick_device(engine.device_request)[0]
    return engine.upscalers.get(path, device)


def upscaled(image: Image.Image, size: tuple[int, int], model: upscale.UpscaleModel | None,
             should_stop: StopCheck | None, tile: int | None = None,
             on_progress: upscale.ProgressCallback | None = None) -> Image.Image:
    """`upscale.upscale` for the engine's callers (Upscale, hires fix, tiled redraw): a stop between tiles
    raises the engine's Cancelled, which upscale.py cannot import (the engine imports it)."""
    from studio.engine.generate import Cancelled

    try:
        return upscale.upscale(image, size, model, tile=tile, on_progress=on_progress, should_stop=should_stop)
    except upscale.UpscaleCancelled:
        raise Cancelled() from None


def upscale_picture(engine: Engine, image: Image.Image, scale: float, upscaler: str = upscale.LANCZOS,
                    recipe: dict[str, Any] | None = None, parent_id: int | None = None,
                    on_step: StepCallback | None = None, should_stop: StopCheck | None = None,
                    tile: int | None = None) -> GenerationResult:
    """`image` at `scale` times its size, as a result to keep: the parent's recipe (so Reuse settings still
    brings back its prompt and seed) with an `upscale` entry, which the A1111 text writes as A1111's
    Extras tab does ("Postprocess upscale by", "Postprocess upscaler")."""
    if not 1.0 <= scale <= HIRES_MAX_SCALE:
        raise RequestError(f"the upscale factor must be between 1 and {HIRES_MAX_SCALE:g} (got {scale:g})")
    size = (round(image.width * scale), round(image.height * scale))
    if max(size) > MAX_PICTURE_SIDE:
        raise RequestError(f"{size[0]} x {size[1]} px is larger than the {MAX_PICTURE_SIDE} px Studio writes")
    model = load_upscaler(engine, upscaler_path(engine, upscaler))
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if on_step is not None:
            on_step(StepInfo(done, total, time.perf_counter() - start))

    big = upscaled(image, size, model, should_stop, tile=tile, on_progress=progress)
    seconds = time.perf_counter() - start
    out = {k: v for k, v in (recipe or {}).items() if k not in ("source", "seconds", "created_at")}
    out.setdefault("prompt", "")
    out.setdefault("negative_prompt", "")
    out.update(upscale={"upscaler": upscaler if model is None else model.name, "scale": float(scale),
                        "from_size": [image.width, image.height]},
               parent_id=parent_id, seconds=round(seconds, 3),
               created_at=_dt.datetime.now(_dt.timezone.utc).isoformat())
    if on_step is not None and model is None:
        on_step(StepInfo(1, 1, seconds))  # Lanczos is one step
    return GenerationResult(big, int(out.get("seed") or 0), out, seconds)
