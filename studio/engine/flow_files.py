"""Single files of the flow-matching transformers (FLUX.1, SD 3.x) and the separate files they need.

A FLUX download is usually the transformer alone (`flux1-dev.safetensors` in Black Forest Labs' keys, or
with ComfyUI's `model.diffusion_model.` prefix); its text encoders (CLIP-L, T5-XXL) and autoencoder
(`ae.safetensors`) are separate files in ComfyUI's `text_encoders/` (or `clip/`) and `vae/` folders. SD 3.5
files carry the MMDiT and the VAE, and some the text encoders too (`text_encoders.clip_l|clip_g|t5xxl.`).

Every file is read by its header first: the transformer's sizes come from its shapes, each missing part is
looked for (in the file, in the model library, in a diffusers folder of the same family) and matched by
width, and anything that does not fit is refused before a byte of weights is read. Each component is then
built empty and filled tensor by tensor in the compute dtype (fp8 files included), so loading takes about
the model's own size in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from studio.engine import key_tables
from studio.engine.checkpoints import Contents, clip_tokenizer, read_contents, vae_shape_config
from studio.recipe.errors import ModelError
from studio.resources import CONFIGS

DIFFUSION = "model.diffusion_model."  # ComfyUI's and Stability's prefix for the denoiser
CLIP_KEY = "text_model.embeddings.token_embedding.weight"
T5_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"
VAE_KEY = "encoder.conv_out.weight"


class FlowFamily(str, Enum):
    FLUX = "flux"
    SD3 = "sd3"


class Part(str, Enum):
    """What a flow pipeline needs besides its transformer."""

    CLIP_L = "clip_l"
    CLIP_G = "clip_g"
    T5 = "t5xxl"
    VAE = "vae"

    @property
    def label(self) -> str:
        return {"clip_l": "CLIP-L text encoder", "clip_g": "CLIP-G (OpenCLIP bigG) text encoder",
                "t5xxl": "T5-XXL text encoder", "vae": "16-channel autoencoder (VAE)"}[self.value]

    @property
    def short(self) -> str:
        return {"clip_l": "CLIP-L", "clip_g": "CLIP-G", "t5xxl": "T5-XXL", "vae": "VAE"}[self.value]

    @property
    def usual_files(self) -> str:
        return {"clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors",
                "t5xxl": "t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors",
                "vae": "ae.safetensors for FLUX, the SD 3.5 VAE for SD 3"}[self.value]


PARTS = {FlowFamily.FLUX: (Part.CLIP_L, Part.T5, Part.VAE),
         FlowFamily.SD3: (Part.CLIP_L, Part.CLIP_G, Part.T5, Part.VAE)}
# Where all-in-one files keep each part (ComfyUI's and Stability's layouts).
PREFIXES = {Part.CLIP_L: ("text_encoders.clip_l.transformer.",), Part.CLIP_G: ("text_encoders.clip_g.transformer.",),
            Part.T5: ("text_encoders.t5xxl.transformer.",), Part.VAE: ("first_stage_model.", "vae.")}
# What a name says about the family a 16-channel VAE belongs to (FLUX's and SD 3's share a shape).
VAE_HINTS = {FlowFamily.FLUX: ("ae", "flux"), FlowFamily.SD3: ("sd3", "sd35", "sd3.5")}
DIFFUSERS_SUBFOLDERS = {Part.CLIP_L: "text_encoder", Part.T5: "text_encoder_2", Part.VAE: "vae"}
SD3_SUBFOLDERS = {Part.CLIP_L: "text_encoder", Part.CLIP_G: "text_encoder_2", Part.T5: "text_encoder_3",
                  Part.VAE: "vae"}


@dataclass(frozen=True)
class FlowArchitecture:
    """A flow transformer file: family, the transformer's config read from shapes, and where it sits."""

    family: FlowFamily
    transformer: dict[str, Any]
    prefix: str  # "" or "model.diffusion_model."
    variant: str  # "dev", "schnell", "Fill", "3.5 medium", "3.5 large", "3 medium"

    @property
    def label(self) -> str:
        return f"FLUX.1 {self.variant}" if self.family is FlowFamily.FLUX else f"SD {self.variant}"

    @property
    def fill(self) -> bool:
        return self.family is FlowFamily.FLUX and is_fill(self.transformer)

    @property
    def guidance_distilled(self) -> bool:
        return bool(self.transformer.get("guidance_embeds"))

    @property
    def native_size(self) -> int:
        return 1024

    @property
    def suggested(self) -> tuple[float, int | None]:
        return suggestions(self.transformer, self.family)

    def widths(self) -> dict[Part, int]:
        """The width each text encoder must have (CLIP-L + CLIP-G together for SD 3)."""
        t = self.transformer
        if self.family is FlowFamily.FLUX:
            return {Part.CLIP_L: t["pooled_projection_dim"], Part.T5: t["joint_attention_dim"]}
        return {Part.T5: t["joint_attention_dim"]}


