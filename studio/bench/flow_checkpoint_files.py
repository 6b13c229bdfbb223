"""FLUX and SD 3 files as their makers and ComfyUI write them, from random diffusers components.

- a FLUX transformer alone, in Black Forest Labs' keys (`double_blocks.*`, `single_blocks.*`), as
  `flux1-dev.safetensors` is downloaded (optionally with ComfyUI's `model.diffusion_model.` prefix);
- the parts beside it in ComfyUI's layout: `text_encoders/clip_l.safetensors` (transformers' CLIP keys),
  `text_encoders/t5xxl_fp16.safetensors` (transformers' T5 encoder keys, `shared.weight` without the tied
  copy) and `vae/ae.safetensors` (the original autoencoder keys, no prefix);
- an SD 3.x file as Stability ships it: `model.diffusion_model.joint_blocks.*`, the VAE under
  `first_stage_model.`, and optionally the text encoders under `text_encoders.clip_l|clip_g|t5xxl.transformer.`.

Tests write tiny ones; `python -m studio.bench models` writes FLUX at full width (fewer blocks) and SD 3.5
medium at full size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.bench.checkpoint_files import save, vae_tensors
from studio.engine.key_tables import FLUX, Fused, KeyTable

DIFFUSION = "model.diffusion_model."
TEXT = "text_encoders.{}.transformer."

_J, _T = "joint_blocks.{i}.", "transformer_blocks.{i}."
# Stability's MMDiT names against diffusers' (diffusers' own converter reads them; this writes them).
SD3 = KeyTable(
    renames=(
        ("x_embedder.proj", "pos_embed.proj"),
        ("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
        ("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
        ("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1"),
        ("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2"),
        ("context_embedder", "context_embedder"),
        ("final_layer.linear", "proj_out"),
        ("final_layer.adaLN_modulation.1", "norm_out.linear"),
        (_J + "x_block.attn.ln_q", _T + "attn.norm_q"),
        (_J + "x_block.attn.ln_k", _T + "attn.norm_k"),
        (_J + "context_block.attn.ln_q", _T + "attn.norm_added_q"),
        (_J + "context_block.attn.ln_k", _T + "attn.norm_added_k"),
        (_J + "x_block.attn.proj", _T + "attn.to_out.0"),
        (_J + "context_block.attn.proj", _T + "attn.to_add_out"),
        (_J + "x_block.attn2.ln_q", _T + "attn2.norm_q"),
        (_J + "x_block.attn2.ln_k", _T + "attn2.norm_k"),
        (_J + "x_block.attn2.proj", _T + "attn2.to_out.0"),
        (_J + "x_block.adaLN_modulation.1", _T + "norm1.linear"),
        (_J + "context_block.adaLN_modulation.1", _T + "norm1_context.linear"),
        (_J + "x_block.mlp.fc1", _T + "ff.net.0.proj"),
        (_J + "x_block.mlp.fc2", _T + "ff.net.2"),
        (_J + "context_block.mlp.fc1", _T + "ff_context.net.0.proj"),
        (_J + "context_block.mlp.fc2", _T + "ff_context.net.2"),
    ),
    fused=(
        Fused(_J + "x_block.attn.qkv", (_T + "attn.to_q", _T + "attn.to_k", _T + "attn.to_v")),
        Fused(_J + "context_block.attn.qkv", (_T + "attn.add_q_proj", _T + "attn.add_k_proj", _T + "attn.add_v_proj")),
        Fused(_J + "x_block.attn2.qkv", (_T + "attn2.to_q", _T + "attn2.to_k", _T + "attn2.to_v")),
    ),
    swapped=("final_layer.adaLN_modulation.1",),
    norm_suffix=("weight", "weight"),
)


def flux_transformer_tensors(transformer: Any, prefix: str = "") -> dict[str, Any]:
    return {prefix + k: v for k, v in FLUX.to_original(transformer.state_dict()).items()}


def sd3_transformer_tensors(transformer: Any, prefix: str = DIFFUSION) -> dict[str, Any]:
    import torch

    state = dict(transformer.state_dict())
    pos_embed = state.pop("pos_embed.pos_embed")
    last = transformer.config.num_layers - 1
    # The last block's context half only modulates (no attention output or MLP); its adaLN is stored
    # (shift, scale) like the final layer's.
    swapped = f"transformer_blocks.{last}.norm1_context.linear"
    for param in ("weight", "bias"):
        first, second = state[f"{swapped}.{param}"].chunk(2, dim=0)
        state[f"{swapped}.{param}"] = torch.cat([second, first], dim=0)
    out = {prefix + k: v for k, v in SD3.to_original(state).items()}
    out[prefix + "pos_embed"] = pos_embed
    return out


def clip_tensors(clip: Any, prefix: str = "") -> dict[str, Any]:
    """A transformers CLIP text model as ComfyUI's `clip_l.safetensors` / `clip_g.safetensors` hold it
    (`text_model.*`, which transformers 5 drops from CLIPTextModel's own names, and `text_projection.weight`)."""
    return {prefix + (k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
            for k, v in clip.state_dict().items() if not k.endswith("position_ids")}


def t5_tensors(t5: Any, prefix: str = "") -> dict[str, Any]:
    """A T5 encoder as `t5xxl_fp16.safetensors` holds it: `shared.weight`, without the tied `embed_tokens` copy."""
    return {prefix + k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}


# ---------------------------------------------------------------------- random components

def flux_configs(full_width: bool = False, fill: bool = False, schnell: bool = False) -> dict[str, Any]:
    """Tiny FLUX parts, or FLUX.1's full width with every block type but fewer blocks (2 double, 4 single)
    and a 2-layer T5-XXL, so each key and shape is the real one and it fits a 24 GB machine."""
    # Fill reads the masked picture's latents (64 packed channels) and the mask, packed as 4 x scale² channels.
    in_channels = (128 + 4 * (8 if full_width else 2) ** 2) if fill else 64
    if full_width:
        transformer = dict(num_layers=2, num_single_layers=4, in_channels=in_channels, out_channels=64,
                           guidance_embeds=not schnell)
        clip, t5 = dict(width=768, layers=12), dict(width=4096, layers=2, heads=64, ff=10240)
        vae = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2)
    else:
        transformer = dict(num_layers=1, num_single_layers=2, attention_head_dim=32, num_attention_heads=2,
                           joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 14, 14],
                           in_channels=in_channels, out_channels=64, guidance_embeds=not schnell)
        clip, t5 = dict(width=32, layers=2), dict(width=32, layers=2, heads=4, ff=64)
        vae = dict(block_out_channels=(32, 64), layers_per_block=1)
    return {"transformer": transformer, "clip_l": clip, "t5": t5, "vae": vae}


