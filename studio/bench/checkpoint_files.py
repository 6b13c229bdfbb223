"""Write Stable Diffusion checkpoints as single files in the original (LDM / A1111 / ComfyUI) layout.

The benchmarks and the tests need checkpoints shaped exactly like the files designers download, but
no weights may be fetched. So this module builds diffusers components from config dicts (random
weights, or shapes only on the meta device) and renames every tensor to the key the original
Stability / CompVis code saves: `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE),
`cond_stage_model.transformer.*` (SD 1.x CLIP), `cond_stage_model.model.*` (SD 2.x OpenCLIP),
`conditioner.embedders.{0,1}.*` (SDXL), with OpenCLIP's fused q/k/v projections, 1x1-conv VAE
attention and the buffers real files carry (`alphas_cumprod`, `position_ids`, `logit_scale`).
The renaming is written for any depth and width, so a tiny model and a full-size one come out of
the same code; `studio.engine.checkpoints` reads these names back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

UNET = "model.diffusion_model."
VAE = "first_stage_model."
SD1_TEXT = "cond_stage_model.transformer."
SD2_TEXT = "cond_stage_model.model."
SDXL_TEXT = ("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model.")

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


# ---------------------------------------------------------------------- UNet

def unet_key_map(config: Mapping[str, Any]) -> Callable[[str], str]:
    """diffusers UNet2DConditionModel key -> original key, for the block layout in `config`."""
    levels = len(config["block_out_channels"])
    per_level = int(config["layers_per_block"])
    up_has_attention = ["CrossAttn" in t for t in config["up_block_types"]]

    def rename(key: str) -> str:
        head, _, leaf = key.rpartition(".")
        for new, old in _UNET_TOP.items():
            if head == new:
                return f"{old}.{leaf}"
        m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + i * (per_level + 1) + j
            return f"input_blocks.{index}.{0 if kind == 'resnets' else 1}.{_resnet(rest, kind)}"
        m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
        if m:
            return f"input_blocks.{(int(m[1]) + 1) * (per_level + 1)}.0.op.{m[2]}"
        m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            index = 2 * int(m[2]) if m[1] == "resnets" else 1
            return f"middle_block.{index}.{_resnet(m[3], m[1])}"
        m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            return f"output_blocks.{i * (per_level + 1) + j}.{0 if kind == 'resnets' else 1}.{_resnet(rest, kind)}"
        m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
        if m:
            i = int(m[1])
            slot = 2 if up_has_attention[i] else 1
            return f"output_blocks.{i * (per_level + 1) + per_level}.{slot}.conv.{m[2]}"
        raise KeyError(f"no original name for UNet key {key!r} ({levels} levels)")

    return rename


def _resnet(rest: str, kind: str) -> str:
    if kind != "resnets":
        return rest
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


# ---------------------------------------------------------------------- VAE

_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_key_map(config: Mapping[str, Any]) -> Callable[[str], str]:
    levels = len(config["block_out_channels"])

    def rename(key: str) -> str:
        m = re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key)
        if m:
            part, way, i, j, rest = m[1], m[2], int(m[3]), int(m[4]), m[5]
            level = i if way == "down" else levels - 1 - i
            return f"{part}.{way}.{level}.block.{j}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
        m = re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
        if m:
            return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        m = re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
        if m:
            return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        m = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key)
        if m:
            return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", key)
        if m:
            return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
        return key.replace("conv_norm_out", "norm_out")  # conv_in, conv_out, quant_conv, post_quant_conv

    return rename


# ---------------------------------------------------------------------- text encoders

def openclip_tensors(state: Mapping[str, Any], prefix: str, extra_layer: Any = None) -> dict[str, Any]:
    """A transformers CLIP text model's tensors in OpenCLIP's names (fused q/k/v, `text_projection` as x @ W)."""
    import torch

    out: dict[str, Any] = {}
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    layers = sorted({int(m[1]) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    for n in layers:
        src, dst = f"encoder.layers.{n}.", f"{prefix}transformer.resblocks.{n}."
        for what in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{what}"] = torch.cat([state[f"{src}self_attn.{p}_proj.{what}"] for p in "qkv"])
            out[f"{dst}attn.out_proj.{what}"] = state[f"{src}self_attn.out_proj.{what}"]
            out[f"{dst}ln_1.{what}"] = state[f"{src}layer_norm1.{what}"]
            out[f"{dst}ln_2.{what}"] = state[f"{src}layer_norm2.{what}"]
            out[f"{dst}mlp.c_fc.{what}"] = state[f"{src}mlp.fc1.{what}"]
            out[f"{dst}mlp.c_proj.{what}"] = state[f"{src}mlp.fc2.{what}"]
    if extra_layer is not None:  # SD 2.x files keep OpenCLIP's last layer, which SD 2 does not use
        out.update({k.replace(f"resblocks.{layers[-1]}.", f"resblocks.{layers[-1] + 1}."): v.clone()
                    for k, v in out.items() if f"resblocks.{layers[-1]}." in k})
    out[f"{prefix}token_embedding.weight"] = state["embeddings.token_embedding.weight"]
    out[f"{prefix}positional_embedding"] = state["embeddings.position_embedding.weight"]
    out[f"{prefix}ln_final.weight"] = state["final_layer_norm.weight"]
    out[f"{prefix}ln_final.bias"] = state["final_layer_norm.bias"]
    hidden = state["embeddings.token_embedding.weight"].shape[1]
    projection = state.get("text_projection.weight")
    out[f"{prefix}text_projection"] = (projection.T.contiguous() if projection is not None
                                       else torch.empty(hidden, hidden, device=state["final_layer_norm.bias"].device))
    out[f"{prefix}logit_scale"] = torch.tensor(4.6052, device=state["final_layer_norm.bias"].device)
    return out


def hf_clip_tensors(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers CLIPTextModel's tensors as SD 1.x files hold them (`...transformer.text_model.*`)."""
    import torch

    out = {f"{prefix}text_model.{k.removeprefix('text_model.')}": v for k, v in state.items()
           if not k.startswith("text_projection")}
    positions = state["embeddings.position_embedding.weight" if "embeddings.position_embedding.weight" in state
                      else "text_model.embeddings.position_embedding.weight"].shape[0]
    out[f"{prefix}text_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    return out


# ---------------------------------------------------------------------- whole files

def vae_tensors(vae: Any, prefix: str = "") -> dict[str, Any]:
    """An AutoencoderKL's tensors in the original names; with no prefix, a standalone VAE file as
    A1111's `models/VAE` and ComfyUI's `models/vae` hold them."""
    rename = vae_key_map(vae.config)
    out = {}
    for k, v in vae.state_dict().items():
        name = prefix + rename(k)
        if ".mid.attn_1." in name and name.endswith("weight") and v.ndim == 2:
            v = v.reshape(*v.shape, 1, 1)  # the original VAE's attention projections are 1x1 convolutions
        out[name] = v
    return out


def ldm_state_dict(family: str, unet: Any, vae: Any, text_encoders: list[Any]) -> dict[str, Any]:
    """The original single-file state dict of diffusers components (`family`: sd1, sd2 or sdxl)."""
    import torch

    rename_unet = unet_key_map(unet.config)
    out = {UNET + rename_unet(k): v for k, v in unet.state_dict().items()}
    out.update(vae_tensors(vae, VAE))
    texts = [t.state_dict() for t in text_encoders]
    if family == "sd1":
        out.update(hf_clip_tensors(texts[0], SD1_TEXT))
    elif family == "sd2":
        out.update(openclip_tensors(texts[0], SD2_TEXT, extra_layer=True))
    elif family == "sdxl":
        out.update(hf_clip_tensors(texts[0], SDXL_TEXT[0]))
        out.update(openclip_tensors(texts[1], SDXL_TEXT[1]))
    else:
        raise ValueError(f"unknown family {family!r}")
    device = next(iter(out.values())).device
    # The noise schedule buffers every original file carries (SD's scaled-linear betas).
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    out["betas"] = betas.float().to(device)
    out["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float().to(device)
    return out


def save(state: Mapping[str, Any], path: Path, dtype: Any = None, metadata: dict[str, str] | None = None) -> Path:
    """Write `state` as .safetensors, or as a torch zip `{"state_dict": ...}` for .ckpt/.pt, in `dtype`."""
    import torch

    def cast(v: Any) -> Any:
        return v.to(dtype).contiguous() if dtype is not None and v.is_floating_point() else v.contiguous()

    tensors = {k: cast(v) for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata=metadata)
    else:
        torch.save({"state_dict": tensors, "global_step": 0}, path)
    return path


# ---------------------------------------------------------------------- random models to write

FAMILIES = ("sd1", "sd2", "sdxl")


def tiny_configs(family: str, inpainting: bool = False) -> dict[str, Any]:
    """Component configs of a tiny model of `family` (a 2-level UNet; 64 px images in a second on a CPU).

    Widths are multiples of 32 (the group norm every SD model uses), attention heads are 64 wide or
    fewer, the text encoders keep CLIP's real vocabulary and 77 positions: the conventions the
    single-file loader relies on, because a file does not record them.
    """
    text = {"vocab_size": 49408, "max_position_embeddings": 77, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 1, "projection_dim": 32, "hidden_act": "quick_gelu"}
    unet: dict[str, Any] = {"sample_size": 8, "in_channels": 9 if inpainting else 4, "out_channels": 4,
                            "layers_per_block": 1, "block_out_channels": [32, 64], "norm_num_groups": 32}
    if family == "sd1":
        unet.update(down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=32, attention_head_dim=8)
        texts = [text]
    elif family == "sd2":
        texts = [{**text, "hidden_size": 64, "hidden_act": "gelu", "projection_dim": 64}]
        unet.update(down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=64,
                    attention_head_dim=[1, 1], use_linear_projection=True)
    elif family == "sdxl":
        texts = [text, {**text, "hidden_size": 64, "hidden_act": "gelu", "projection_dim": 64}]
        unet.update(down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                    up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim=96,
                    attention_head_dim=[1, 1], use_linear_projection=True, transformer_layers_per_block=[1, 2],
                    addition_embed_type="text_time", addition_time_embed_dim=8,
                    projection_class_embeddings_input_dim=64 + 6 * 8)
    else:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    vae = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [32, 64],
           "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
           "layers_per_block": 1, "norm_num_groups": 32, "sample_size": 64,
           "scaling_factor": 0.13025 if family == "sdxl" else 0.18215}  # the family's, which files do not record
    return {"unet": unet, "vae": vae, "text_encoders": texts}


def full_configs(family: str, inpainting: bool = False) -> dict[str, Any]:
    """The published SD 1.5 / SDXL base component configs (`studio.bench.gpu` writes them out)."""
    from studio.bench import gpu

    cfg = gpu.configs({"sd1": "sd15", "sdxl": "sdxl"}[family])
    cfg["unet"] = {**cfg["unet"], "in_channels": 9 if inpainting else 4}
    texts = [cfg["text_encoder"]] + ([cfg["text_encoder_2"]] if family == "sdxl" else [])
    return {"unet": cfg["unet"], "vae": cfg["vae"], "text_encoders": texts}


def build_components(family: str, configs: dict[str, Any], device: str = "cpu", seed: int = 0) -> tuple[Any, ...]:
    """(unet, vae, text encoders) with random weights on `device` ("meta": shapes only, no memory)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**configs["unet"])
        vae = AutoencoderKL(**configs["vae"])
        texts = []
        for k, text in enumerate(configs["text_encoders"]):
            cls = CLIPTextModelWithProjection if family == "sdxl" and k == 1 else CLIPTextModel
            texts.append(cls(CLIPTextConfig(**text, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)))
    return unet, vae, texts


def write_checkpoint(path: Path, family: str, *, inpainting: bool = False, full_size: bool = False,
                     dtype: Any = None, extra: Mapping[str, Any] | None = None,
                     metadata: dict[str, str] | None = None, seed: int = 0) -> Path:
    """A random-weight checkpoint of `family` in the original single-file layout, saved at `path`."""
    configs = full_configs(family, inpainting) if full_size else tiny_configs(family, inpainting)
    unet, vae, texts = build_components(family, configs, seed=seed)
    state = ldm_state_dict(family, unet, vae, texts)
    state.update(extra or {})
    return save(state, path, dtype, metadata)


# ---------------------------------------------------------------------- LoRAs and embeddings

def kohya_lora(family: str, unet: Any, texts: list[Any], rank: int = 4, scale: float = 0.5, seed: int = 1,
               ) -> dict[str, Any]:
    """A kohya-ss (A1111) LoRA over every attention projection of `unet` and the text encoders.

    Names are kohya's: `lora_unet_<module path, dots as underscores>` with the diffusers UNet layout
    for SD 1.x / 2.x and the original (`input_blocks_4_1_...`) layout for SDXL, `lora_te_` (SD 1/2) or
    `lora_te1_` / `lora_te2_` (SDXL) for the text encoders; `.lora_down.weight`, `.lora_up.weight` and
    `.alpha` per module. Up matrices are random (a fresh LoRA has them zero, which would change nothing).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {}
    rename = unet_key_map(unet.config) if family == "sdxl" else (lambda k: k)

    def add(prefix: str, module_name: str, module: Any) -> None:
        base = prefix + module_name.replace(".", "_")
        out[base + ".lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * scale
        out[base + ".lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * scale
        out[base + ".alpha"] = torch.tensor(float(rank))

    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and re.search(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$", name):
            add("lora_unet_", rename(name + ".weight").removesuffix(".weight"), module)
    te_prefixes = ["lora_te1_", "lora_te2_"] if family == "sdxl" else ["lora_te_"]
    for prefix, text in zip(te_prefixes, texts):
        for name, module in text.named_modules():
            if isinstance(module, torch.nn.Linear) and re.search(r"self_attn\.(q|k|v|out)_proj$", name):
                add(prefix, "text_model." + name.removeprefix("text_model."), module)
    return out


def embedding(family: str, texts: list[Any], vectors: int = 2, seed: int = 2) -> dict[str, Any]:
    """A textual-inversion embedding as A1111 saves it in .safetensors: `emb_params`, or `clip_l` + `clip_g`
    for SDXL."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def rows(text: Any) -> Any:
        return torch.randn(vectors, text.config.hidden_size, generator=generator)

    if family == "sdxl":
        return {"clip_l": rows(texts[0]), "clip_g": rows(texts[1])}
    return {"emb_params": rows(texts[0])}