@dataclass(frozen=True)
class Source:
    """Where a part's weights are: a file and the prefix of its tensors, or a diffusers component folder."""

    path: Path
    prefix: str = ""
    folder: bool = False
    width: int | None = None  # a file's encoder width (or VAE latent channels), read from its header when found

    def describe(self) -> str:
        return f"{self.path.name}{' (inside)' if self.prefix else ''}"


@dataclass
class Found:
    """Each part's source, and for the message: where the parts were looked for."""

    sources: dict[Part, Source] = field(default_factory=dict)
    looked_in: list[Path] = field(default_factory=list)

    def describe(self, model: Path) -> str:
        """E.g. "CLIP-L, VAE in the file; T5-XXL from t5xxl_fp16.safetensors"."""
        inside = [p.short for p, s in self.sources.items() if s.path == model]
        outside = [f"{p.short} from {s.path.name if not s.folder else s.path.parent.name + '/' + s.path.name}"
                   for p, s in self.sources.items() if s.path != model]
        return "; ".join(([f"{', '.join(inside)} in the file"] if inside else []) + outside)


# ---------------------------------------------------------------------- detecting

def is_flow(contents: Contents) -> bool:
    return any("double_blocks." in k or "joint_blocks." in k for k in contents.shapes)


def detect(contents: Contents, name: str = "the file") -> FlowArchitecture:
    shapes = contents.shapes
    prefix = DIFFUSION if any(k.startswith(DIFFUSION) for k in shapes) else ""
    own = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    flux = any(k.startswith("double_blocks.") for k in own)
    if not flux and not any(k.startswith("joint_blocks.") for k in own):
        raise ModelError(f"{name} is not a FLUX or SD 3 transformer")
    try:
        return _flux(own, prefix, name) if flux else _sd3(own, prefix)
    except KeyError as exc:
        family = "FLUX" if flux else "SD 3"
        raise ModelError(f"{name} is a damaged {family} transformer file: it lacks {exc.args[0]}") from exc


def _count(shapes: dict[str, tuple[int, ...]], start: str) -> int:
    return len({k[len(start):].split(".")[0] for k in shapes if k.startswith(start)})


def _flux(s: dict[str, tuple[int, ...]], prefix: str, name: str) -> FlowArchitecture:
    config = _skeleton("flux", "transformer")
    width = s["img_in.weight"][0]
    head = s["double_blocks.0.img_attn.norm.query_norm.scale"][0]
    config.update(in_channels=s["img_in.weight"][1], out_channels=s["final_layer.linear.weight"][0],
                  num_layers=_count(s, "double_blocks."), num_single_layers=_count(s, "single_blocks."),
                  attention_head_dim=head, num_attention_heads=width // head,
                  joint_attention_dim=s["txt_in.weight"][1], pooled_projection_dim=s["vector_in.in_layer.weight"][1],
                  guidance_embeds="guidance_in.in_layer.weight" in s, axes_dims_rope=_rope_axes(head))
    extra = config["in_channels"] - config["out_channels"]
    if 0 < extra <= config["out_channels"]:
        raise ModelError(f"{name} is a FLUX.1 control model (Depth or Canny: it reads a control picture's latents), "
                         "which Studio does not run; FLUX.1 dev, schnell, Fill and their fine-tunes open")
    variant = "Fill" if is_fill(config) else "dev" if config["guidance_embeds"] else "schnell"
    return FlowArchitecture(FlowFamily.FLUX, config, prefix, variant)


