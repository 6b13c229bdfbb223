"""Upscalers: Lanczos, and the user's ESRGAN-family files run tile by tile so that any size fits.

A file (`.pth`, `.pt`, `.ckpt`, `.safetensors` from A1111's `models/ESRGAN` or ComfyUI's
`models/upscale_models`) is read as plain weights (safetensors, or torch's weights-only unpickler;
a pickle that needs code is refused) and handed to spandrel, which tells the architecture from the
keys and shapes and builds it. The picture then goes through the network in overlapping tiles whose
size follows the memory at hand; overlaps are cross-faded over their middle half, where both tiles
see enough context, so seams do not show. No Qt here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from studio.recipe.errors import ModelError

LANCZOS = "Lanczos"  # always there; named as A1111 names it in "Hires upscaler: Lanczos"
OVERLAP = 32  # input px two neighbouring tiles share; ESRGAN's 23 blocks see ~20 px around a pixel
MIN_TILE, MAX_TILE = 64, 1024
# Peak bytes per input pixel of a tile, per unit of (feature width x scale^2 x dtype bytes): the
# upsampling convolutions hold a few feature maps at the output size at once (bench upscale measures it).
ACTIVATION_FACTOR = 4.0
ProgressCallback = Callable[[int, int], None]  # tiles done, tiles in all
StopCheck = Callable[[], bool]


class UpscaleCancelled(Exception):
    """The caller asked to stop between tiles."""


@dataclass
class UpscaleModel:
    """A loaded upscaler network (a spandrel ImageModelDescriptor) and what it is called."""

    name: str
    path: Path
    descriptor: Any

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def device(self) -> Any:
        return self.descriptor.device

    def feature_width(self) -> int:
        """The widest convolution: what sizes the activations (64 for ESRGAN, 96 for some SwinIR)."""
        import torch

        widths = [m.out_channels for m in self.descriptor.model.modules() if isinstance(m, torch.nn.Conv2d)]
        return max(widths, default=64)


# ---------------------------------------------------------------------------------- loading

def read_weights(path: Path) -> dict[str, Any]:
    """The file's tensors without running any code from it."""
    from studio.engine.checkpoints import load_pickle_weights_only

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types on damage
            raise ModelError(f"{path.name} is not a readable safetensors file ({str(exc)[:120]})") from exc
    if path.suffix.lower() in (".pth", ".pt", ".ckpt", ".bin"):
        state = load_pickle_weights_only(path)
        # Real-ESRGAN's releases wrap the weights as {"params_ema": ...} or {"params": ...}.
        for key in ("params_ema", "params"):
            if isinstance(state.get(key), dict):
                return state[key]
        return state
    raise ModelError(f"{path.name}: an upscaler must be a .pth, .pt, .ckpt or .safetensors file")


def load_model(path: Path, device: str | Any = "cpu") -> UpscaleModel:
    """Build the upscaler a file holds (architecture detected by spandrel), on `device`, ready to run."""
    import torch
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError, canonicalize_state_dict

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no upscaler file at {path}")
    state = canonicalize_state_dict(read_weights(path))
    try:
        descriptor = ModelLoader(device="cpu").load_from_state_dict(state)
    except UnsupportedModelError as exc:
        raise ModelError(f"{path.name} is not an upscaler architecture spandrel knows "
                         "(ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...)") from exc
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path.name}: its weights do not fit the architecture they look like "
                         f"({str(exc).splitlines()[0][:120]})") from exc
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.input_channels != 3:
        raise ModelError(f"{path.name} is not an RGB image upscaler (it is a {descriptor.architecture.name} "
                         f"model for {descriptor.purpose})")
    descriptor.to(torch.device(device)).eval()
    if descriptor.device.type == "cuda" and descriptor.supports_half:
        descriptor.half()  # half the memory and about twice the speed; ESRGAN was trained to tolerate it
    return UpscaleModel(path.stem, path, descriptor)


class UpscalerCache:
    """The last upscaler used, kept loaded: a hires-fix batch or a grid uses the same one again and again."""

    def __init__(self) -> None:
        self._model: UpscaleModel | None = None

    def get(self, path: Path, device: str | Any) -> UpscaleModel:
        import torch

        wanted = torch.device(device)
        current = self._model
        if current is None or current.path != path or current.device.type != wanted.type:
            self._model = current = None  # free the old one first
            self._model = current = load_model(path, wanted)
        return current


# ---------------------------------------------------------------------------------- tiling

def auto_tile(model: UpscaleModel, free_bytes: int | None = None) -> int:
    """The largest square tile (input px, a multiple of 32) whose activations fit in a fraction of the
    free memory of the model's device; between MIN_TILE and MAX_TILE."""
    if free_bytes is None:
        free_bytes = free_memory(model.device)
    dtype_bytes = 2 if model.descriptor.dtype in _half_dtypes() else 4
    per_pixel = ACTIVATION_FACTOR * model.feature_width() * model.scale ** 2 * dtype_bytes
    side = int(math.sqrt(max(free_bytes, 0) / per_pixel)) // 32 * 32
    return max(MIN_TILE, min(MAX_TILE, side))


