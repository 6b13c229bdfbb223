"""Cheap live previews: the predicted clean latent (x0) mapped to RGB by one linear map plus bias.

Following ComfyUI's latent previews: never run the VAE per step. The map for the SD 1.x and SDXL
latent families is published data; for any other VAE (the built-in model's included) it is fitted
once by least squares against the VAE's own decoder and cached by the VAE's weights hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# ComfyUI comfy/latent_formats.py (SD15, SDXL): rows are latent channels, columns R, G, B.
SD15_FACTORS = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
                [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]]
SDXL_FACTORS = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068],
                [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]]
SDXL_BIAS = [0.1084, -0.0175, -0.0011]


@dataclass
class LatentRGBMap:
    """rgb = latent_channels @ weight + bias, in [-1, 1]; latents in the UNet's (scaled) space."""

    weight: np.ndarray  # (C, 3)
    bias: np.ndarray  # (3,)
    source: str  # "fitted", "sd15", "sdxl"
    psnr: float | None = None  # preview vs full decode on the fit's own images

    def to_json(self) -> str:
        return json.dumps({"weight": self.weight.tolist(), "bias": self.bias.tolist(),
                           "source": self.source, "psnr": self.psnr})

    @classmethod
    def from_json(cls, text: str) -> LatentRGBMap:
        d = json.loads(text)
        return cls(np.asarray(d["weight"], np.float32), np.asarray(d["bias"], np.float32), d["source"], d["psnr"])


def published_map(family: str) -> LatentRGBMap:
    if family == "sdxl":
        return LatentRGBMap(np.asarray(SDXL_FACTORS, np.float32), np.asarray(SDXL_BIAS, np.float32), "sdxl")
    return LatentRGBMap(np.asarray(SD15_FACTORS, np.float32), np.zeros(3, np.float32), "sd15")


def vae_hash(vae: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes()[:4096])
    return digest.hexdigest()[:16]


def _fit_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields with hard-edged blocks: varied colours, like real pictures."""
    rng = np.random.default_rng(seed)
    from PIL import Image

    out = []
    for _ in range(n):
        coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), np.float32)
        for _ in range(3):
            x, y, w, h = rng.integers(0, size, 4)
            img[y:y + h // 2 + 4, x:x + w // 2 + 4] = rng.uniform(0, 255, 3)
        out.append(img)
    return np.stack(out) / 127.5 - 1.0


def fit_map(vae: Any, scale: float, n: int = 8, size: int = 64) -> LatentRGBMap:
    """Least-squares map from scaled latents to the VAE decoder's RGB, pooled to latent resolution."""
    import torch

    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    pixels = torch.from_numpy(_fit_images(n, size)).permute(0, 3, 1, 2).to(device, dtype)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean * scale
        decoded = vae.decode(latents / scale).sample.float().clamp(-1, 1)
    factor = size // latents.shape[-1]
    target = torch.nn.functional.avg_pool2d(decoded, factor)
    x = latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).cpu().numpy()
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).cpu().numpy()
    design = np.concatenate([x, np.ones((len(x), 1), np.float32)], axis=1)
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    mse = float(np.mean((design @ solution - y) ** 2))
    psnr = 10 * math.log10(4.0 / max(mse, 1e-12))
    return LatentRGBMap(solution[:-1].astype(np.float32), solution[-1].astype(np.float32), "fitted", psnr)


def map_for_vae(vae: Any, scale: float, cache_dir: Path | None) -> LatentRGBMap:
    """The fitted map for this VAE, from the cache when it has been fitted before."""
    key = vae_hash(vae)
    path = cache_dir / f"preview-map-{key}.json" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            return LatentRGBMap.from_json(path.read_text())
        except (ValueError, KeyError):
            pass  # a damaged cache entry is simply refitted
    fitted = fit_map(vae, scale)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fitted.to_json())
    return fitted


def latent_to_rgb(latent: Any, rgb_map: LatentRGBMap) -> np.ndarray:
    """(C, h, w) latent tensor -> uint8 (h, w, 3). Runs on the latent's device; only h*w*3 bytes move."""
    import torch

    weight = torch.as_tensor(rgb_map.weight, device=latent.device, dtype=torch.float32)
    bias = torch.as_tensor(rgb_map.bias, device=latent.device, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent.float(), weight) + bias
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