def is_fill(config: Any) -> bool:
    """FLUX.1 Fill reads the masked picture's latents and the mask (packed 2x2) beside the noisy latents:
    more than twice the channels it puts out (Depth and Canny read exactly twice)."""
    return int(config["in_channels"]) > 2 * int(config["out_channels"] or config["in_channels"])


def suggestions(config: Any, family: FlowFamily) -> tuple[float, int | None]:
    """The guidance and steps a flow model is made for: FLUX.1 dev's distilled guidance 3.5 (Fill's 30),
    schnell's 4 steps (it reads no guidance), SD 3.5's CFG 4.5 (steps: the usual default)."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    if family is FlowFamily.FLUX:
        if is_fill({"in_channels": get("in_channels"), "out_channels": get("out_channels")}):
            return 30.0, None
        return (3.5, None) if get("guidance_embeds") else (1.0, 4)
    return 4.5, None


def suggestions_for(path: Path) -> tuple[float, int | None] | None:
    """What a flow model file or diffusers folder suggests, from its header or configs; None for other models."""
    try:
        if path.is_dir():
            cls = str(json.loads((path / "model_index.json").read_text()).get("_class_name", ""))
            family = (FlowFamily.FLUX if cls.startswith("Flux") else
                      FlowFamily.SD3 if cls.startswith("StableDiffusion3") else None)
            if family is None:
                return None
            return suggestions(json.loads((path / "transformer" / "config.json").read_text()), family)
        if path.suffix.lower() != ".safetensors":
            return None  # flow models come as .safetensors; a .ckpt header is the whole file
        contents = read_contents(path)
        return detect(contents, path.name).suggested if is_flow(contents) else None
    except (OSError, ValueError, AttributeError, ModelError):
        return None  # an unreadable model suggests nothing; loading it says what is wrong


def _rope_axes(head: int) -> list[int]:
    """FLUX splits each head's rotary dimensions 16 / 56 / 56 (of 128) over (index, row, column); other head
    widths keep those proportions, in even numbers as rotary pairs need."""
    row = 2 * round(head * 56 / 128 / 2)
    return [head - 2 * row, row, row]


def _sd3(s: dict[str, tuple[int, ...]], prefix: str) -> FlowArchitecture:
    config = _skeleton("sd3", "transformer")
    width, joint = s["context_embedder.weight"]
    patch = s["x_embedder.proj.weight"][2]
    layers = _count(s, "joint_blocks.")
    qk_norm = "joint_blocks.0.x_block.attn.ln_q.weight" in s
    head = s["joint_blocks.0.x_block.attn.ln_q.weight"][0] if qk_norm else config["attention_head_dim"]
    dual = sorted({int(k.split(".")[1]) for k in s if ".x_block.attn2." in k})
    config.update(num_layers=layers, attention_head_dim=head, num_attention_heads=width // head,
                  caption_projection_dim=width, joint_attention_dim=joint, patch_size=patch,
                  in_channels=s["x_embedder.proj.weight"][1],
                  out_channels=s["final_layer.linear.weight"][0] // (patch * patch),
                  pooled_projection_dim=s["y_embedder.mlp.0.weight"][1],
                  pos_embed_max_size=math.isqrt(s["pos_embed"][1]), dual_attention_layers=dual,
                  qk_norm="rms_norm" if qk_norm else None)
    variant = "3.5 medium" if dual else "3.5 large" if qk_norm else "3 medium"
    return FlowArchitecture(FlowFamily.SD3, config, prefix, variant)


def _skeleton(family: str, component: str, name: str = "config.json") -> dict[str, Any]:
    return json.loads((CONFIGS / family / component / name).read_text())


# ---------------------------------------------------------------------- what a file holds

@dataclass(frozen=True)
class Encoder:
    """A text encoder or VAE found in a file: which part it can be, its width, where its tensors start."""

    kind: str  # "clip", "t5" or "vae"
    width: int  # hidden width for text encoders, latent channels for a VAE
    prefix: str


def encoders_in(contents: Contents) -> list[Encoder]:
    """The text encoders and VAEs a file holds, wherever they sit in it."""
    found = []
    for key, shape in contents.shapes.items():
        if key.endswith(CLIP_KEY):
            found.append(Encoder("clip", shape[1], key[: -len(CLIP_KEY)]))
        elif key.endswith(T5_KEY):
            found.append(Encoder("t5", shape[1], key[: -len(T5_KEY)]))
        elif key.endswith(VAE_KEY) and key[: -len(VAE_KEY)] in ("", *PREFIXES[Part.VAE]):
            found.append(Encoder("vae", shape[0] // 2, key[: -len(VAE_KEY)]))
    return found


def encoder_label(contents: Contents) -> str:
    """How the library lists a text-encoder file: "T5-XXL (4096)", "CLIP-L (768)", "fp8" when it is."""
    names = {768: "CLIP-L", 1280: "CLIP-G", 4096: "T5-XXL"}
    parts = [f"{names.get(e.width, e.kind.upper())} ({e.width})" for e in encoders_in(contents) if e.kind != "vae"]
    fp8 = any(d.startswith("F8") for d in contents.dtypes.values())
    return ", ".join(parts) + (" fp8" if fp8 else "")


def _role(part: Part, name: str, encoder: Encoder) -> bool:
    """Whether `encoder` (in a file called `name`, at its prefix) can play `part`: by the name its
    prefix or file gives, else by the width the real encoders have."""
    if part is Part.VAE:
        return encoder.kind == "vae" and encoder.width == 16
    if part is Part.T5:
        return encoder.kind == "t5"
    if encoder.kind != "clip":
        return False
    said = f"{encoder.prefix} {name}".lower()
    other = Part.CLIP_G if part is Part.CLIP_L else Part.CLIP_L
    if part.value in said or part.value.replace("_", "-") in said:
        return True
    if other.value in said or other.value.replace("_", "-") in said:
        return False
    return encoder.width == (768 if part is Part.CLIP_L else 1280)


# ---------------------------------------------------------------------- finding the parts

def find_parts(arch: FlowArchitecture, path: Path, contents: Contents, library_items: Iterable[Any],
               library_folders: list[Path]) -> Found:
    """Every part `arch` needs: in its own file first, then the model library's text encoders and VAEs,
    then a diffusers folder of the same family. A ModelError names what is missing and where it looked."""
    found = Found(looked_in=list(library_folders))
    items = list(library_items)
    for part in PARTS[arch.family]:
        source = (_in_file(part, path, contents) or _in_library(part, arch, items)
                  or _in_pipeline_folder(part, arch, items))
        if source is None:
            raise _missing(part, arch, path, found.looked_in, items)
        found.sources[part] = source
    _check_widths(arch, path, found)
    return found


def _in_file(part: Part, path: Path, contents: Contents) -> Source | None:
    """A part the model's own file carries, at the prefix all-in-one files give it."""
    for encoder in encoders_in(contents):
        if encoder.prefix in PREFIXES[part] and _role(part, path.stem, encoder):
            return Source(path, encoder.prefix, width=encoder.width)
    return None