def free_memory(device: Any) -> int:
    """Bytes a tile may use: half the GPU's free memory, or a quarter of the free RAM on a CPU
    (the picture, its upscaled copy and the blend buffers live in RAM too)."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        import psutil

        return int(psutil.virtual_memory().available) // 4
    except ImportError:  # psutil comes with accelerate; without it assume a modest machine
        return 2 << 30


def _half_dtypes() -> tuple[Any, ...]:
    import torch

    return (torch.float16, torch.bfloat16)


def tile_layout(length: int, max_tile: int, overlap: int) -> tuple[int, list[int]]:
    """The tile side and where tiles start along one side: as few tiles as fit with `overlap`, made just
    large enough to cover it (1024 px at most 512 a tile: three of 363, not three of 512) and evenly spaced."""
    if length <= max_tile:
        return length, [0]
    count = math.ceil((length - overlap) / (max_tile - overlap))
    tile = min(max_tile, math.ceil((length + (count - 1) * overlap) / count))
    step = (length - tile) / (count - 1)
    return tile, [round(k * step) for k in range(count)]


def ramp(size: int, before: int, after: int, margin: int) -> np.ndarray:
    """1-D weights of a tile side: 0 for `margin` px at a shared edge, then rising linearly to 1 over the
    middle of the overlap. Two neighbours' weights sum to 1 wherever they overlap (a partition of unity)."""
    weights = np.ones(size, dtype=np.float32)
    pos = np.arange(size, dtype=np.float32) + 0.5
    if before:
        weights *= np.clip((pos - margin) / max(before - 2 * margin, 1), 0.0, 1.0)
    if after:
        weights *= np.clip((size - pos - margin) / max(after - 2 * margin, 1), 0.0, 1.0)
    return weights


def run_tiled(image: Image.Image, model: UpscaleModel, tile: int | None = None, overlap: int = OVERLAP,
              on_progress: ProgressCallback | None = None, should_stop: StopCheck | None = None) -> Image.Image:
    """One pass of the network over `image` (x model.scale), in overlapping tiles cross-faded together.
    `tile` None picks the size from the free memory; a tile as large as the picture runs it whole."""
    import torch

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    height, width = rgb.shape[:2]
    tile = tile or auto_tile(model)
    overlap = min(overlap, tile // 2)
    scale = model.scale
    tile_w, xs = tile_layout(width, tile, overlap)
    tile_h, ys = tile_layout(height, tile, overlap)
    out = np.zeros((height * scale, width * scale, 3), dtype=np.float32)
    total_weight = np.zeros((height * scale, width * scale, 1), dtype=np.float32)
    descriptor = model.descriptor
    count, done = len(xs) * len(ys), 0
    for y0 in ys:
        for x0 in xs:
            if should_stop is not None and should_stop():
                raise UpscaleCancelled()
            x1, y1 = x0 + tile_w, y0 + tile_h
            patch = torch.from_numpy(np.ascontiguousarray(rgb[y0:y1, x0:x1].transpose(2, 0, 1)))[None]
            with torch.inference_mode():
                result = descriptor(patch.to(descriptor.device, descriptor.dtype))
            pixels = result[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            # The ramps are in output px: the overlap on each shared side, its outer quarter ignored.
            o, m = overlap * scale, overlap * scale // 4
            wy = ramp(pixels.shape[0], o if y0 > 0 else 0, o if y1 < height else 0, m)
            wx = ramp(pixels.shape[1], o if x0 > 0 else 0, o if x1 < width else 0, m)
            weight = (wy[:, None] * wx[None, :])[:, :, None]
            oy, ox = y0 * scale, x0 * scale
            out[oy:oy + pixels.shape[0], ox:ox + pixels.shape[1]] += pixels * weight
            total_weight[oy:oy + pixels.shape[0], ox:ox + pixels.shape[1]] += weight
            done += 1
            if on_progress is not None:
                on_progress(done, count)
    out /= np.maximum(total_weight, 1e-8)
    return Image.fromarray(np.rint(out * 255.0).astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------------- the one entry point

def upscale(image: Image.Image, size: tuple[int, int], model: UpscaleModel | None = None,
            tile: int | None = None, on_progress: ProgressCallback | None = None,
            should_stop: StopCheck | None = None) -> Image.Image:
    """`image` brought to `size`: Lanczos alone, or the model's passes (as many as it takes to reach the
    size, as A1111 does) and then Lanczos to the exact size."""
    current = image.convert("RGB")
    if model is not None:
        passes = 0
        while current.width < size[0] or current.height < size[1]:
            current = run_tiled(current, model, tile, on_progress=on_progress, should_stop=should_stop)
            passes += 1
            if passes >= 4:  # 4x4x4x4 = 256x: nothing asks for more; stop a runaway loop
                break
    if current.size != tuple(size):
        current = current.resize(size, Image.Resampling.LANCZOS)
    return current


def target_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """A1111's rule: int(side * scale)."""
    return int(size[0] * scale), int(size[1] * scale)
