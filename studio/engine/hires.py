"""Hires fix, as AUTOMATIC1111 and ComfyUI do it: two passes that count as one generation.

Pass 1 draws at the model's size (or the request's), the picture is upscaled (Lanczos or an upscaler
file from the library), and pass 2 repaints it at the larger size as image-to-image with the hires
denoise, so the model adds detail at the new size instead of repeating its objects across it. Both
passes report into one progress count; a stop request ends either pass (or the upscale between them).
The image's recipe is pass 1's with the hires fields added, so it replays the same two passes.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.engine.enlarge import load_upscaler, upscaled, upscaler_path
from studio.recipe.request import GenerationRequest, GenerationResult, StepInfo, pass_steps

if TYPE_CHECKING:
    from studio.engine.generate import Engine, StepCallback, StopCheck


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """Pass 2's size: A1111's int(side x scale), down to the multiple of 8 the latents need."""
    return max(8, int(width * scale) // 8 * 8), max(8, int(height * scale) // 8 * 8)


def generate(engine: Engine, request: GenerationRequest, on_step: StepCallback | None,
             should_stop: StopCheck | None, preview: bool = True, preview_interval: float = 0.0,
             preview_all: bool = False) -> list[GenerationResult]:
    """Every batch item through both passes, one item after the other."""
    request.validate()
    path = upscaler_path(engine, request.hires_upscaler)  # a wrong name fails before pass 1, not after it
    return [_one(engine, request.item(k), (k, request.batch_size), path, on_step, should_stop, preview,
                 preview_interval, preview_all)
            for k in range(request.batch_size)]


def _one(engine: Engine, request: GenerationRequest, item: tuple[int, int], upscaler_file: Path | None,
         on_step: StepCallback | None, should_stop: StopCheck | None, preview: bool, preview_interval: float,
         preview_all: bool) -> GenerationResult:
    start = time.perf_counter()
    hires_steps = request.hires_steps or request.steps
    totals = {"first": 0}

    def first_step(info: StepInfo) -> None:
        totals["first"] = info.total
        # Pass 2's count is not known until it starts; scale pass 1's by the steps asked for (Heun
        # and other two-stage samplers report twice the steps in both passes alike).
        expected = info.total + round(info.total * hires_steps / request.steps)
        _report(on_step, info, 0, expected, item, start)

    first = replace(request, hires_scale=None, batch_size=1)
    [low] = engine.generate(first, on_step=first_step if on_step else None, should_stop=should_stop,
                            preview=preview, preview_interval=preview_interval, preview_all=preview_all)
    size = target_size(low.image.width, low.image.height, request.hires_scale or 1.0)
    upscaler = load_upscaler(engine, upscaler_file)
    big = upscaled(low.image, size, upscaler, should_stop)
    if on_step is not None:
        done = totals["first"]
        on_step(StepInfo(done, done + hires_steps, time.perf_counter() - start, np.asarray(big), *item,
                         previews=[np.asarray(big)]))
    second = replace(request, hires_scale=None, batch_size=1, init_image=big, strength=request.hires_denoise,
                     steps=pass_steps(hires_steps, request.hires_denoise, _flow(engine)), width=size[0], height=size[1],
                     variation_seed=None, variation_strength=0.0)

    def second_step(info: StepInfo) -> None:
        _report(on_step, info, totals["first"], totals["first"] + info.total, item, start)

    [high] = engine.generate(second, on_step=second_step if on_step else None, should_stop=should_stop,
                             preview=preview, preview_interval=preview_interval, preview_all=preview_all)
    seconds = time.perf_counter() - start
    recipe = dict(low.recipe)
    recipe.update(hires_scale=float(request.hires_scale or 1.0), hires_steps=request.hires_steps,
                  hires_denoise=float(request.hires_denoise), hires_upscaler=request.hires_upscaler,
                  hires_size=list(size), seconds=round(seconds, 3))
    if upscaler is not None:
        recipe["hires_upscaler_path"] = str(upscaler.path)
    return GenerationResult(high.image, low.seed, recipe, seconds)


def _flow(engine: Engine) -> bool:
    return bool(engine.model is not None and engine.model.flow)


def _report(on_step: StepCallback | None, info: StepInfo, before: int, total: int, item: tuple[int, int],
            start: float) -> None:
    if on_step is None:
        return
    on_step(replace(info, step=before + info.step, total=total, item=item[0], items=item[1],
                    elapsed=time.perf_counter() - start))
