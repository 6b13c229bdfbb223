"""Cheap live previews: the predicted clean latent (x0) turned into RGB without the full VAE.

Following ComfyUI's latent previews: never run the VAE per step. A preview source, best first:
- a small learned decoder the model folder ships (the built-in model's preview_decoder.safetensors);
- diffusers' AutoencoderTiny (TAESD, TAESDXL, TAESD3, TAEF1) when its decoder weights are in the model
  library (a vae or vae_approx folder, named as ComfyUI names them: taesd_decoder.safetensors, …) and
  the model's VAE is of that latent family;
- one linear map plus bias: published data for the SD 1.x, SDXL, SD3 and FLUX families, and for any
  other VAE fitted once by least squares against the VAE's own decoder, cached by the VAE's weights hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# Source: ComfyUI comfy/latent_formats.py (classes SD15, SDXL, SD3, Flux; commit 040a3243), copied as published.
# Rows are latent channels, columns R, G, B. ComfyUI applies them to the sampler's x0, which lives in
# process_in space: latent * scale (SD15, SDXL) or (latent - shift) * scale (SD3, Flux); that is the
# space of a diffusers pipeline's `latents` too, so they apply to Studio's x0 unchanged.
SD15_FACTORS = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
                [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]]
SDXL_FACTORS = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068],
                [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]]
SDXL_BIAS = [0.1084, -0.0175, -0.0011]
SD3_FACTORS = [[-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458],
               [0.0856, 0.0339, 0.0902], [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309],
               [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358], [-0.0194, 0.0020, 0.0669],
               [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
               [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293],
               [-0.1448, -0.1463, -0.1189]]
SD3_BIAS = [0.2394, 0.2135, 0.1925]
FLUX_FACTORS = [[-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433],
                [-0.0174, 0.0160, 0.0617], [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115],
                [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259], [-0.0245, 0.0250, 0.1180],
                [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
                [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499],
                [-0.1262, -0.0982, -0.0778]]
FLUX_BIAS = [-0.0329, -0.0718, -0.0851]


@dataclass(frozen=True)
class _Family:
    channels: int
    scale: float  # the VAE config's scaling_factor
    shift: float  # the VAE config's shift_factor (0 where it has none)
    factors: list[list[float]]
    bias: list[float] | None


FAMILIES: dict[str, _Family] = {
    "sd15": _Family(4, 0.18215, 0.0, SD15_FACTORS, None),
    "sdxl": _Family(4, 0.13025, 0.0, SDXL_FACTORS, SDXL_BIAS),
    "sd3": _Family(16, 1.5305, 0.0609, SD3_FACTORS, SD3_BIAS),
    "flux": _Family(16, 0.3611, 0.1159, FLUX_FACTORS, FLUX_BIAS),
}
# Every one of these families uses the same 8x-downsampling autoencoder body; a VAE that merely
# shares diffusers' default scaling_factor (0.18215, the tiny test VAE's) is not of the family.
_FAMILY_BLOCKS = (128, 256, 512, 512)


class PreviewSource(Protocol):
    """What turns one x0 latent into preview RGB."""

    source: str  # where it came from: "fitted", a latent family, or a decoder file's name
    psnr: float | None  # preview vs full decode, where measured (dB)

    def to_rgb(self, latent: Any) -> np.ndarray:
        """(C, h, w) latent tensor in the pipeline's space -> uint8 (H, W, 3)."""
        ...


@dataclass
class LatentRGBMap:
    """rgb = latent_channels @ weight + bias, in [-1, 1]; latents in the UNet's (scaled) space."""

    weight: np.ndarray  # (C, 3)
    bias: np.ndarray  # (3,)
    source: str  # "fitted", or a FAMILIES key for a published map
    psnr: float | None = None  # preview vs full decode on the fit's own images (fitted maps only)

    def to_json(self) -> str:
        return json.dumps({"weight": self.weight.tolist(), "bias": self.bias.tolist(),
                           "source": self.source, "psnr": self.psnr})

    @classmethod
    def from_json(cls, text: str) -> LatentRGBMap:
        d = json.loads(text)
        return cls(np.asarray(d["weight"], np.float32), np.asarray(d["bias"], np.float32), d["source"], d["psnr"])

    def to_rgb(self, latent: Any) -> np.ndarray:
        """At latent resolution: the canvas scales it to the picture."""
        return latent_to_rgb(latent, self)