def _in_library(part: Part, arch: FlowArchitecture, items: list[Any]) -> Source | None:
    from studio.engine.library import ItemKind

    kind = ItemKind.VAE if part is Part.VAE else ItemKind.TEXT_ENCODER
    ranked: list[tuple[int, str, Source]] = []
    for item in (i for i in items if i.kind is kind):
        try:
            contents = read_contents(item.path)
        except ModelError:
            continue
        for encoder in encoders_in(contents):
            if not _role(part, item.path.stem, encoder):
                continue
            score = _preference(part, arch, item.path.stem.lower(), encoder, contents)
            ranked.append((score, item.path.name, Source(item.path, encoder.prefix, width=encoder.width)))
    if not ranked:
        return None
    ranked.sort(key=lambda r: (-r[0], r[1]))
    return ranked[0][2]


def _preference(part: Part, arch: FlowArchitecture, stem: str, encoder: Encoder, contents: Contents) -> int:
    """Which of several fitting files to take: the right width first, then a family named in the file
    name (FLUX's and SD 3's VAEs have the same shape), then full precision over fp8."""
    score = 0
    wanted = arch.widths().get(part)
    if wanted is None or encoder.width == wanted:
        score += 4
    if part is Part.VAE and any(h == stem or h in stem.split("_") or stem.startswith(h) for h in
                                VAE_HINTS[arch.family]):
        score += 2
    if not any(d.startswith("F8") for d in contents.dtypes.values()):
        score += 1
    return score


