"""`python -m studio.bench gpu [--arch sd15,sdxl] [--sizes 512,1024] [--steps 30] [--compile] [--json]`

The engine against raw diffusers on a CUDA GPU, on full-size SD 1.5- and SDXL-architecture pipelines
with random weights: the published configs are written out below as dicts (UNet2DConditionModel,
AutoencoderKL, CLIP text encoders) and the tokenizers are built locally over a small word list, so
nothing is downloaded. fp16, SDPA attention, channels-last UNet/VAE, optional torch.compile of the
UNet. Each (architecture, size) gets: engine (previews on), engine (previews off) and raw
`pipe(...)` on the same pipeline, same scheduler, same initial latents, interleaved, medians.

it/s here is end to end: steps / seconds of the whole call (text encoding and VAE decode included).
`--scale N` divides every channel count by N (1, 2, 4, ..., 64) so the builder can be exercised on
a CPU at a tiny size (`--device cpu`); figures from a scaled model say nothing about real models.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from studio.bench import report

PROMPT = "a large red circle in the center, blue background"
SEED = 1234
WORDS = ["a", "large", "small", "red", "blue", "green", "circle", "square", "in", "the", "center", "left", "right",
         "background", "landscape", "with", "and", ",", "photo", "of", "cat"]

# ---------------------------------------------------------------------- published configs
# runwayml/stable-diffusion-v1-5: unet/config.json, vae/config.json, text_encoder/config.json
SD15_UNET: dict[str, Any] = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE: dict[str, Any] = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 512, "up_block_types": ["UpDecoderBlock2D"] * 4, "scaling_factor": 0.18215,
}
CLIP_L_TEXT: dict[str, Any] = {  # openai/clip-vit-large-patch14 text tower (SD 1.5, and SDXL's first encoder)
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
    "num_hidden_layers": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768,
    "layer_norm_eps": 1e-05,
}
SD15_SCHEDULER: dict[str, Any] = {  # PNDMScheduler in the original; the engine builds its own from this
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False,
}

# stabilityai/stable-diffusion-xl-base-1.0
SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
    "center_input_sample": False, "class_embed_type": None, "class_embeddings_concat": False, "conv_in_kernel": 3,
    "conv_out_kernel": 3, "cross_attention_dim": 2048, "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
    "dual_cross_attention": False, "encoder_hid_dim": None, "encoder_hid_dim_type": None, "flip_sin_to_cos": True,
    "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05,
    "norm_num_groups": 32, "num_attention_heads": None, "num_class_embeds": None, "only_cross_attention": False,
    "out_channels": 4, "projection_class_embeddings_input_dim": 2816, "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False, "resnet_time_scale_shift": "default", "sample_size": 128,
    "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
    "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "upcast_attention": None,
    "use_linear_projection": True,
}
SDXL_VAE: dict[str, Any] = {**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
CLIP_BIGG_TEXT: dict[str, Any] = {  # laion CLIP-ViT-bigG-14 text tower with projection (SDXL's second encoder)
    "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20,
    "num_hidden_layers": 32, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 1280,
    "layer_norm_eps": 1e-05,
}
SDXL_SCHEDULER: dict[str, Any] = {  # EulerDiscreteScheduler in the original
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "steps_offset": 1, "timestep_spacing": "leading", "interpolation_type": "linear", "prediction_type": "epsilon",
    "use_karras_sigmas": False,
}

ARCHS = ("sd15", "sdxl")
NATIVE = {"sd15": 512, "sdxl": 1024}


# ---------------------------------------------------------------------- scaling (for CPU tests)

def _divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n that is at most `limit` (at least 1)."""
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def _div(value: int, scale: int, what: str) -> int:
    if value % scale:
        raise ValueError(f"--scale {scale} does not divide {what} ({value}); use 1, 2, 4, 8, 16, 32 or 64")
    return value // scale


def scale_unet(config: dict[str, Any], scale: int, text_dims: list[int], pooled_dim: int | None) -> dict[str, Any]:
    """The UNet config with channel counts divided by `scale`; heads and groups reduced to fit."""
    c = dict(config)
    if scale == 1:
        return c
    channels = [_div(v, scale, "block_out_channels") for v in config["block_out_channels"]]
    c["block_out_channels"] = channels
    c["norm_num_groups"] = _divisor_at_most(math.gcd(*channels), config["norm_num_groups"])
    heads = config["attention_head_dim"]  # diffusers reads this as the number of heads for these UNets
    heads = heads if isinstance(heads, list) else [heads] * len(channels)
    c["attention_head_dim"] = [_divisor_at_most(ch, h) for ch, h in zip(channels, heads)]
    c["cross_attention_dim"] = sum(text_dims)
    if config.get("addition_embed_type") == "text_time":
        c["addition_time_embed_dim"] = _div(config["addition_time_embed_dim"], scale, "addition_time_embed_dim")
        c["projection_class_embeddings_input_dim"] = 6 * c["addition_time_embed_dim"] + int(pooled_dim or 0)
    return c