@dataclass
class DecoderPreview:
    """A small learned decoder (module: pipeline-space latents (N, C, h, w) -> RGB in [-1, 1] at full
    size), run in inference mode on the engine's device."""

    module: Any
    source: str
    psnr: float | None = None

    def to_rgb(self, latent: Any) -> np.ndarray:
        import torch

        weight = next(self.module.parameters())
        with torch.inference_mode():
            rgb = self.module(latent[None].to(weight.device, weight.dtype))[0].float()
        return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


LEARNED_WEIGHTS = "preview_decoder.safetensors"  # a model folder's own learned preview decoder
LEARNED_CONFIG = "preview_decoder.json"  # its {"architecture": learned_decoder's arguments, …}


def learned_decoder(latent_channels: int, factor: int, width: int) -> Any:
    """The learned preview decoder's layers (trained by studio/builtin/preview_decoder.py): conv, conv,
    then (2x nearest upsample, conv) until `factor` times the latent's size, and a conv to RGB in [-1, 1]."""
    from torch import nn

    layers: list[nn.Module] = [nn.Conv2d(latent_channels, width, 3, padding=1), nn.ReLU(),
                               nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
    for _ in range(int(math.log2(factor))):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
    layers.append(nn.Conv2d(width, 3, 3, padding=1))
    return nn.Sequential(*layers)


def load_learned_decoder(folder: Path) -> tuple[Any, dict[str, Any]] | None:
    """The learned decoder a model folder ships (float32, eval mode) and its config; None when it has none."""
    from safetensors.torch import load_file

    weights, config = folder / LEARNED_WEIGHTS, folder / LEARNED_CONFIG
    if not (weights.is_file() and config.is_file()):
        return None
    meta = json.loads(config.read_text())
    decoder = learned_decoder(**meta["architecture"])
    decoder.load_state_dict(load_file(str(weights)))
    return decoder.eval(), meta


# AutoencoderTiny decoder files by the latent family they decode, as madebyollin and ComfyUI name them
# (most specific prefix first: "taesd" is also the start of "taesdxl" and "taesd3").
TINY_PREFIXES = (("taesdxl", "sdxl"), ("taesd3", "sd3"), ("taef1", "flux"), ("taesd", "sd15"))
TINY_FOLDERS = ("vae_approx", "vae")  # ComfyUI keeps them in models/vae_approx
_TINY_SEARCH_DEPTH = 3  # a library folder may be ComfyUI itself, its models/ folder, or vae_approx itself


def tiny_family(name: str) -> str | None:
    """The latent family an AutoencoderTiny file decodes, from its name; None for other files (encoders
    included: a preview needs only the decoder)."""
    stem = name.lower()
    if "encoder" in stem or not stem.endswith((".safetensors", ".pth", ".pt", ".bin")):
        return None
    return next((family for prefix, family in TINY_PREFIXES if stem.startswith(prefix)), None)


def find_tiny_decoder(roots: list[Path], family: str) -> Path | None:
    """The first AutoencoderTiny decoder of `family` in a vae or vae_approx folder under `roots`."""
    def folders(folder: Path, depth: int) -> list[Path]:
        if folder.name.lower() in TINY_FOLDERS:
            return [folder]
        if depth >= _TINY_SEARCH_DEPTH:
            return []
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return []
        return [f for child in children for f in folders(child, depth + 1)]

    for root in roots:
        for folder in folders(root, 0):
            for path in sorted(folder.iterdir()):
                if path.is_file() and tiny_family(path.name) == family:
                    return path
    return None


def load_tiny_decoder(path: Path, family: str) -> Any:
    """AutoencoderTiny's decoder for `family`, built from its config and loaded from `path` offline:
    a diffusers file (keys decoder.layers.N…) or ComfyUI's / madebyollin's (keys N… after a Clamp at 0)."""
    import torch
    from diffusers import AutoencoderTiny
    from safetensors.torch import load_file

    state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu",
                                                                                  weights_only=True)
    if any(k.startswith("decoder.") for k in state):
        state = {k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")}
    else:
        state = {f"layers.{int(k.split('.', 1)[0]) - 1}.{k.split('.', 1)[1]}": v for k, v in state.items()}
    tiny: Any = AutoencoderTiny(latent_channels=FAMILIES[family].channels)  # untyped attributes
    decoder = tiny.decoder
    decoder.load_state_dict(state)
    return decoder.eval()


def choose_preview(vae: Any, scale: float, cache_dir: Path | None, own_folder: Path | None,
                   library_roots: list[Path], device: Any, dtype: Any) -> PreviewSource:
    """The best preview source for this VAE (see the module's docstring). `own_folder` is the model
    folder when its own VAE is in use (None after a VAE swap: its learned decoder would not match)."""
    learned = load_learned_decoder(own_folder) if own_folder is not None and own_folder.is_dir() else None
    if learned is not None:
        module, meta = learned
        return DecoderPreview(module.to(device, dtype), LEARNED_WEIGHTS, meta.get("psnr_held_out_db"))
    family = family_for(dict(vae.config))
    if family is not None and math.isclose(float(scale), FAMILIES[family].scale, rel_tol=1e-4):
        path = find_tiny_decoder(library_roots, family)
        if path is not None:
            import pickle

            from safetensors import SafetensorError

            try:
                return DecoderPreview(load_tiny_decoder(path, family).to(device, dtype), path.name)
            except (OSError, RuntimeError, ValueError, KeyError, IndexError, SafetensorError, pickle.UnpicklingError):
                pass  # a damaged or foreign file: the published map still gives a preview
    return choose_map(vae, scale, cache_dir)


def published_map(family: str) -> LatentRGBMap:
    """ComfyUI's map for a latent family ("sd15", "sdxl", "sd3", "flux"); raises KeyError otherwise."""
    f = FAMILIES[family]
    bias = np.asarray(f.bias, np.float32) if f.bias is not None else np.zeros(3, np.float32)
    return LatentRGBMap(np.asarray(f.factors, np.float32), bias, family)


def family_for(vae_config: dict[str, Any]) -> str | None:
    """The published latent family whose space this VAE's (scaled, shifted) latents are in, or None."""
    cfg = dict(vae_config)
    if cfg.get("latents_mean") is not None or cfg.get("latents_std") is not None:
        return None  # per-channel normalisation (Playground v2.5 style): another space
    if tuple(cfg.get("block_out_channels") or ()) != _FAMILY_BLOCKS:
        return None
    channels = int(cfg.get("latent_channels", 4))
    scale = cfg.get("scaling_factor")
    shift = float(cfg.get("shift_factor") or 0.0)
    if scale is None:
        return None
    for name, f in FAMILIES.items():
        if (channels == f.channels and math.isclose(float(scale), f.scale, rel_tol=1e-4)
                and math.isclose(shift, f.shift, abs_tol=1e-4)):
            return name
    return None


def _shift(vae: Any) -> float:
    return float(getattr(vae.config, "shift_factor", None) or 0.0)


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


def _encode(vae: Any, scale: float, pixels: np.ndarray) -> Any:
    """(N, H, W, 3) images in [-1, 1] -> latents in the pipeline's space, (mean - shift) * scale."""
    import torch

    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(device, dtype)
    with torch.no_grad():
        return (vae.encode(x).latent_dist.mean - _shift(vae)) * scale


def _decode_pooled(vae: Any, scale: float, latents: Any) -> Any:
    """Full VAE decode of pipeline-space latents, clamped and avg-pooled to latent resolution (float32)."""
    import torch

    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    with torch.no_grad():
        decoded = vae.decode(latents.to(device, dtype) / scale + _shift(vae)).sample.float().clamp(-1, 1)
    return torch.nn.functional.avg_pool2d(decoded, decoded.shape[-1] // latents.shape[-1])


def fit_map(vae: Any, scale: float, n: int = 8, size: int = 64) -> LatentRGBMap:
    """Least-squares map from pipeline-space latents to the VAE decoder's RGB, pooled to latent resolution.

    `psnr` is measured by preview_psnr on n // 2 images the fit did not see.
    """
    latents = _encode(vae, scale, _fit_images(n, size))
    target = _decode_pooled(vae, scale, latents)
    x = latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).cpu().numpy()
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).cpu().numpy()
    design = np.concatenate([x, np.ones((len(x), 1), np.float32)], axis=1)
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = LatentRGBMap(solution[:-1].astype(np.float32), solution[-1].astype(np.float32), "fitted")
    fitted.psnr = preview_psnr(vae, scale, fitted, _encode(vae, scale, _fit_images(max(1, n // 2), size, seed=1)))
    return fitted


def preview_psnr(vae: Any, scale: float, rgb_map: LatentRGBMap, latents: Any) -> float:
    """PSNR (dB, 8-bit) of latent_to_rgb against the full VAE decode of `latents` (N, C, h, w, pipeline
    space), the decode avg-pooled to latent resolution: what the preview shows vs what it stands for."""
    import torch

    target = _decode_pooled(vae, scale, latents)
    truth = ((target + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    shown = np.stack([latent_to_rgb(latents[k], rgb_map) for k in range(latents.shape[0])])
    mse = float(np.mean((shown.astype(np.float64) - truth.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))


def _cache_key(vae: Any, scale: float) -> str:
    # The map depends on the latent space too: the same VAE under another scaling_factor is another map.
    space = hashlib.sha256(f"{float(scale)!r}:{_shift(vae)!r}".encode()).hexdigest()[:6]
    return f"{vae_hash(vae)}-{space}"


def map_for_vae(vae: Any, scale: float, cache_dir: Path | None) -> LatentRGBMap:
    """The fitted map for this VAE, from the cache when it has been fitted before."""
    path = cache_dir / f"preview-map-{_cache_key(vae, scale)}.json" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            cached = LatentRGBMap.from_json(path.read_text())
            if cached.weight.shape == (int(vae.config.latent_channels), 3) and cached.bias.shape == (3,):
                return cached
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is simply refitted
    fitted = fit_map(vae, scale)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fitted.to_json())
        except OSError:
            pass  # a read-only or full data folder: the map is right, just fitted again next time
    return fitted


def choose_map(vae: Any, scale: float, cache_dir: Path | None) -> LatentRGBMap:
    """The preview map for this VAE: ComfyUI's published one when the VAE is of a known family and the
    pipeline scales its latents as that family does, otherwise a fitted (and cached) one.

    The published maps were fitted on real photographs; a fit here would only see synthetic colour
    fields, and compared on those same images it would always win (least squares), so there is no
    fair in-process contest: a known family simply gets its published map, at no load-time cost.
    """
    family = family_for(dict(vae.config))
    if family is not None and math.isclose(float(scale), FAMILIES[family].scale, rel_tol=1e-4):
        return published_map(family)
    return map_for_vae(vae, scale, cache_dir)


def latent_to_rgb(latent: Any, rgb_map: LatentRGBMap) -> np.ndarray:
    """(C, h, w) latent tensor -> uint8 (h, w, 3). Runs on the latent's device; only h*w*3 bytes move."""
    import torch

    weight = torch.as_tensor(rgb_map.weight, device=latent.device, dtype=torch.float32)
    bias = torch.as_tensor(rgb_map.bias, device=latent.device, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent.float(), weight) + bias
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