def _in_pipeline_folder(part: Part, arch: FlowArchitecture, items: list[Any]) -> Source | None:
    from studio.engine.library import ItemKind

    wanted = "Flux" if arch.family is FlowFamily.FLUX else "StableDiffusion3"
    subfolders = DIFFUSERS_SUBFOLDERS if arch.family is FlowFamily.FLUX else SD3_SUBFOLDERS
    for item in (i for i in items if i.kind is ItemKind.DIFFUSERS):
        try:
            cls = json.loads((item.path / "model_index.json").read_text()).get("_class_name", "")
        except (OSError, ValueError, AttributeError):
            continue
        folder = item.path / subfolders.get(part, "")
        if str(cls).startswith(wanted) and part in subfolders and (folder / "config.json").is_file():
            return Source(folder, folder=True)
    return None


def _missing(part: Part, arch: FlowArchitecture, path: Path, looked_in: list[Path], items: list[Any]) -> ModelError:
    from studio.engine.library import ItemKind

    where = (", ".join(str(p) for p in looked_in)
             or "no folders (add one with Model > Add folder or `studio models add`)")
    kind = ItemKind.VAE if part is Part.VAE else ItemKind.TEXT_ENCODER
    have = sorted(i.path.name for i in items if i.kind is kind)
    width = arch.widths().get(part)
    size = f", {width} wide" if width else ""
    return ModelError(
        f"{path.name} is a {arch.label} transformer without its {part.label}{size}: Studio looked inside the file, "
        f"in the model library ({where}) and in its {arch.label.split()[0]} diffusers folders, and found none. "
        f"Put {part.usual_files} in a text_encoders/, clip/ or vae/ folder of the library"
        + (f" (the library's {kind.value} files now: {', '.join(have[:8])})" if have else ""))


def _check_widths(arch: FlowArchitecture, path: Path, found: Found) -> None:
    """Refuse encoders of the wrong width from their headers, before any weights are read."""
    widths: dict[Part, int] = {}
    for part, source in found.sources.items():
        if part is Part.VAE:
            continue
        widths[part] = _source_width(source)
        wanted = arch.widths().get(part)
        if wanted is not None and widths[part] != wanted:
            raise ModelError(f"{source.describe()} is a {widths[part]}-wide text encoder, but {path.name} "
                             f"({arch.label}) reads a {wanted}-wide {part.label}: not the encoder for this model")
    if arch.family is FlowFamily.SD3:
        pooled = widths[Part.CLIP_L] + widths[Part.CLIP_G]
        if pooled != arch.transformer["pooled_projection_dim"]:
            raise ModelError(f"the CLIP-L and CLIP-G text encoders found ({found.sources[Part.CLIP_L].describe()}, "
                             f"{found.sources[Part.CLIP_G].describe()}) give {pooled} pooled features, but "
                             f"{path.name} reads {arch.transformer['pooled_projection_dim']}: they do not belong to it")


def _source_width(source: Source) -> int:
    """A part's width: as its file's header said when it was found, or from a diffusers component's config."""
    if source.width is not None:
        return source.width
    config = json.loads((source.path / "config.json").read_text())
    return int(config.get("d_model") or config.get("hidden_size"))


# ---------------------------------------------------------------------- building the pipeline