def sd3_configs(full_size: bool = False) -> dict[str, Any]:
    """Tiny SD 3.5-medium-shaped parts (qk-norm, one dual-attention block), or SD 3.5 medium at full size with
    full CLIP-L and CLIP-G and a 2-layer T5-XXL."""
    if full_size:
        return {"transformer": {}, "clip_l": dict(width=768, layers=12), "clip_g": dict(width=1280, layers=32),
                "t5": dict(width=4096, layers=2, heads=64, ff=10240),
                "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2)}
    return {"transformer": dict(sample_size=32, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
                                num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64,
                                pooled_projection_dim=64, out_channels=16, qk_norm="rms_norm",
                                dual_attention_layers=(0,), pos_embed_max_size=16),
            "clip_l": dict(width=32, layers=2), "clip_g": dict(width=32, layers=2),
            "t5": dict(width=64, layers=2, heads=4, ff=128),
            "vae": dict(block_out_channels=(32, 64), layers_per_block=1)}


def _clip(width: int, layers: int, projection: bool, act: str = "quick_gelu") -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                            num_attention_heads=max(1, width // 64), max_position_embeddings=77, projection_dim=width,
                            hidden_act=act, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5(width: int, layers: int, heads: int, ff: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=32128, d_model=width, d_kv=width // heads, d_ff=ff, num_layers=layers,
                                   num_heads=heads, dropout_rate=0.0, feed_forward_proj="gated-gelu",
                                   is_encoder_decoder=False, relative_attention_num_buckets=32))


def _vae(block_out_channels: tuple[int, ...], layers_per_block: int, family: str) -> Any:
    import json

    from diffusers import AutoencoderKL

    from studio.resources import CONFIGS

    config = json.loads((CONFIGS / family / "vae" / "config.json").read_text())
    levels = len(block_out_channels)
    config.update(block_out_channels=block_out_channels, layers_per_block=layers_per_block,
                  down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels)
    return AutoencoderKL.from_config(config)


def flux_components(configs: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    import torch
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return {"transformer": FluxTransformer2DModel(**configs["transformer"]),
            "clip_l": _clip(**configs["clip_l"], projection=False), "t5": _t5(**configs["t5"]),
            "vae": _vae(**configs["vae"], family="flux")}


def sd3_components(configs: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    import json

    import torch
    from diffusers import SD3Transformer2DModel

    from studio.resources import CONFIGS

    torch.manual_seed(seed)
    transformer = json.loads((CONFIGS / "sd3" / "transformer" / "config.json").read_text()) | configs["transformer"]
    return {"transformer": SD3Transformer2DModel.from_config(transformer),
            "clip_l": _clip(**configs["clip_l"], projection=True),
            "clip_g": _clip(**configs["clip_g"], projection=True, act="gelu"), "t5": _t5(**configs["t5"]),
            "vae": _vae(**configs["vae"], family="sd3")}


# ---------------------------------------------------------------------- whole file sets

def write_flux_files(root: Path, components: dict[str, Any], name: str = "flux1-dev", prefix: str = "",
                     dtype: Any = None, t5_dtype: Any = None) -> dict[str, Path]:
    """ComfyUI's layout under `root`: diffusion_models/NAME.safetensors (the transformer alone),
    text_encoders/clip_l.safetensors and t5xxl_fp16.safetensors (or _fp8_e4m3fn with `t5_dtype`), vae/ae.safetensors."""
    import torch

    for sub in ("diffusion_models", "text_encoders", "vae"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    t5_name = "t5xxl_fp8_e4m3fn" if t5_dtype == torch.float8_e4m3fn else "t5xxl_fp16"
    return {
        "transformer": save(flux_transformer_tensors(components["transformer"], prefix),
                            root / "diffusion_models" / f"{name}.safetensors", dtype),
        "clip_l": save(clip_tensors(components["clip_l"]), root / "text_encoders" / "clip_l.safetensors", dtype),
        "t5": save(t5_tensors(components["t5"]), root / "text_encoders" / f"{t5_name}.safetensors", t5_dtype or dtype),
        "vae": save(vae_tensors(components["vae"]), root / "vae" / "ae.safetensors", dtype),
    }


def sd3_state_dict(components: dict[str, Any],
                   encoders: tuple[str, ...] = ("clip_l", "clip_g", "t5")) -> dict[str, Any]:
    """An SD 3.x single file's tensors: the MMDiT, the VAE and the text encoders named in `encoders`."""
    state = sd3_transformer_tensors(components["transformer"])
    state.update(vae_tensors(components["vae"], "first_stage_model."))
    for part in encoders:
        write = t5_tensors if part == "t5" else clip_tensors
        state.update(write(components[part], TEXT.format("t5xxl" if part == "t5" else part)))
    return state
