"""`python -m studio.bench engine [--model builtin|PATH] [--steps 20] [--repeats 5] [--batch 4] [--json]`

What the engine costs on top of diffusers, and how fast the loaded model is. Every figure stands
beside its reference measured in the same run; the runs are interleaved (the order rotates each
repeat) so that drift in the machine's speed falls on all of them alike, and medians are reported.

- engine.generate against a raw `pipe(...)` call on the same loaded pipeline: same prompt, steps,
  CFG, size, scheduler (a fresh one of the same class and config for each call) and the same initial
  latents from the same seed; with live previews on and off. Goal: ratio <= 1.02. Decided from
  `--pairs` (20) back-to-back engine/raw pairs in alternating order: the median of the per-pair
  ratios with its distribution-free 95 % interval. `--size 128` makes the built-in model's steps
  long enough to time.
- the preview's cost per step: the engine's preview source (the built-in model's learned decoder, a
  TAESD, or a linear map) on one x0 latent, alone and as a share of a step. Goal: <= 10 % of a step.
- N variations in one batched call against N sequential runs.
- seconds per image for 20 steps at the model's native size (built-in model goal: <= 1 s here).
- the preview's PSNR against the VAE's full decode of the same latents, on 16 world scenes that neither
  the built-in model nor its preview decoder was trained on. Goal: >= 20 dB on the built-in model.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from studio.bench import report

PROMPT = "a large red circle in the center, blue background"
SEED = 1234
NATIVE_STEPS = 20  # the steps of the seconds-per-image figure


def load_engine(model: str, device: str) -> Any:
    """An Engine with `model` loaded; raises studio.engine.ModelError when it cannot be."""
    from pathlib import Path

    from studio.engine import Engine
    from studio.engine.models import resolve

    home = Path(os.environ["STUDIO_HOME"]) if os.environ.get("STUDIO_HOME") else None
    resolve(model, home)  # a clear ModelError before torch and diffusers are imported
    engine = Engine(device=device, data_dir=home)
    engine.load(model)
    return engine


def initial_latents(model: Any, seeds: list[int], width: int, height: int) -> Any:
    """The engine's initial noise, built the same way: one CPU generator per seed, then to the device."""
    import torch

    pipe = model.pipe
    shape = (1, pipe.vae.config.latent_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]
    return torch.cat(noise).to(model.device, model.dtype)


def raw_generate(engine: Any, request: Any) -> list[Any]:
    """The request run as a plain diffusers call on the engine's own pipeline (no callback, no preview)."""
    import torch

    from studio.engine.prompts import conditioning
    from studio.engine.schedulers import make_scheduler

    model = engine.model
    pipe = model.pipe
    pipe.scheduler = make_scheduler(request.scheduler, model.scheduler_config)
    width, height = request.width or model.native_size, request.height or model.native_size
    seeds = request.batch_seeds()
    latents = initial_latents(model, seeds, width, height)
    with torch.inference_mode():  # the prompt encoded as the engine does (A1111 chunks past 75 tokens)
        out = pipe(**conditioning(pipe, request.prompt, request.negative_prompt),
                   num_inference_steps=request.steps, guidance_scale=request.cfg,
                   num_images_per_prompt=len(seeds), width=width, height=height, latents=latents,
                   output_type="pil")
    return list(out.images)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], Any], device: Any) -> tuple[float, Any]:
    """(seconds, result) of one call, with the device drained before and after."""
    gc.collect()
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result


def paired_ratios(first: Callable[[], Any], second: Callable[[], Any], pairs: int, device: Any) -> list[float]:
    """second/first time ratios of `pairs` back-to-back pairs, the order alternating (AB, BA, AB, …) so
    that neither always runs on a warmer or cooler machine; a pair's two runs see the same load."""
    ratios = []
    for k in range(pairs):
        if k % 2 == 0:
            a, b = timed(first, device)[0], timed(second, device)[0]
        else:
            b, a = timed(second, device)[0], timed(first, device)[0]
        ratios.append(b / a)
    return ratios


