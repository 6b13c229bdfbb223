"""`python -m studio.bench models [--families sd1,sdxl,flux,sd35] [--size 128] [--keep DIR] [--json]`

Full-size proof of the single-file loader: for each family, a checkpoint with the complete published
architecture (SD 1.5: 1.07 B parameters; SDXL base: 3.5 B; SD 3.5 medium: 2.5 B) and random weights is
written in the original single-file layout, fp16 on disk, exactly as the files designers download are laid
out. FLUX.1's 12 B do not fit this 24 GB machine: its transformer is written at full width with every block
type but 2 double and 4 single blocks, so each key and shape is the real one. Both flow models are opened
with separate encoders from a ComfyUI-style library (FLUX: `diffusion_models/` + `text_encoders/clip_l`,
`t5xxl_fp16` + `vae/ae`; SD 3.5: CLIP-L, CLIP-G and the VAE inside, T5 beside it); the T5-XXL is full
width with 2 of its 24 layers.
A fresh process then opens it through Studio (detection + shipped skeleton, no config folder) and
generates one step at a small size. Reported per family: the file's size, the time to write it, to
load it and to run the step, and the loading process's peak memory (RSS). The process is a fresh one
so that the peak is the loader's own and not the writer's.

Needs about 2x the fp16 file in RAM for SDXL (fp32 on the CPU): 14 GB. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from studio.bench import report

FLOW = ("flux", "sd35")


def write_full_size(family: str, path: Path) -> dict[str, Any]:
    """A full-size random checkpoint of `family` in the original layout, fp16, built without ever
    holding fp32 weights: the shapes come from the meta device, each tensor is drawn in fp16. For the
    flow families `path` is a library folder that gets the transformer file and its parts."""
    from studio.bench import checkpoint_files as F

    start = time.perf_counter()
    files = _flow_layout(family, path) if family in FLOW else {path: _ldm_shapes(family)}
    parameters = 0
    for file, shapes in files.items():
        state = _random(shapes)
        file.parent.mkdir(parents=True, exist_ok=True)
        F.save(state, file)
        parameters += sum(t.numel() for t in state.values())
        del state
    size = sum(f.stat().st_size for f in files)
    return {"parameters": parameters, "file_gb": round(size / 1e9, 3), "write_s": round(time.perf_counter() - start, 2)}


Shapes = dict[str, tuple[tuple[int, ...], Any]]


def _ldm_shapes(family: str) -> Shapes:
    from studio.bench import checkpoint_files as F

    unet, vae, texts = F.build_components(family, F.full_configs(family), device="meta")
    return {k: (tuple(v.shape), v.dtype) for k, v in F.ldm_state_dict(family, unet, vae, texts).items()}


def _flow_layout(family: str, root: Path) -> dict[Path, Shapes]:
    """The files of a ComfyUI models folder for `family`, each as tensor shapes (built on the meta device)."""
    from accelerate import init_empty_weights

    from studio.bench import flow_checkpoint_files as W

    def shapes(state: dict[str, Any]) -> Shapes:
        return {k: (tuple(v.shape), v.dtype) for k, v in state.items()}

    with init_empty_weights(include_buffers=True):
        parts = (W.flux_components(W.flux_configs(full_width=True)) if family == "flux"
                 else W.sd3_components(W.sd3_configs(full_size=True)))
    t5 = {root / "text_encoders" / "t5xxl_fp16.safetensors": shapes(W.t5_tensors(parts["t5"]))}
    if family == "flux":
        return {root / "diffusion_models" / "flux1-dev-2-4-blocks.safetensors":
                shapes(W.flux_transformer_tensors(parts["transformer"])),
                root / "text_encoders" / "clip_l.safetensors": shapes(W.clip_tensors(parts["clip_l"])),
                root / "vae" / "ae.safetensors": shapes(W.vae_tensors(parts["vae"])), **t5}
    return {root / "checkpoints" / "sd3.5_medium.safetensors": shapes(W.sd3_state_dict(parts, ("clip_l", "clip_g"))),
            **t5}


def _random(shapes: Shapes) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, (shape, dtype) in shapes.items():
        if not dtype.is_floating_point:
            state[key] = torch.arange(shape[-1]).expand(shape).clone() if shape else torch.tensor(0)
        elif (len(shape) == 1 and any(n in key for n in ("norm", "ln_", "layer_norm"))
              and key.endswith(("weight", "scale"))):
            state[key] = torch.ones(shape, dtype=torch.float16)  # norms start at 1, as trained ones are near
        else:
            state[key] = (torch.randn(shape, generator=generator) * 0.02).to(torch.float16)
    return state


def open_and_step(path: Path, size: int) -> dict[str, Any]:
    """In this process: load through Studio and generate one step; the figures and the peak RSS.
    The A1111 hash (a sha256 of the whole file, cached after the first time) is timed on its own."""
    from studio.engine import Engine, GenerationRequest, hashes, library

    home = Path(tempfile.mkdtemp(prefix="studio-bench-home-"))
    if path.is_dir():  # a flow model's library folder: open its transformer, the parts are found beside it
        library.add_folder(home, path)
        path = next(p for p in sorted(path.rglob("*.safetensors"))
                    if p.parent.name in ("diffusion_models", "checkpoints"))
    start = time.perf_counter()
    hashes.short_hash(path, home / "cache")
    hash_s = time.perf_counter() - start
    start = time.perf_counter()
    engine = Engine(device="cpu", data_dir=home)
    loaded = engine.load(str(path))
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    result = engine.generate(GenerationRequest(prompt="a red circle", steps=1, width=size, height=size, seed=1,
                                               model=str(path)), preview=False)[0]
    return {"family": loaded.label, "parts": loaded.parts, "native_size": loaded.native_size,
            "hash_s": round(hash_s, 2),
            "load_s": round(load_s, 2),
            "step_s": round(time.perf_counter() - start, 2), "image": list(result.image.size),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench models", description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="sd1,sdxl")
    parser.add_argument("--size", type=int, default=128, help="image side for the one step, px")
    parser.add_argument("--keep", type=Path, help="write the checkpoints here and keep them (default: a temp dir)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--write", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.child and args.write:
        print(json.dumps(write_full_size(args.write, args.child)))
        return 0
    if args.child:
        print(json.dumps(open_and_step(args.child, args.size)))
        return 0
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="studio-bench-models-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for family in args.families.split(","):
            path = folder / (f"random-{family}-library" if family in FLOW else f"random-{family}-full.safetensors")
            # Writing and opening each run in a process of their own, so neither's memory counts for the other.
            written = _child(["--write", family, "--child", str(path)])
            opened = _child(["--child", str(path), "--size", str(args.size)])
            if written is None or opened is None:
                return 1
            rows.update({f"{family}_{k}": v for k, v in {**written, **opened}.items()})
    report("Full-size single-file checkpoints (random weights, fp16 on disk), opened on the CPU", rows, args.json)
    return 0


def _child(argv: list[str]) -> dict[str, Any] | None:
    done = subprocess.run([sys.executable, "-m", "studio.bench", "models", *argv], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return None
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    sys.exit(main())