def build(arch: FlowArchitecture, path: Path, found: Found, dtype: Any) -> Any:
    """The diffusers pipeline for `arch` from its transformer file and the parts found."""
    import diffusers
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]  # exported lazily

    family = arch.family.value
    transformer = _transformer(arch, path, dtype)
    vae = _vae(found.sources[Part.VAE], family, dtype)
    scheduler_family = "flux-schnell" if arch.family is FlowFamily.FLUX and not arch.guidance_distilled else family
    scheduler_config = _skeleton(scheduler_family, "scheduler", "scheduler_config.json")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    t5 = _t5(found.sources[Part.T5], dtype)
    t5_tokenizer = T5TokenizerFast.from_pretrained(str(CONFIGS / "t5-tokenizer"))
    if arch.family is FlowFamily.FLUX:
        cls = diffusers.FluxFillPipeline if arch.fill else diffusers.FluxPipeline
        return cls(scheduler=scheduler, vae=vae, transformer=transformer,
                   text_encoder=_clip(found.sources[Part.CLIP_L], "clip-l", dtype, projection=False),
                   tokenizer=clip_tokenizer("<|endoftext|>"), text_encoder_2=t5, tokenizer_2=t5_tokenizer)
    return diffusers.StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae,
        text_encoder=_clip(found.sources[Part.CLIP_L], "clip-l", dtype, projection=True),
        tokenizer=clip_tokenizer("<|endoftext|>"),
        text_encoder_2=_clip(found.sources[Part.CLIP_G], "clip-g", dtype, projection=True),
        tokenizer_2=clip_tokenizer("!"), text_encoder_3=t5, tokenizer_3=t5_tokenizer)


def _transformer(arch: FlowArchitecture, path: Path, dtype: Any) -> Any:
    import diffusers

    state = dict(read_tensors(path, arch.prefix, dtype, skip=("text_encoders.", "first_stage_model.", "vae.")))
    if arch.family is FlowFamily.FLUX:
        config = arch.transformer
        converted = key_tables.FLUX.to_diffusers(state, config["num_attention_heads"] * config["attention_head_dim"])
        return _fill(diffusers.FluxTransformer2DModel, config, converted, path.name)
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    converted = convert_sd3_transformer_checkpoint_to_diffusers(state)
    return _fill(diffusers.SD3Transformer2DModel, arch.transformer, converted, path.name)


def _vae(source: Source, family: str, dtype: Any) -> Any:
    from diffusers import AutoencoderKL

    if source.folder:
        return AutoencoderKL.from_pretrained(str(source.path), torch_dtype=dtype, local_files_only=True)
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    state = read_tensors(source.path, source.prefix, dtype)
    config = _skeleton(family, "vae") | vae_shape_config({k: tuple(v.shape) for k, v in state.items()},
                                                         source.path.name, "")
    config["sample_size"] = 1024
    return _fill(AutoencoderKL, config, convert_ldm_vae_checkpoint(state, config), source.path.name)


