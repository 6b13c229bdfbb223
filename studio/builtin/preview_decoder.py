"""The built-in model's live-preview decoder: a few convolutions that turn a predicted clean latent (x0)
into RGB at full size, trained to imitate the shipped VAE's own decoder (as TAESD does for SD).

The linear latent->RGB map tops out near 12 dB on world scenes with this VAE; this decoder costs about
as little per step and follows the full decode closely. It is trained on latents of world scenes the
model's data set never drew (TRAIN_SEED_BASE), half of them with a little noise added, because early
steps' x0 is a rough latent; the target is always the VAE's decode of exactly the input latent.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.builtin import world
from studio.engine.preview import LEARNED_CONFIG, LEARNED_WEIGHTS, learned_decoder

# The model's data set draws seeds seed * 10_000_000 + i (train.render_dataset); these ranges are apart from
# it and from each other, so the measured PSNR is on scenes neither the model nor this decoder saw.
TRAIN_SEED_BASE = 70_000_000
HELD_OUT_SEED_BASE = 90_000_000
GUIDANCE = (1.0, 8.0)  # the sampled generations' CFG range: the model's suggested 2 up past the CLI's default 7


def architecture(vae: Any, width: int) -> dict[str, int]:
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return {"latent_channels": int(vae.config.latent_channels), "factor": factor, "width": width}


def scenes(base: int, count: int) -> np.ndarray:
    """World scenes `base` .. `base + count - 1` as (N, 3, 64, 64) floats in [-1, 1]."""
    images = np.stack([np.asarray(world.sample(base + i)[1]) for i in range(count)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).numpy()


@torch.no_grad()
def latents_and_decodes(vae: Any, images: np.ndarray, noise: float = 0.0,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pipeline-space latents of `images` (encoder mean, plus `noise` std of Gaussian noise on every other
    one) and the VAE's full decode of exactly those latents, clamped to [-1, 1]; float32, on the CPU."""
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    weight = next(vae.parameters())
    latents, decodes = [], []
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(images), 256):
        x = torch.from_numpy(images[i:i + 256]).to(weight.device, weight.dtype)
        z = (vae.encode(x).latent_dist.mean.float().cpu() - shift) * scale
        if noise:
            z[::2] += noise * torch.randn(z[::2].shape, generator=gen)
        latents.append(z)
        decoded = vae.decode((z / scale + shift).to(weight.device, weight.dtype)).sample
        decodes.append(decoded.float().cpu().clamp(-1, 1))
    return torch.cat(latents), torch.cat(decodes)


@torch.no_grad()
def sampled_x0(folder: Path, runs: int, seed: int) -> torch.Tensor:
    """The model's own x0 predictions at every step of `runs` generations of world captions (a live
    preview shows exactly these: early ones are blurred and off the encoder's latents, which is where
    a decoder trained on encoded scenes alone went wrong)."""
    import random

    from diffusers import StableDiffusionPipeline

    from studio.engine.generate import _X0Capture

    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    capture = _X0Capture(pipe.scheduler)
    found: list[torch.Tensor] = []

    def keep(_pipe: Any, _i: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        found.append(capture.x0.float().cpu())
        return tensors

    rng = random.Random(seed)
    for k in range(runs):
        # held-out combinations too, and strong guidance: pictures off the model's best path are where a
        # preview most needs to say what the decode will show
        caption = world.sample(TRAIN_SEED_BASE + 5_000_000 + k, allow_held_out=True)[0].caption()
        pipe(caption, num_inference_steps=rng.choice((6, 10, 20)), guidance_scale=rng.uniform(*GUIDANCE),
             generator=torch.Generator().manual_seed(seed * 100_000 + k), output_type="latent",
             callback_on_step_end=keep)
    return torch.cat(found)


@torch.no_grad()
def decoded(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """The VAE's full decode of pipeline-space latents, clamped to [-1, 1]."""
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    return torch.cat([vae.decode(z / scale + shift).sample.clamp(-1, 1) for z in latents.split(256)])


def psnr(shown: torch.Tensor, truth: torch.Tensor) -> float:
    """8-bit PSNR (dB) of two [-1, 1] image batches, both rounded to 8 bits as the preview is."""
    a = ((shown.clamp(-1, 1) + 1) * 127.5).round()
    b = ((truth.clamp(-1, 1) + 1) * 127.5).round()
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))


