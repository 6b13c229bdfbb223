"""Tiny random FLUX and SD 3 pipelines, from the same components the single-file writer uses
(`studio.bench.flow_checkpoint_files`): saved as diffusers folders, or kept as the reference a loaded
single file must equal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.bench import flow_checkpoint_files as files
from studio.engine.checkpoints import clip_tokenizer
from studio.resources import CONFIGS


def _t5_tokenizer() -> Any:
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(CONFIGS / "t5-tokenizer"))


def _scheduler(family: str) -> Any:
    import json

    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(
        json.loads((CONFIGS / family / "scheduler" / "scheduler_config.json").read_text()))


def flux_pipeline(parts: dict[str, Any], fill: bool = False) -> Any:
    from diffusers import FluxFillPipeline, FluxPipeline

    scheduler = _scheduler("flux" if parts["transformer"].config.guidance_embeds else "flux-schnell")
    return (FluxFillPipeline if fill else FluxPipeline)(
        scheduler=scheduler, vae=parts["vae"], transformer=parts["transformer"], text_encoder=parts["clip_l"],
        tokenizer=clip_tokenizer("<|endoftext|>"), text_encoder_2=parts["t5"], tokenizer_2=_t5_tokenizer())


def sd3_pipeline(parts: dict[str, Any]) -> Any:
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline(
        transformer=parts["transformer"], scheduler=_scheduler("sd3"), vae=parts["vae"], text_encoder=parts["clip_l"],
        tokenizer=clip_tokenizer("<|endoftext|>"), text_encoder_2=parts["clip_g"], tokenizer_2=clip_tokenizer("!"),
        text_encoder_3=parts["t5"], tokenizer_3=_t5_tokenizer())


def build_flux(folder: Path, seed: int = 0) -> Path:
    flux_pipeline(files.flux_components(files.flux_configs(), seed)).save_pretrained(folder, safe_serialization=True)
    return folder


def build_sd3(folder: Path, seed: int = 0) -> Path:
    sd3_pipeline(files.sd3_components(files.sd3_configs(), seed)).save_pretrained(folder, safe_serialization=True)
    return folder