def _clip(source: Source, skeleton: str, dtype: Any, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    if source.folder:
        return cls.from_pretrained(str(source.path), torch_dtype=dtype, local_files_only=True)
    state = read_tensors(source.path, source.prefix, dtype)
    config = json.loads((CONFIGS / "encoders" / skeleton / "config.json").read_text())
    vocab, width = state["text_model.embeddings.token_embedding.weight"].shape
    config.update(vocab_size=vocab, hidden_size=width, num_attention_heads=max(1, width // 64),
                  intermediate_size=state["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
                  num_hidden_layers=_count({k: () for k in state}, "text_model.encoder.layers."),
                  max_position_embeddings=state["text_model.embeddings.position_embedding.weight"].shape[0],
                  projection_dim=state["text_projection.weight"].shape[0] if "text_projection.weight" in state
                  else width)
    if projection and "text_projection.weight" not in state:
        import torch

        # Files of CLIP-L made for FLUX drop the projection; ComfyUI takes the identity then, and so does Studio.
        state["text_projection.weight"] = torch.eye(width, dtype=dtype)
    state = {k: v for k, v in state.items() if not k.endswith(("position_ids", "logit_scale"))}
    if not projection:
        state.pop("text_projection.weight", None)
    return _fill(cls, CLIPTextConfig(**config), state, source.path.name, nested="text_model.")


def _t5(source: Source, dtype: Any) -> Any:
    from transformers import T5Config, T5EncoderModel

    if source.folder:
        return T5EncoderModel.from_pretrained(str(source.path), torch_dtype=dtype, local_files_only=True)
    state = read_tensors(source.path, source.prefix, dtype)
    shared = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    if shared is None:
        raise ModelError(f"{source.describe()} lacks the T5 token embedding (shared.weight): a damaged file")
    state["shared.weight"] = state["encoder.embed_tokens.weight"] = shared
    config = json.loads((CONFIGS / "encoders" / "t5-xxl" / "config.json").read_text())
    attention = "encoder.block.0.layer.0.SelfAttention."
    heads = state[attention + "relative_attention_bias.weight"].shape[1]
    config.update(vocab_size=shared.shape[0], d_model=shared.shape[1], num_heads=heads,
                  d_kv=state[attention + "q.weight"].shape[0] // heads,
                  d_ff=state["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0],
                  num_layers=_count({k: () for k in state}, "encoder.block."),
                  relative_attention_num_buckets=state[attention + "relative_attention_bias.weight"].shape[0])
    return _fill(T5EncoderModel, T5Config(**config), state, source.path.name)


def _fill(cls: Any, config: Any, state: dict[str, Any], name: str, nested: str = "") -> Any:
    """`cls` built on the meta device and given `state`'s tensors; a tensor it lacks is a damaged file.
    `nested`: a prefix files always write (CLIP's `text_model.`) that some library versions' modules drop."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        module = cls.from_config(config) if isinstance(config, dict) else cls(config)
    expected = set(module.state_dict())
    if nested:
        state = {_nest(k, nested, expected): v for k, v in state.items()}
    missing = sorted(expected - set(state))
    if missing:
        raise ModelError(f"{name} lacks {len(missing)} of the tensors a {cls.__name__} needs (e.g. {missing[0]}): "
                         "a damaged or partial file, or a part of another model")
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False, assign=True)
    return module.eval()


def _nest(key: str, nested: str, expected: set[str]) -> str:
    if key in expected:
        return key
    if key.startswith(nested) and key[len(nested):] in expected:
        return key[len(nested):]
    return nested + key if nested + key in expected else key


def read_tensors(path: Path, prefix: str, dtype: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The tensors under `prefix` (prefix removed, those starting with `skip` left out) in `dtype`. fp8 files are
    widened to `dtype`; ComfyUI's "scaled" fp8 files keep a scale beside each weight (`*.scale_weight`)."""
    state = _all_tensors(path)
    keys = [k for k in state if k.startswith(prefix) and not (skip and k.startswith(skip))]
    scales = {k[: -len(".scale_weight")] for k in keys if k.endswith(".scale_weight")}
    out: dict[str, Any] = {}
    for key in keys:
        if key.endswith((".scale_weight", ".scale_input", "scaled_fp8")):
            continue
        tensor = state[key].to(dtype)
        module = key.rpartition(".")[0]
        if key.endswith(".weight") and module in scales:
            tensor = tensor * state[module + ".scale_weight"].to(dtype)
        out[key[len(prefix):]] = tensor
    return out


class _Lazy(dict):
    """A safetensors file's tensors by name, each read when asked for (so a part costs only its own size)."""

    def __init__(self, handle: Any) -> None:
        super().__init__((k, None) for k in handle.keys())
        self._handle = handle

    def __getitem__(self, key: str) -> Any:
        return self._handle.get_tensor(key)


def _all_tensors(path: Path) -> dict[str, Any]:
    if path.suffix.lower() != ".safetensors":
        from studio.engine.checkpoints import load_pickle_weights_only

        return load_pickle_weights_only(path)
    from safetensors import safe_open

    return _Lazy(safe_open(str(path), framework="pt"))