def train(vae: Any, sampled: torch.Tensor | None = None, scenes_count: int = 3000, steps: int = 3000,
          batch: int = 16, width: int = 48, lr: float = 2e-3, noise: float = 0.3, seed: int = 0,
          log=print) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a learned preview decoder against `vae`'s decoder, on encoded world scenes and on `sampled`
    x0 latents (sampled_x0); returns it and the record for its config."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    vae = vae.float().eval()
    latents, targets = latents_and_decodes(vae, scenes(TRAIN_SEED_BASE, scenes_count), noise, seed)
    if sampled is not None:
        latents, targets = torch.cat([latents, sampled]), torch.cat([targets, decoded(vae, sampled)])
    held_latents, held_targets = latents_and_decodes(vae, scenes(HELD_OUT_SEED_BASE, 64))
    prepared = time.perf_counter() - t0
    decoder = learned_decoder(**architecture(vae, width))
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for group in opt.param_groups:  # cosine decay: the last steps polish
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(0, len(latents), (batch,), generator=gen)
        loss = (decoder(latents[idx]) - targets[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step + 1 == steps:
            log(f"preview decoder step {step + 1}/{steps}: L1 {loss.item():.4f}")
    decoder.eval()
    with torch.no_grad():
        held = psnr(decoder(held_latents), held_targets)
    seconds = time.perf_counter() - t0
    log(f"preview decoder: {held:.1f} dB on 64 held-out world scenes, {seconds:.0f} s")
    record = {"architecture": architecture(vae, width),
              "input": "the pipeline's latents (x0): (latent - shift_factor) * scaling_factor",
              "output": "RGB in [-1, 1] at full size",
              "training": {"target": "the shipped VAE's full decode of the same latent, clamped to [-1, 1]",
                           "scenes": scenes_count,
                           "sampled_x0": len(sampled) if sampled is not None else 0,
                           "scene_seeds": f"{TRAIN_SEED_BASE}..{TRAIN_SEED_BASE + scenes_count - 1}",
                           "noise": f"std {noise} Gaussian noise on every other latent", "steps": steps,
                           "batch": batch, "lr": lr, "loss": "L1", "seed": seed,
                           "seconds": round(seconds), "seconds_preparing_data": round(prepared),
                           "threads": torch.get_num_threads()},
              "psnr_held_out_db": round(held, 2),
              "held_out_seeds": f"{HELD_OUT_SEED_BASE}..{HELD_OUT_SEED_BASE + 63}"}
    return decoder, record


def save(decoder: torch.nn.Module, record: dict[str, Any], folder: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(folder / LEARNED_WEIGHTS))
    (folder / LEARNED_CONFIG).write_text(json.dumps(record, indent=2) + "\n")


def train_for_folder(folder: Path, steps: int, log=print, runs: int = 300) -> None:
    """Train the preview decoder for the pipeline folder's own VAE, on encoded world scenes and on the
    folder's own model's x0 along `runs` generations, and write it into the folder."""
    from diffusers import AutoencoderKL

    t0 = time.perf_counter()
    sampled = sampled_x0(folder, runs, seed=0)
    log(f"preview decoder: {len(sampled)} x0 latents from {runs} generations, {time.perf_counter() - t0:.0f} s")
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    decoder, record = train(vae, sampled, steps=steps, log=log)
    record["training"]["seconds_sampling_x0"] = round(time.perf_counter() - t0) - record["training"]["seconds"]
    record["training"]["sampled_from"] = (f"{runs} generations of world captions (held-out combinations included), "
                                          f"6, 10 or 20 steps, CFG {GUIDANCE[0]}-{GUIDANCE[1]}")
    save(decoder, record, folder)
