"""Single-file checkpoints: read what a file holds, tell its family, and describe its architecture.

A single `.safetensors` (or `.ckpt`) file of SD 1.x, 2.x or XL holds the weights in the original
layout (`model.diffusion_model.*`, `first_stage_model.*`, the text encoders) but no config. Studio
reads the tensor names and shapes, without loading a byte of weights for .safetensors, decides the
family from the text encoders present (CLIP-L: SD 1.x; OpenCLIP-H: SD 2.x; both CLIP-L and
OpenCLIP-bigG: SDXL) and reads the sizes a fine-tune or a small model may change (channels, depths,
widths, input channels) from the shapes. The family's shipped skeleton (`resources/configs/`)
supplies what shapes cannot say (scheduler, head layout, scaling factor); `write_config` merges the
two into a diffusers config folder that `from_single_file(config=...)` loads offline.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from studio.recipe.errors import ModelError
from studio.resources import CONFIGS

Shapes = Mapping[str, tuple[int, ...]]
UNET = "model.diffusion_model."
VAE = "first_stage_model."
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class Family(str, Enum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"

    @property
    def label(self) -> str:
        return {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}[self.value]


class Prediction(str, Enum):
    EPSILON = "epsilon"
    V = "v_prediction"


# The text encoders each family's files carry: (family, where in the file, layout).
_TEXT_LAYOUTS = {
    Family.SD1: [("cond_stage_model.transformer.", "hf")],  # with or without text_model. (older files)
    Family.SD2: [("cond_stage_model.model.", "openclip")],
    Family.SDXL: [("conditioner.embedders.0.transformer.", "hf"),
                  ("conditioner.embedders.1.model.", "openclip")],
}
NATIVE_SIZE = {Family.SD1: 512, Family.SD2: 768, Family.SDXL: 1024}


@dataclass(frozen=True)
class Contents:
    """What a checkpoint file holds: every tensor's shape and dtype, and the file's own metadata."""

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Architecture:
    """A checkpoint's family and the component configs its weights imply."""

    family: Family
    inpainting: bool
    prediction: Prediction
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoders: tuple[dict[str, Any], ...]
    zero_terminal_snr: bool = False
    prediction_known: bool = True  # False: the file did not say (SD 2.x), the loader tests the weights

    @property
    def label(self) -> str:
        parts = [self.family.label] + (["inpainting"] if self.inpainting else [])
        if self.prediction is Prediction.V and self.family is not Family.SD2:
            parts.append("v-prediction")
        return " ".join(parts)

    @property
    def native_size(self) -> int:
        if self.family is Family.SD2 and self.prediction is Prediction.EPSILON:
            return 512  # SD 2.x base; the 768 models are the v-prediction ones
        return NATIVE_SIZE[self.family]

    def with_prediction(self, prediction: Prediction) -> Architecture:
        from dataclasses import replace

        return replace(self, prediction=prediction, prediction_known=True)


# ---------------------------------------------------------------------- reading files

