"""`python -m studio.bench upscale [--size 1024] [--blocks 23] [--device auto] [--json]`

A full-size 4x ESRGAN (64 features, 23 RRDB blocks: the architecture of RealESRGAN_x4plus and
4x-UltraSharp) with random weights, written as a .pth in the original key layout and opened through
Studio's loader, brings a --size picture to 4x that size twice: tiled with the tile size Studio picks
from the free memory, and whole. Each run happens in a fresh process so that its peak memory (RSS on
a CPU, allocated device memory on CUDA) is its own. When the whole-picture run would not fit (the
estimate from the same per-pixel cost the tiler uses), it says so and runs the largest size that does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from studio.bench import report


def _write_model(path: Path, blocks: int) -> None:
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    torch.save(ESRGAN(num_filters=64, num_blocks=blocks, scale=4).state_dict(), path)


def _child(model_path: str, size: int, tiled: bool, device: str, budget: int | None) -> dict[str, Any]:
    """One measured run (in its own process): seconds, peak bytes, the tile used."""
    import resource

    import numpy as np
    import torch
    from PIL import Image

    from studio.engine import upscale

    model = upscale.load_model(Path(model_path), device)
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    picture = Image.fromarray((np.stack([x, y, 0.5 + 0.5 * np.sin(12 * (x + y))], -1) * 255).astype(np.uint8))
    tile = upscale.auto_tile(model, budget) if tiled else size
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = upscale.run_tiled(picture, model, tile=tile)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if model.device.type == "cuda":
        peak = int(torch.cuda.max_memory_allocated())
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"seconds": seconds, "peak_bytes": peak, "tile": tile, "out_size": out.width,
            "device": model.device.type}


def _run_child(model_path: Path, size: int, tiled: bool, device: str, budget_gb: float | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "studio.bench", "upscale", "--child", str(model_path), "--size", str(size),
           "--device", device] + (["--tiled"] if tiled else []) + (["--budget-gb", str(budget_gb)] if budget_gb else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {'tiled' if tiled else 'whole'} run failed: {done.stderr.strip()[-400:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _whole_estimate(model_path: Path, size: int, device: str) -> tuple[int, int]:
    """Estimated peak bytes of the whole-picture run and the memory there is for it."""
    from studio.engine import upscale

    model = upscale.load_model(model_path, device)
    dtype_bytes = 2 if model.descriptor.dtype in upscale._half_dtypes() else 4
    need = int(upscale.ACTIVATION_FACTOR * model.feature_width() * 16 * dtype_bytes * size * size)
    return need, upscale.free_memory(model.device) * (2 if model.device.type == "cuda" else 4)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench upscale")
    parser.add_argument("--size", type=int, default=1024, help="input side in px (output: 4x)")
    parser.add_argument("--blocks", type=int, default=23, help="RRDB blocks (23: the full architecture)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--budget-gb", type=float, help="choose the tile for this much free memory (default: "
                        "what the device has), to see the tiling a smaller machine would get")
    parser.add_argument("--skip-whole", action="store_true", help="only the tiled run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tiled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.child:
        budget = int(args.budget_gb * 2**30) if args.budget_gb else None
        print(json.dumps(_child(args.child, args.size, args.tiled, device, budget)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / f"4x-esrgan-{args.blocks}b.pth"
        _write_model(model_path, args.blocks)
        rows: dict[str, Any] = {"input_px": args.size, "output_px": 4 * args.size, "blocks": args.blocks,
                                "device": device, "file_bytes": os.path.getsize(model_path),
                                "budget_gb": args.budget_gb or "free memory"}
        tiled = _run_child(model_path, args.size, True, device, args.budget_gb)
        rows.update({"tile_px": tiled["tile"], "tiled_s": tiled["seconds"], "tiled_peak_bytes": tiled["peak_bytes"]})
        if not args.skip_whole:
            need, have = _whole_estimate(model_path, args.size, device)
            whole_size = args.size
            while need > have and whole_size > 64:
                whole_size //= 2
                need //= 4
            if whole_size != args.size:
                print(f"untiled {args.size} px would need about {need * (args.size // whole_size) ** 2 / 2**30:.1f} GB "
                      f"(there are {have / 2**30:.1f} GB): measuring untiled at {whole_size} px instead",
                      file=sys.stderr)
            whole = _run_child(model_path, whole_size, False, device, None)
            if whole_size != args.size:  # the tiled run at the same size, to compare like with like
                same = _run_child(model_path, whole_size, True, device, args.budget_gb)
                rows.update({"tiled_at_whole_size_s": same["seconds"], "tiled_at_whole_size_peak_bytes":
                             same["peak_bytes"], "tile_at_whole_size_px": same["tile"]})
            rows.update({"whole_input_px": whole_size, "whole_s": whole["seconds"],
                         "whole_peak_bytes": whole["peak_bytes"], "whole_estimated_peak_bytes": need})
        report(f"Upscale {args.size} -> {4 * args.size} px, 4x ESRGAN ({args.blocks} blocks, random weights) "
               f"on {device}", rows, args.json)
    return 0