def median_interval(values: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """(median, low, high): the median and its distribution-free 95 % confidence interval from order
    statistics (the binomial rank interval; no assumption on the ratios' distribution)."""
    ordered = sorted(values)
    n = len(ordered)
    j = max(0, int((n - z * n ** 0.5) / 2))  # ranks j and n-1-j bracket the median at about 95 %
    return statistics.median(ordered), ordered[j], ordered[n - 1 - j]


def preview_seconds(engine: Any, width: int, height: int, repeats: int = 50) -> float:
    """Median time of the engine's preview source on one x0 latent of the model's size (what each step adds)."""
    import torch

    model = engine.model
    vsf = model.pipe.vae_scale_factor
    shape = (2, model.pipe.vae.config.latent_channels, height // vsf, width // vsf)
    x0 = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(0)).to(model.device, model.dtype)
    times = []
    for k in range(repeats + 3):
        start = time.perf_counter()
        engine.rgb_map.to_rgb(x0[0])  # ends with .cpu(): already synchronous
        if k >= 3:  # the first calls warm up allocators
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def preview_psnr(engine: Any, scenes: int = 16) -> float | None:
    """PSNR (dB) of the engine's preview against the full VAE decode of the same latents, on world scenes
    that neither the built-in model nor its preview decoder was trained on. A preview smaller than the
    decode (a linear map's, at latent resolution) is compared with the decode avg-pooled to its size."""
    import numpy as np
    import torch

    from studio.builtin import preview_decoder

    source = engine.rgb_map
    if source is None:
        return None
    vae = engine.model.pipe.vae
    images = preview_decoder.scenes(preview_decoder.HELD_OUT_SEED_BASE, scenes)
    with torch.no_grad():
        latents, decodes = preview_decoder.latents_and_decodes(vae, images)
    shown = torch.from_numpy(np.stack([source.to_rgb(z) for z in latents])).permute(0, 3, 1, 2).float()
    truth = torch.nn.functional.avg_pool2d(decodes, decodes.shape[-1] // shown.shape[-1])
    return preview_decoder.psnr(shown / 127.5 - 1, truth)


def image_difference(a: Any, b: Any) -> int:
    """Largest per-channel difference between two images (0: identical)."""
    import numpy as np

    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())


def run(model: str = "builtin", steps: int = 20, repeats: int = 5, batch: int = 4, device: str = "auto",
        scheduler: str = "DPM++ 2M", cfg: float = 7.0, pairs: int = 20, size: int | None = None) -> dict[str, Any]:
    """Measure; returns the figures (seconds, ratios, dB). Raises ModelError if the model cannot load."""
    from studio.recipe.request import GenerationRequest

    engine = load_engine(model, device)
    loaded = engine.model
    size = size or loaded.native_size
    dev = loaded.device
    base = GenerationRequest(prompt=PROMPT, steps=steps, cfg=cfg, seed=SEED, width=size, height=size,
                             scheduler=scheduler, model=str(loaded.entry.path))
    batched = replace(base, batch_size=batch)
    native = replace(base, steps=NATIVE_STEPS)
    step_times: list[float] = []

    def no_op(_info: Any) -> None:
        pass

    def record_steps(_info: Any) -> None:
        step_times.append(time.perf_counter())

    def engine_run(request: GenerationRequest, preview: bool, on_step: Callable[[Any], None] = no_op,
                   **kw: Any) -> list[Any]:
        # what the GUI's worker does: a progress callback and a stop check on every step
        return engine.generate(request, on_step=on_step, should_stop=lambda: False, preview=preview, **kw)

    def preview_off() -> list[Any]:
        step_times.clear()
        out = engine_run(base, False, record_steps)
        gaps = [b - a for a, b in zip(step_times, step_times[1:])]
        step_gaps.extend(gaps)
        return out

    step_gaps: list[float] = []
    runs: dict[str, Callable[[], Any]] = {
        "raw": lambda: raw_generate(engine, base),
        "engine_preview_off": preview_off,
        "engine_preview_on": lambda: engine_run(base, True),
        "batch": lambda: engine_run(batched, True, preview_all=True),  # as the GUI runs a variation grid
        "sequential": lambda: engine_run(batched, True, sequential=True),
    }
    if steps != NATIVE_STEPS:
        runs["native_steps"] = lambda: engine_run(native, True)

    # warm-up (allocators, lazy imports, kernels), and the check that engine and raw agree
    _, raw_images = timed(runs["raw"], dev)
    _, engine_results = timed(runs["engine_preview_on"], dev)
    difference = image_difference(raw_images[0], engine_results[0].image)
    for name in runs:
        if name not in ("raw", "engine_preview_on"):
            timed(runs[name], dev)
    step_gaps.clear()

    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no run always goes first
        for name in order:
            times[name].append(timed(runs[name], dev)[0])
    med = {name: statistics.median(t) for name, t in times.items()}
    # The overhead goal is decided from interleaved pairs, not from the ratio of two medians: each
    # pair's runs share the machine's state of the moment, so drift cancels within the pair.
    verdict = {}
    for name in ("engine_preview_on", "engine_preview_off"):
        middle, low, high = median_interval(paired_ratios(runs["raw"], runs[name], pairs, dev))
        verdict[name] = {"": middle, "_ci_low": low, "_ci_high": high}

    step = statistics.median(step_gaps) if step_gaps else med["engine_preview_off"] / steps
    preview = preview_seconds(engine, size, size)
    native_total = med["engine_preview_on"] if steps == NATIVE_STEPS else med["native_steps"]
    rgb_map = engine.rgb_map
    return {
        "model": loaded.entry.name,
        "device": dev.type,
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "width": size,
        "height": size,
        "steps": steps,
        "repeats": repeats,
        "batch": batch,
        "scheduler": scheduler,
        "raw_s": med["raw"],
        "engine_preview_off_s": med["engine_preview_off"],
        "engine_preview_on_s": med["engine_preview_on"],
        "pairs": pairs,
        **{f"engine_vs_raw_{name.removeprefix('engine_')}{suffix}": value
           for name, figures in verdict.items() for suffix, value in figures.items()},
        "engine_raw_max_pixel_difference": difference,
        "step_s": step,
        "preview_per_step_s": preview,
        "preview_share_of_step": preview / step,
        "batch_s": med["batch"],
        "sequential_s": med["sequential"],
        "batch_vs_sequential": med["batch"] / med["sequential"],
        "batch_per_image_s": med["batch"] / batch,
        "seconds_per_image_20_steps": native_total,
        "preview_psnr_db": preview_psnr(engine),
        "preview_source": rgb_map.source if rgb_map is not None else None,
    }


PER_STEP = ("step_s", "preview_per_step_s")  # shown to people in milliseconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench engine", description=__doc__.splitlines()[2])
    parser.add_argument("--model", default="builtin", help="'builtin' (default), a model name or a path")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each kind (medians reported)")
    parser.add_argument("--batch", type=int, default=4, help="variations in the batched-vs-sequential figure")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--scheduler", default="DPM++ 2M")
    parser.add_argument("--pairs", type=int, default=20, help="interleaved engine/raw pairs behind each overhead ratio")
    parser.add_argument("--size", type=int, help="working size in px (default: the model's native size); a larger "
                        "size makes each step long enough to time")
    parser.add_argument("--json", action="store_true", help="one JSON object, times in seconds")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.pairs < 2 or not 1 <= args.batch <= 16:
        parser.error("--steps and --repeats must be at least 1, --pairs at least 2, --batch between 1 and 16")

    from studio.engine.models import ModelError

    try:
        rows = run(args.model, args.steps, args.repeats, args.batch, args.device, args.scheduler,
                   pairs=args.pairs, size=args.size)
    except ModelError as exc:
        print(f"studio.bench engine: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        rows = {(k[:-2] + "_ms" if k in PER_STEP else k): (v * 1000 if k in PER_STEP else v)
                for k, v in rows.items()}
    title = (f"Engine, {rows['model']} on {rows['device']} ({rows['dtype']}), {rows['width']}x{rows['height']}, "
             f"{args.steps} steps, medians of {args.repeats}")
    report(title, rows, args.json)
    if not args.json:
        print("  engine_vs_raw_*: the median of per-pair ratios and its 95 % interval (_ci_low, _ci_high)")
        print("  goals: engine_vs_raw_* <= 1.02; preview_share_of_step <= 0.10 and preview_psnr_db >= 20 (built-in "
              "model; PSNR vs the full decode on held-out world scenes); seconds_per_image_20_steps <= 1 s")
    return 0