def scale_vae(config: dict[str, Any], scale: int) -> dict[str, Any]:
    c = dict(config)
    if scale == 1:
        return c
    channels = [_div(v, scale, "VAE block_out_channels") for v in config["block_out_channels"]]
    c["block_out_channels"] = channels
    c["norm_num_groups"] = _divisor_at_most(math.gcd(*channels), config["norm_num_groups"])
    return c


def scale_text(config: dict[str, Any], scale: int) -> dict[str, Any]:
    c = dict(config)
    if scale == 1:
        return c
    c["hidden_size"] = _div(config["hidden_size"], scale, "text hidden_size")
    c["intermediate_size"] = _div(config["intermediate_size"], scale, "text intermediate_size")
    c["projection_dim"] = _div(config["projection_dim"], scale, "text projection_dim")
    c["num_attention_heads"] = _divisor_at_most(c["hidden_size"], config["num_attention_heads"])
    return c


def configs(arch: str, scale: int = 1) -> dict[str, dict[str, Any]]:
    """The component configs of `arch` at `scale` (1: exactly the published ones)."""
    if arch == "sd15":
        text = scale_text(CLIP_L_TEXT, scale)
        return {"unet": scale_unet(SD15_UNET, scale, [text["hidden_size"]], None), "vae": scale_vae(SD15_VAE, scale),
                "text_encoder": text, "scheduler": dict(SD15_SCHEDULER)}
    if arch == "sdxl":
        text, text2 = scale_text(CLIP_L_TEXT, scale), scale_text(CLIP_BIGG_TEXT, scale)
        unet = scale_unet(SDXL_UNET, scale, [text["hidden_size"], text2["hidden_size"]], text2["projection_dim"])
        return {"unet": unet, "vae": scale_vae(SDXL_VAE, scale), "text_encoder": text, "text_encoder_2": text2,
                "scheduler": dict(SDXL_SCHEDULER)}
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")


# ---------------------------------------------------------------------- building

def _tokenizer(max_length: int) -> Any:
    from transformers import CLIPTokenizer

    from studio.builtin.tokenizer import write_tokenizer

    with tempfile.TemporaryDirectory(prefix="studio-bench-tok-") as folder:
        write_tokenizer(Path(folder), WORDS, max_length=max_length)
        return CLIPTokenizer.from_pretrained(folder)