def read_contents(path: Path) -> Contents:
    """Tensor names, shapes and dtypes of a .safetensors or weights-only .ckpt/.pt file."""
    if path.suffix.lower() == ".safetensors":
        return _safetensors_contents(path)
    state = load_pickle_weights_only(path)
    return Contents({k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")},
                    {k: str(v.dtype).removeprefix("torch.") for k, v in state.items() if hasattr(v, "dtype")})


def _safetensors_contents(path: Path) -> Contents:
    """Read the safetensors header (8-byte length, then JSON) and check the data is all there."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelError(f"{path.name} is empty or cut short ({size} bytes): not a checkpoint")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER, size - 8):
            raise ModelError(f"{path.name} is not a safetensors file (its header claims {length:,} bytes)")
        try:
            header = json.loads(fh.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path.name} is not a safetensors file (its header is not JSON)") from exc
    if not isinstance(header, dict):
        raise ModelError(f"{path.name} is not a safetensors file (its header is not a table of tensors)")
    metadata = header.pop("__metadata__", None) or {}
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    end = 0
    for name, info in header.items():
        try:
            shapes[name] = tuple(int(d) for d in info["shape"])
            dtypes[name] = str(info["dtype"])
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"{path.name} has a damaged header (tensor {name!r})") from exc
    if 8 + length + end > size:
        raise ModelError(f"{path.name} is cut short: it has {size:,} bytes of the {8 + length + end:,} its header "
                         "describes (an interrupted download?)")
    return Contents(shapes, dtypes, {str(k): str(v) for k, v in metadata.items()})


def load_pickle_weights_only(path: Path) -> dict[str, Any]:
    """A .ckpt/.pt state dict through torch's weights-only unpickler: tensors and plain data only,
    so no code inside the file runs. A file that needs more is refused with the reason."""
    import pickle
    import warnings
    import zipfile

    import torch

    warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)  # old files: harmless
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # old (non-zip) torch files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:GLOBAL|global) ([\w.]+ ?[\w.]*)", str(exc))
        what = f" ({found.group(1).strip()})" if found else ""
        raise ModelError(f"{path.name} holds Python objects besides weights{what}: loading it would run code "
                         "from the file, so Studio refused it. Use a .safetensors version of this model") from exc
    except (EOFError, zipfile.BadZipFile, RuntimeError, OSError) as exc:
        raise ModelError(f"{path.name} is not a readable checkpoint (cut short or damaged: "
                         f"{str(exc).splitlines()[0][:120]})") from exc
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelError(f"{path.name} does not hold a state dict of weights")
    return obj


# ---------------------------------------------------------------------- detecting

def detect(contents: Contents, name: str = "the file") -> Architecture:
    """The architecture of a single-file checkpoint, or ModelError saying what was found instead."""
    shapes = contents.shapes
    if not any(k.startswith(UNET + "input_blocks.") for k in shapes):
        raise ModelError(f"{name} is not a Stable Diffusion checkpoint: it holds {_describe_other(shapes)}")
    family = _family(shapes, name)
    texts = tuple(_text_config(shapes, prefix, layout, family) for prefix, layout in _TEXT_LAYOUTS[family])
    unet = _unet_config(shapes, family)
    _check_context(family, shapes, unet, texts, name)
    vae = vae_shape_config(shapes, name)
    if family is Family.SDXL:
        unet["addition_time_embed_dim"] = (unet.pop("_pooled_input") - texts[1]["projection_dim"]) // 6
    prediction, known = _prediction(contents, family)
    return Architecture(family, unet["in_channels"] == 9, prediction, unet, vae, texts,
                        zero_terminal_snr="ztsnr" in shapes, prediction_known=known)


def _family(shapes: Shapes, name: str) -> Family:
    has = {family: all(any(k.startswith(prefix) for k in shapes) for prefix, _ in layouts)
           for family, layouts in _TEXT_LAYOUTS.items()}
    if has[Family.SDXL]:
        return Family.SDXL
    if any(k.startswith("conditioner.embedders.0.model.") for k in shapes):
        raise ModelError(f"{name} is an SDXL refiner (one OpenCLIP text encoder, image-to-image only), "
                         "which Studio does not run yet")
    if has[Family.SD2]:
        return Family.SD2
    if has[Family.SD1]:
        return Family.SD1
    prefixes = sorted({".".join(k.split(".")[:2]) for k in shapes if not k.startswith(UNET)})[:6]
    raise ModelError(f"{name} has a Stable Diffusion UNet but no text encoder Studio knows (found "
                     f"{', '.join(prefixes) or 'only UNet weights'}); SD 1.x, 2.x and XL files carry theirs")


def _describe_other(shapes: Shapes) -> str:
    keys = list(shapes)
    if any("double_blocks." in k or "joint_blocks." in k for k in keys):
        return "a FLUX or SD 3 transformer (opened by the flow-model loader)"
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_" in k for k in keys):
        return "LoRA weights: put it in a loras/ folder of the model library and use it with <lora:name:1>"
    if any(k.startswith(("encoder.down.", "decoder.up.", "first_stage_model.encoder.")) for k in keys):
        return "a VAE only: choose it as the VAE of a model"
    if any(k in ("emb_params", "string_to_param") or k.startswith("clip_") for k in keys) and len(keys) < 8:
        return "a textual-inversion embedding: put it in an embeddings/ folder of the model library"
    top = sorted({k.split(".")[0] for k in keys})
    shown = ", ".join(top[:6]) + (f" and {len(top) - 6} more" if len(top) > 6 else "")
    return f"{len(keys)} tensors named {shown or 'nothing'}; no UNet (model.diffusion_model.*)"


def _count(shapes: Shapes, pattern: str) -> int:
    """How many distinct indices fill the `{}` of `pattern` among the keys."""
    regex = re.compile(re.escape(pattern).replace(r"\{\}", r"(\d+)"))
    return len({m.group(1) for k in shapes if (m := regex.match(k))})


def _unet_config(shapes: Shapes, family: Family) -> dict[str, Any]:
    u = UNET
    conv_in = shapes[u + "input_blocks.0.0.weight"]
    levels: list[list[tuple[int, int]]] = [[]]  # per level: (output channels, transformer depth) per block
    attention: dict[str, Any] = {}
    blocks = _count(shapes, u + "input_blocks.{}.")
    for i in range(1, blocks):
        if u + f"input_blocks.{i}.0.op.weight" in shapes:
            levels.append([])
            continue
        depth = _count(shapes, u + f"input_blocks.{i}.1.transformer_blocks.{{}}.")
        if depth and not attention:
            attention = {"cross": shapes[u + f"input_blocks.{i}.1.transformer_blocks.0.attn2.to_k.weight"][1],
                         "linear": len(shapes[u + f"input_blocks.{i}.1.proj_in.weight"]) == 2}
        levels[-1].append((shapes[u + f"input_blocks.{i}.0.out_layers.3.weight"][0], depth))
    if not attention:
        raise ModelError("the UNet has no cross-attention layers: not a text-to-image Stable Diffusion model")
    channels = [level[0][0] for level in levels]
    depths = [level[0][1] for level in levels]
    config = _skeleton(family, "unet")
    config.update(
        in_channels=conv_in[1], out_channels=shapes[u + "out.2.weight"][0], block_out_channels=channels,
        layers_per_block=len(levels[0]), cross_attention_dim=attention["cross"],
        use_linear_projection=attention["linear"],
        down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        up_block_types=["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
    )
    if family is not Family.SD1:  # SD 2.x and XL attend with 64-wide heads; SD 1.x with 8 heads
        config["attention_head_dim"] = [max(1, c // 64) for c in channels]
    if family is Family.SDXL:
        config["transformer_layers_per_block"] = [max(1, d) for d in depths]
        pooled = shapes.get(u + "label_emb.0.0.weight", (0, 0))[1]
        config["projection_class_embeddings_input_dim"] = config["_pooled_input"] = pooled
    return config


def vae_shape_config(shapes: Shapes, name: str, prefix: str = VAE) -> dict[str, Any]:
    """The sizes of a VAE in the original layout. FLUX's and SD 3's 16-channel VAEs have no quant convs."""
    e = prefix + "encoder."
    levels = _count(shapes, e + "down.{}.block.0.conv1.weight")
    if not levels or e + "conv_out.weight" not in shapes:
        raise ModelError(f"{name} has no VAE ({prefix or 'encoder.'}* weights): Studio opens checkpoints with "
                         "their VAE inside (a file saved without one cannot load yet)")
    config = {"block_out_channels": [shapes[e + f"down.{i}.block.0.conv2.weight"][0] for i in range(levels)],
              "layers_per_block": _count(shapes, e + "down.0.block.{}.conv1.weight"),
              "latent_channels": shapes[e + "conv_out.weight"][0] // 2,
              "down_block_types": ["DownEncoderBlock2D"] * levels, "up_block_types": ["UpDecoderBlock2D"] * levels}
    if prefix + "quant_conv.weight" not in shapes:  # said only when absent: SD's published configs leave it out
        config.update(use_quant_conv=False, use_post_quant_conv=False)
    return config


def _text_config(shapes: Shapes, prefix: str, layout: str, family: Family) -> dict[str, Any]:
    if layout == "hf":
        if prefix + "text_model.embeddings.token_embedding.weight" in shapes:
            prefix += "text_model."
        vocab, hidden = shapes[prefix + "embeddings.token_embedding.weight"]
        layers = _count(shapes, prefix + "encoder.layers.{}.")
        inner = shapes[prefix + "encoder.layers.0.mlp.fc1.weight"][0]
        positions = shapes[prefix + "embeddings.position_embedding.weight"][0]
        projection = hidden
    else:
        vocab, hidden = shapes[prefix + "token_embedding.weight"]
        layers = _count(shapes, prefix + "transformer.resblocks.{}.")
        inner = shapes[prefix + "transformer.resblocks.0.mlp.c_fc.weight"][0]
        positions = shapes[prefix + "positional_embedding"][0]
        projection = shapes.get(prefix + "text_projection", (hidden, hidden))[1]
        if family is Family.SD2:
            layers -= 1  # SD 2.x reads OpenCLIP's penultimate layer; diffusers keeps the layers before it
    return {"vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers, "intermediate_size": inner,
            "max_position_embeddings": positions, "num_attention_heads": max(1, hidden // 64),
            "projection_dim": projection}


def _check_context(family: Family, shapes: Shapes, unet: dict[str, Any], texts: tuple[dict[str, Any], ...],
                   name: str) -> None:
    width = sum(t["hidden_size"] for t in texts)
    if unet["cross_attention_dim"] != width:
        widths = " + ".join(str(t["hidden_size"]) for t in texts)
        raise ModelError(f"{name} does not fit together: its UNet attends to {unet['cross_attention_dim']}-wide text "
                         f"features but its {family.label} text encoders give {widths}")
    if (family is Family.SDXL) != (UNET + "label_emb.0.0.weight" in shapes):
        raise ModelError(f"{name} mixes families: {family.label} text encoders with a UNet "
                         f"{'without' if family is Family.SDXL else 'with'} SDXL's size conditioning")


def _prediction(contents: Contents, family: Family) -> tuple[Prediction, bool]:
    """What the UNet predicts. Files say so by a `v_pred` key (A1111 / ComfyUI) or modelspec metadata;
    SD 2.x files usually say nothing, and the loader then tests the weights as A1111 does."""
    spec = contents.metadata.get("modelspec.prediction_type", "").lower()
    if "v_pred" in contents.shapes or spec.startswith("v"):
        return Prediction.V, True
    if spec.startswith("eps"):
        return Prediction.EPSILON, True
    if family is Family.SD2:
        return Prediction.V, False
    return Prediction.EPSILON, True


def vae_config(contents: Contents, name: str) -> dict[str, Any]:
    """The config of a standalone VAE file in the original layout (A1111's `models/VAE`, ComfyUI's `vae/`)."""
    keys = contents.shapes.keys()
    if any(k.startswith("encoder.down_blocks.") for k in keys):
        raise ModelError(f"{name} is a VAE in diffusers' layout: put its folder (with config.json) in the library "
                         "or use the single-file version (encoder.down.* keys)")
    prefix = VAE if any(k.startswith(VAE) for k in keys) else ""
    return vae_shape_config(contents.shapes, name, prefix)


# ---------------------------------------------------------------------- config folders

def _skeleton(family: Family, component: str) -> dict[str, Any]:
    config = json.loads((CONFIGS / family.value / component / "config.json").read_text())
    return config


def write_config(arch: Architecture, folder: Path) -> Path:
    """A diffusers config folder for `arch`: the family's skeleton with the sizes read from the file."""
    skeleton = CONFIGS / arch.family.value
    shutil.copytree(skeleton, folder, dirs_exist_ok=True)
    vae_scale = 2 ** (len(arch.vae["block_out_channels"]) - 1)
    _merge(folder / "unet" / "config.json", {**arch.unet, "sample_size": arch.native_size // vae_scale})
    _merge(folder / "vae" / "config.json", {**arch.vae, "sample_size": arch.native_size})
    for k, text in enumerate(arch.text_encoders):
        _merge(folder / ("text_encoder" if k == 0 else f"text_encoder_{k + 1}") / "config.json", text)
    scheduler: dict[str, Any] = {"prediction_type": arch.prediction.value}
    if arch.zero_terminal_snr:
        scheduler["rescale_betas_zero_snr"] = True
    _merge(folder / "scheduler" / "scheduler_config.json", scheduler)
    index = json.loads((folder / "model_index.json").read_text())
    if arch.inpainting:
        index["_class_name"] = index["_class_name"].replace("Pipeline", "InpaintPipeline")
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def _merge(path: Path, values: Mapping[str, Any]) -> None:
    config = json.loads(path.read_text())
    config.update({k: v for k, v in values.items() if not k.startswith("_")})
    path.write_text(json.dumps(config, indent=2))


def pipeline_class_name(arch: Architecture) -> str:
    base = "StableDiffusionXL" if arch.family is Family.SDXL else "StableDiffusion"
    return base + ("InpaintPipeline" if arch.inpainting else "Pipeline")


def clip_tokenizer(pad: str) -> Any:
    """A CLIP tokenizer from the shipped BPE files; CLIP-L pads with its end token, OpenCLIP with `!`."""
    from transformers import CLIPTokenizer

    folder = CONFIGS / "clip-tokenizer"
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=pad, model_max_length=77)


def tokenizers(arch: Architecture) -> dict[str, Any]:
    """The CLIP tokenizers the family uses (SD 2.x and SDXL's OpenCLIP pads with `!`)."""
    if arch.family is Family.SD1:
        return {"tokenizer": clip_tokenizer("<|endoftext|>")}
    if arch.family is Family.SD2:
        return {"tokenizer": clip_tokenizer("!")}
    return {"tokenizer": clip_tokenizer("<|endoftext|>"), "tokenizer_2": clip_tokenizer("!")}
