"""Memory presets: how much of a model stays on the GPU, from "all of it" to "one layer at a time".

`auto` picks from the model's size and the device's memory, so an SDXL checkpoint runs on an 8 GB card
without the designer knowing what offloading is; the other presets force a choice. Every plan says
in words what it did (the GUI's status bar and `studio generate` show it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from studio.recipe.errors import StudioError

GIB = 1024**3


class MemoryPreset(str, Enum):
    AUTO = "auto"
    HIGH = "high"        # everything on the device: fastest
    LOW = "low"          # model CPU offload (one component on the GPU at a time), attention slicing, VAE tiling
    LOWEST = "lowest"    # sequential CPU offload (layer by layer), slicing, tiling: slowest, smallest


@dataclass(frozen=True)
class MemoryPlan:
    preset: MemoryPreset  # never AUTO: what auto chose
    chosen_by_auto: bool = False
    fp8: bool = False  # a flow transformer's weights stored in fp8, widened layer by layer as it runs

    @property
    def attention_slicing(self) -> bool:
        return self.preset is not MemoryPreset.HIGH

    @property
    def vae_tiling(self) -> bool:
        return self.preset is not MemoryPreset.HIGH

    def describe(self) -> str:
        text = {MemoryPreset.HIGH: "all on the device",
                MemoryPreset.LOW: "model CPU offload, sliced attention, tiled VAE",
                MemoryPreset.LOWEST: "sequential CPU offload, sliced attention, tiled VAE"}[self.preset]
        if self.fp8:
            text += ", transformer weights in fp8"
        return f"memory {self.preset.value}{' (auto)' if self.chosen_by_auto else ''}: {text}"


class OutOfMemory(StudioError):
    """A run ran out of device memory; the message says what to change. The memory is already freed."""


_LOWER = {MemoryPreset.HIGH: MemoryPreset.LOW, MemoryPreset.LOW: MemoryPreset.LOWEST}


def out_of_memory_message(memory: MemoryPlan, device_type: str, width: int, height: int, batch: int) -> str:
    """What ran out and what to try: on a GPU the next lower preset, then a smaller size or batch."""
    what = f"{width}x{height}" + (f", batch of {batch}" if batch > 1 else "")
    if device_type == "cpu":  # presets only move weights between the GPU and the CPU
        return f"the computer ran out of memory making {what}: try a smaller size or batch, or close other programs"
    lower = _LOWER.get(memory.preset)
    if lower is None:
        return (f"the GPU ran out of memory making {what} even with the lowest memory preset: "
                "try a smaller size or batch")
    return (f"the GPU ran out of memory making {what} with memory {memory.preset.value}: choose the "
            f"{lower.value} memory preset (Model > Memory > {lower.value.capitalize()} in the window, --memory "
            f"{lower.value} on the command line), or a smaller size or batch")


def free_device_memory() -> None:
    """Give memory a failed run held back: Python's cycles first, then CUDA's cached blocks."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    # torch.OutOfMemoryError (CUDA) is a RuntimeError; MPS and the CPU allocator say it in words.
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or "out of memory" in str(exc).lower())


def plan(preset: MemoryPreset | str, device: Any, model_bytes: int, device_bytes: int | None = None,
         transformer_bytes: int = 0) -> MemoryPlan:
    """The plan for `preset`; for auto, HIGH when the model and its working memory fit the device; for a
    flow model (FLUX, SD 3: `transformer_bytes` > 0) HIGH with its transformer stored in fp8 when that fits
    (half its bf16 size, as Forge and ComfyUI offer); LOW when its largest part does, LOWEST otherwise.
    Off CUDA there is nothing to offload to: HIGH."""
    preset = MemoryPreset(preset)
    if preset is not MemoryPreset.AUTO:
        return MemoryPlan(preset)
    if getattr(device, "type", "cpu") != "cuda":
        return MemoryPlan(MemoryPreset.HIGH, chosen_by_auto=True)
    if device_bytes is None:
        import torch

        device_bytes = int(torch.cuda.get_device_properties(device).total_memory)
    working = 2 * GIB + model_bytes // 4  # activations, VAE decode and the CUDA context
    if model_bytes + working <= device_bytes:
        return MemoryPlan(MemoryPreset.HIGH, chosen_by_auto=True)
    if transformer_bytes and model_bytes - transformer_bytes // 2 + working <= device_bytes:
        return MemoryPlan(MemoryPreset.HIGH, chosen_by_auto=True, fp8=True)
    if model_bytes * 0.6 + working <= device_bytes:  # the UNet is about 60 % of an SD/SDXL model
        return MemoryPlan(MemoryPreset.LOW, chosen_by_auto=True)
    return MemoryPlan(MemoryPreset.LOWEST, chosen_by_auto=True)


def transformer_bytes(pipe: Any) -> int:
    """A flow model's transformer size (0 for UNet models, which fp8 storage is not offered for)."""
    transformer = getattr(pipe, "transformer", None)
    return sum(p.numel() * p.element_size() for p in transformer.parameters()) if transformer is not None else 0


def model_bytes(pipe: Any) -> int:
    parts = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
    return sum(p.numel() * p.element_size() for name in parts
               if getattr(pipe, name, None) is not None for p in getattr(pipe, name).parameters())


def apply(pipe: Any, device: Any, memory: MemoryPlan) -> None:
    offload = device.type == "cuda" and memory.preset is not MemoryPreset.HIGH
    if offload and memory.preset is MemoryPreset.LOWEST:
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if memory.attention_slicing:
        pipe.enable_attention_slicing()
    if memory.vae_tiling:
        pipe.vae.enable_tiling()
    if memory.fp8:
        import torch

        pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn,
                                                  compute_dtype=pipe.transformer.dtype)