def _text_config(config: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(**config, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)


def build_pipeline(arch: str, scale: int = 1, device: str = "cpu", dtype: Any = None, seed: int = 0) -> Any:
    """A StableDiffusionPipeline / StableDiffusionXLPipeline with random weights, on `device` in `dtype`.

    The weights are created on the device itself (fast on a GPU), in float32, then cast.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    import studio.engine.models  # noqa: F401  (quiet, offline diffusers: sets its environment first)

    cfg = configs(arch, scale)
    tokenizer = _tokenizer(cfg["text_encoder"]["max_position_embeddings"])
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
        text = CLIPTextModel(_text_config(cfg["text_encoder"], tokenizer))
        if arch == "sdxl":
            text2 = CLIPTextModelWithProjection(_text_config(cfg["text_encoder_2"], tokenizer))
    if arch == "sd15":
        pipe = StableDiffusionPipeline(vae=vae, unet=unet, text_encoder=text, tokenizer=tokenizer,
                                       scheduler=PNDMScheduler.from_config(cfg["scheduler"]),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text2, tokenizer=tokenizer,
                                         tokenizer_2=tokenizer, unet=unet,
                                         scheduler=EulerDiscreteScheduler.from_config(cfg["scheduler"]),
                                         add_watermarker=False)
    pipe.to(torch.device(device))
    if dtype is not None and dtype != torch.float32:
        pipe.to(dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def optimise(pipe: Any, channels_last: bool = True, compile_unet: bool = False,
             compile_mode: str = "default") -> dict[str, Any]:
    """SDPA attention everywhere, channels-last UNet and VAE, optionally a compiled UNet."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if compile_unet:
        pipe.unet = torch.compile(pipe.unet, mode=compile_mode, fullgraph=False)
    return {"attention": "sdpa", "channels_last": channels_last, "compiled": compile_unet}


def engine_for(pipe: Any, arch: str, device: Any, dtype: Any) -> Any:
    """An Engine holding `pipe` as its loaded model (no disk round trip), with the published preview map."""
    from studio.engine import Engine
    from studio.engine.models import LoadedModel, ModelEntry
    from studio.engine.preview import published_map

    name = f"random-{arch}"
    engine = Engine(device=device.type)
    entry = ModelEntry(name, Path(name), "diffusers")
    engine.model = LoadedModel(entry, pipe, device, dtype, "random", dict(pipe.scheduler.config))
    engine.rgb_map = published_map("sdxl" if arch == "sdxl" else "sd15")
    return engine


# ---------------------------------------------------------------------- measuring

def measure(engine: Any, size: int, steps: int, repeats: int, scheduler: str) -> dict[str, float]:
    """Engine (previews on / off) against raw diffusers at `size`; medians of interleaved runs."""
    import torch

    from studio.bench.engine import raw_generate, timed
    from studio.recipe.request import GenerationRequest

    dev = engine.model.device
    request = GenerationRequest(prompt=PROMPT, steps=steps, seed=SEED, width=size, height=size,
                                scheduler=scheduler, model=engine.model.entry.name)

    def on_step(_info: Any) -> None:
        pass

    runs = {
        "raw": lambda: raw_generate(engine, request),
        "engine": lambda: engine.generate(request, on_step=on_step, should_stop=lambda: False, preview=True),
        "engine_preview_off": lambda: engine.generate(request, on_step=on_step, should_stop=lambda: False,
                                                      preview=False),
    }
    for fn in runs.values():  # warm-up; compiles the UNet when it is compiled
        timed(fn, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(timed(runs[name], dev)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "engine_s": med["engine"], "engine_preview_off_s": med["engine_preview_off"], "raw_s": med["raw"],
        "engine_it_s": steps / med["engine"], "engine_preview_off_it_s": steps / med["engine_preview_off"],
        "raw_it_s": steps / med["raw"], "engine_vs_raw": med["engine"] / med["raw"],
        "engine_preview_off_vs_raw": med["engine_preview_off"] / med["raw"],
    }
    if dev.type == "cuda":
        out["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(dev))
    return out


def run(archs: list[str], sizes: list[int], steps: int, repeats: int, device: str = "cuda", scale: int = 1,
        channels_last: bool = True, compile_unet: bool = False, compile_mode: str = "default",
        scheduler: str = "DPM++ 2M", dtype_name: str = "auto") -> dict[str, Any]:
    import warnings

    import torch

    dev = torch.device(device)
    if dtype_name == "auto":
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
    else:
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    rows: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
        "torch": torch.__version__, "dtype": str(dtype).replace("torch.", ""), "steps": steps, "repeats": repeats,
        "scale": scale, "scheduler": scheduler,
    }
    warnings.filterwarnings("ignore", message="invalid value encountered")  # random weights in fp16 may NaN
    for arch in archs:
        start = time.perf_counter()
        pipe = build_pipeline(arch, scale, device, dtype)
        rows.update({f"{arch}_{k}": v for k, v in optimise(pipe, channels_last, compile_unet, compile_mode).items()})
        rows[f"{arch}_build_s"] = time.perf_counter() - start
        engine = engine_for(pipe, arch, dev, dtype)
        for size in sizes:
            figures = measure(engine, size, steps, repeats, scheduler)
            rows.update({f"{arch}_{size}_{k}": v for k, v in figures.items()})
        del engine, pipe
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench gpu", description=__doc__.splitlines()[2])
    parser.add_argument("--arch", default="sd15,sdxl", help="comma-separated: sd15, sdxl")
    parser.add_argument("--sizes", default="512,1024", help="comma-separated square sizes in pixels")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scheduler", default="DPM++ 2M")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"),
                        help="auto: fp16 on CUDA, fp32 on the CPU")
    parser.add_argument("--no-channels-last", action="store_true", help="keep the default memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (warm-up compiles)")
    parser.add_argument("--compile-mode", default="default",
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))
    parser.add_argument("--scale", type=int, default=1,
                        help="divide channel counts by this (1, 2, 4, ..., 64), to try the builder on a CPU")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a scaled dry run")
    parser.add_argument("--json", action="store_true", help="one JSON object, times in seconds")
    args = parser.parse_args(argv)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    if any(a not in ARCHS for a in archs):
        parser.error(f"--arch takes {', '.join(ARCHS)}")
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes comma-separated integers")
    if any(s % 64 for s in sizes) or args.steps < 1 or args.repeats < 1:
        parser.error("sizes must be multiples of 64; --steps and --repeats at least 1")

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2
    try:
        configs("sd15", args.scale)
        configs("sdxl", args.scale)
    except ValueError as exc:
        parser.error(str(exc))
    rows = run(archs, sizes, args.steps, args.repeats, args.device, args.scale, not args.no_channels_last,
               args.compile, args.compile_mode, args.scheduler, args.dtype)
    title = (f"GPU: engine vs raw diffusers, {rows['device']}, {rows['dtype']}, {args.steps} steps, "
             f"medians of {args.repeats}" + (", compiled UNet" if args.compile else ""))
    report(title, rows, args.json)
    return 0
