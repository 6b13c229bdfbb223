"""Find and load models: the built-in one, diffusers folders, single-file .safetensors checkpoints.

Nothing here ever reaches for a hub: every load is `local_files_only`, and HF_HUB_OFFLINE is set
before diffusers is imported. Pickle checkpoints are refused unless the caller allows them, because
unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from studio.engine import checkpoints, flow_files, hashes
from studio.engine.checkpoints import Architecture
from studio.engine.flow_files import FlowArchitecture
from studio.engine.memory import MemoryPlan, MemoryPreset, model_bytes, transformer_bytes
from studio.engine.memory import apply as apply_memory
from studio.engine.memory import plan as plan_memory
from studio.recipe.errors import ModelError
from studio.resources import BUILTIN_MODEL, BUILTIN_MODEL_NAME

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth")  # single files read through torch's weights-only unpickler
CHECKPOINT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
DEFAULT_CFG = 7.0  # the Stable Diffusion convention, for models that suggest nothing
SUGGESTIONS_FILE = "studio.json"  # optional, in a model folder: {"cfg": 3.0}


class ModelKind(str, Enum):
    BUILTIN = "builtin"
    DIFFUSERS = "diffusers"
    SINGLE_FILE = "single-file"


@dataclass(frozen=True)
class ModelEntry:
    """A model Studio can load: where it is and what it is."""

    name: str
    path: Path
    kind: str  # a ModelKind value

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "path": str(self.path), "kind": self.kind}

    def suggested_cfg(self) -> float | None:
        """The guidance scale the model suggests: its folder's `studio.json`, else its family's (FLUX dev's
        distilled 3.5, SD 3.5's 4.5), else None (SD's 7 applies).

        Small models trained on a narrow world want far less guidance than SD's 7: the built-in
        model follows colours best at 2-3 and worst at 7. A missing, unreadable or out-of-range
        suggestion is no suggestion; it never stops a model from loading.
        """
        try:
            value = json.loads((self.path / SUGGESTIONS_FILE).read_text()).get("cfg")
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 1.0 <= value <= 30.0:
            return float(value)
        family = flow_files.suggestions_for(self.path)
        return family[0] if family else None

    def suggested_steps(self) -> int | None:
        """FLUX.1 schnell draws in 4 steps (it was distilled for them); other models suggest nothing."""
        family = flow_files.suggestions_for(self.path)
        return family[1] if family else None


@dataclass
class LoadedModel:
    """One loaded pipeline and the variants that share its weights."""

    entry: ModelEntry
    pipe: Any  # the text-to-image pipeline
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    weights_hash: str
    scheduler_config: dict[str, Any]
    variants: dict[str, Any] = field(default_factory=dict)
    architecture: Architecture | FlowArchitecture | None = None  # for single files: what detection found
    parts: str = ""  # for a flow transformer file: the files its encoders and VAE came from
    own_vae: Any = None  # the model's own VAE while another one is in use
    vae_name: str = ""  # the VAE in use from the library, "" for the model's own
    memory: MemoryPlan = field(default_factory=lambda: MemoryPlan(MemoryPreset.HIGH))

    @property
    def flow(self) -> bool:
        """A flow-matching transformer (FLUX, SD 3.x) rather than a UNet (SD 1.x, 2.x, XL)."""
        return getattr(self.pipe, "unet", None) is None

    @property
    def flux(self) -> bool:
        return "Flux" in type(self.pipe).__name__

    def suggested_cfg(self) -> float | None:
        return self.entry.suggested_cfg()

    def suggested_steps(self) -> int | None:
        return self.entry.suggested_steps()

    @property
    def guidance_distilled(self) -> bool:
        """FLUX.1 dev and Fill read guidance as an input; schnell has none and ignores the slider."""
        return bool(getattr(self.pipe.transformer.config, "guidance_embeds", False)) if self.flux else False

    @property
    def fill(self) -> bool:
        """FLUX.1 Fill reads the picture and mask beside the latents: every mode goes through its pipeline."""
        return self.flux and flow_files.is_fill(self.pipe.transformer.config)

    def blocks(self) -> list[Any]:
        """The denoiser's blocks, where a stop check before each one lands a cancel inside a step."""
        if self.flow:
            t = self.pipe.transformer
            return [*t.transformer_blocks, *getattr(t, "single_transformer_blocks", [])]
        u = self.pipe.unet
        return [b for b in (*u.down_blocks, u.mid_block, *u.up_blocks) if b is not None]

    @property
    def native_size(self) -> int:
        if self.flow:
            return int(self.pipe.default_sample_size) * int(self.pipe.vae_scale_factor)
        return int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)

    @property
    def inpainting(self) -> bool:
        """An inpainting UNet (9 input channels) or FLUX Fill runs every mode through its inpaint pipeline."""
        return self.fill if self.flow else int(self.pipe.unet.config.in_channels) == 9

    @property
    def label(self) -> str:
        """The family a person recognises, e.g. "SDXL inpainting"."""
        if self.architecture is not None:
            return self.architecture.label
        name = type(self.pipe).__name__
        return ("FLUX" if "Flux" in name else "SD 3" if "StableDiffusion3" in name
                else "SDXL" if "XL" in name else "SD")

    def use_vae(self, vae: Any, name: str) -> None:
        """Decode with `vae` (None: the model's own) in every mode's pipeline."""
        if self.own_vae is None:
            self.own_vae = self.pipe.vae
        chosen = vae if vae is not None else self.own_vae
        for pipe in (self.pipe, *self.variants.values()):
            pipe.vae = chosen
        self.vae_name = name if vae is not None else ""

    def variant(self, mode: str) -> Any:
        """The pipeline for `mode`, made once with `from_pipe` so no weights are copied."""
        if mode == "txt2img" or self.inpainting:
            return self.pipe
        if mode not in self.variants:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            factory = AutoPipelineForImage2Image if mode == "img2img" else AutoPipelineForInpainting
            self.variants[mode] = factory.from_pipe(self.pipe)
            self.variants[mode].set_progress_bar_config(disable=True)
        return self.variants[mode]


def list_models(data_dir: Path | None = None) -> list[ModelEntry]:
    """The built-in model (when installed) and every checkpoint and pipeline folder in the model library."""
    from studio.engine import library

    found: list[ModelEntry] = []
    if (BUILTIN_MODEL / "model_index.json").exists():
        found.append(ModelEntry(BUILTIN_MODEL_NAME, BUILTIN_MODEL, ModelKind.BUILTIN.value))
    for item in library.scan(data_dir, (library.ItemKind.CHECKPOINT, library.ItemKind.DIFFUSERS)):
        kind = ModelKind.DIFFUSERS if item.kind is library.ItemKind.DIFFUSERS else ModelKind.SINGLE_FILE
        found.append(ModelEntry(item.name, item.path, kind.value))
    return found


def resolve(ref: str | Path, data_dir: Path | None = None, allow_pickle: bool = False) -> ModelEntry:
    """Turn a model name or path into a ModelEntry, or explain why it cannot be used."""
    text = str(ref)
    if text in ("builtin", BUILTIN_MODEL_NAME):
        if not (BUILTIN_MODEL / "model_index.json").exists():
            raise ModelError(f"the built-in model is not installed (expected it in {BUILTIN_MODEL}); "
                             "train it with `python -m studio.train_builtin`")
        return ModelEntry(BUILTIN_MODEL_NAME, BUILTIN_MODEL, "builtin")
    for entry in list_models(data_dir):
        if entry.name == text:
            return entry
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelError(f"no model named or at {text!r}; `studio models` lists the installed ones")
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise ModelError(f"{path} is not a diffusers pipeline folder (it has no model_index.json)")
        _check_components(path)
        return ModelEntry(path.name, path, "diffusers")
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return ModelEntry(path.stem, path, "single-file")
    raise ModelError(f"{path.name} is not a model: expected a diffusers folder or a checkpoint file "
                     f"({', '.join(CHECKPOINT_SUFFIXES)})")


def _check_components(folder: Path) -> None:
    """Explain a folder that cannot load before diffusers does: its messages name classes, not files."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder.name}/model_index.json is not readable JSON ({_first_line(exc)})") from exc
    if not isinstance(index, dict):
        raise ModelError(f"{folder.name}/model_index.json is not a pipeline index (expected a JSON object)")
    listed = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v and v[0]]
    if not listed:
        raise ModelError(f"{folder.name}/model_index.json lists no components (unet, vae, text encoder, …): "
                         "not a pipeline folder")
    missing = [k for k in listed if not (folder / k).is_dir()]
    if missing:
        raise ModelError(f"{folder.name} is incomplete: model_index.json lists {', '.join(missing)} but the "
                         f"folder has no {'subfolder' if len(missing) == 1 else 'subfolders'} of that name")


def pick_device(requested: str = "auto") -> tuple[Any, Any]:
    """(device, dtype): CUDA, then MPS, then CPU; half precision on GPUs, fp32 on the CPU."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            requested = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            requested = "mps"
        else:
            requested = "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError("CUDA was requested but no CUDA device is available")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError("MPS was requested but this machine has no Metal device")
    if requested not in ("cuda", "mps", "cpu"):
        raise ModelError(f"unknown device {requested!r}; use auto, cpu, cuda or mps")
    dtype = torch.float32 if requested == "cpu" else torch.float16
    return torch.device(requested), dtype


def load(entry: ModelEntry, device: str = "auto", memory: MemoryPreset | str = MemoryPreset.AUTO,
         allow_pickle: bool = False, hash_cache: Path | None = None, data_dir: Path | None = None) -> LoadedModel:
    """Load `entry` onto the device; raise ModelError with a readable reason on any failure."""
    import torch  # noqa: F401  (import order: torch before diffusers)

    dev, dtype = pick_device(device)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    architecture: Architecture | FlowArchitecture | None = None
    parts = ""
    try:
        if entry.kind == ModelKind.SINGLE_FILE:
            contents = checkpoints.read_contents(entry.path)
            if flow_files.is_flow(contents):
                architecture, found = _flow_parts(entry.path, contents, data_dir)
                dtype = flow_dtype(dev, dtype)
                pipe = flow_files.build(architecture, entry.path, found, dtype)
                parts = found.describe(entry.path)
            else:
                architecture = checkpoints.detect(contents, entry.path.name)
                pipe = _from_single_file(entry.path, architecture, dtype)
        else:
            if _flow_folder(entry.path):
                dtype = flow_dtype(dev, dtype)
            pipe = _from_folder(entry, dtype, allow_pickle)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as exc:
        raise ModelError(f"could not load the model at {entry.path}: {_first_line(exc)}") from exc
    if not hasattr(pipe, "unet") and not hasattr(pipe, "transformer"):
        raise ModelError(f"{entry.name} is a {type(pipe).__name__}; Studio runs SD 1.x/2.x/XL, SD 3 and FLUX "
                         "text-to-image pipelines")
    memory_plan = plan_memory(memory, dev, model_bytes(pipe), transformer_bytes=transformer_bytes(pipe))
    apply_memory(pipe, dev, memory_plan)
    if isinstance(architecture, Architecture) and not architecture.prediction_known:
        architecture = _settle_prediction(pipe, architecture)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(entry, pipe, dev, dtype, hashes.short_hash(entry.path, hash_cache),
                       dict(pipe.scheduler.config), architecture=architecture, memory=memory_plan, parts=parts)


def _flow_parts(path: Path, contents: checkpoints.Contents,
                data_dir: Path | None) -> tuple[FlowArchitecture, flow_files.Found]:
    """A flow transformer file's architecture and the files its text encoders and VAE come from."""
    from studio.engine import library

    arch = flow_files.detect(contents, path.name)
    kinds = (library.ItemKind.TEXT_ENCODER, library.ItemKind.VAE, library.ItemKind.DIFFUSERS)
    return arch, flow_files.find_parts(arch, path, contents, library.scan(data_dir, kinds), library.folders(data_dir))


def _flow_folder(folder: Path) -> bool:
    try:
        cls = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
    except (OSError, ValueError, AttributeError):
        return False
    return str(cls).startswith(("Flux", "StableDiffusion3"))


def flow_dtype(device: Any, dtype: Any) -> Any:
    """FLUX and SD 3 overflow in fp16: on a GPU they run in bf16 where it exists (as their authors ship them)."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return dtype


def _from_folder(entry: ModelEntry, dtype: Any, allow_pickle: bool) -> Any:
    from diffusers import DiffusionPipeline

    kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": True}
    index = json.loads((entry.path / "model_index.json").read_text())
    if "safety_checker" in index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    with warnings.catch_warnings():
        # `torch_dtype` is the spelling every supported diffusers release understands.
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        return DiffusionPipeline.from_pretrained(str(entry.path), use_safetensors=not allow_pickle, **kwargs)


def _from_single_file(path: Path, arch: Architecture, dtype: Any) -> Any:
    """`from_single_file` with a config folder made from the family's skeleton and the file's shapes:
    without `config`, diffusers reaches for the hub even when told to stay local."""
    import diffusers

    cls = getattr(diffusers, checkpoints.pipeline_class_name(arch))
    kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": True, **checkpoints.tokenizers(arch)}
    if arch.family is not checkpoints.Family.SDXL:
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    with tempfile.TemporaryDirectory(prefix="studio-config-") as folder:
        config = checkpoints.write_config(arch, Path(folder))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            pipe = cls.from_single_file(str(path), config=str(config), **kwargs)
    missing = [f"{name}.{p}" for name in ("unet", "vae", "text_encoder", "text_encoder_2")
               if getattr(pipe, name, None) is not None
               for p, t in getattr(pipe, name).named_parameters() if t.is_meta]
    if missing:
        raise ModelError(f"{path.name} lacks {len(missing)} of the weights a {arch.label} model needs "
                         f"(e.g. {missing[0]}): a damaged or partial file")
    return pipe


def load_vae(path: Path, model: LoadedModel) -> Any:
    """A standalone VAE file for `model`: its sizes from the file, the rest from the model's own VAE config
    (scaling factor, fp32 upcast), so it decodes the model's latents exactly as the model's own would."""
    from diffusers import AutoencoderKL

    config = checkpoints.vae_config(checkpoints.read_contents(path), path.name)
    own = dict(model.pipe.vae.config)
    if config["latent_channels"] != own["latent_channels"]:
        raise ModelError(f"{path.name} makes {config['latent_channels']}-channel latents but {model.entry.name} "
                         f"uses {own['latent_channels']}: it is a VAE for another family")
    with tempfile.TemporaryDirectory(prefix="studio-vae-") as folder:
        (Path(folder) / "vae").mkdir()
        merged = {k: v for k, v in own.items() if not k.startswith("_")} | config
        (Path(folder) / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **merged}))
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning)
                vae = AutoencoderKL.from_single_file(str(path), config=folder, subfolder="vae",
                                                     torch_dtype=model.dtype, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"the VAE {path.name} could not be loaded: {_first_line(exc)}") from exc
    if any(p.is_meta for p in vae.parameters()):
        raise ModelError(f"the VAE {path.name} lacks weights a VAE needs: a damaged or partial file")
    return vae.to(model.device)


def _settle_prediction(pipe: Any, arch: Architecture) -> Architecture:
    """Tell SD 2.x's epsilon (512 base) from v-prediction (768) models by their output, as AUTOMATIC1111
    does: at the last timestep on a flat input, a v-prediction UNet's output falls well below the input."""
    import torch

    unet = pipe.unet
    device = pipe._execution_device  # where offloaded weights are brought to run (never "meta")
    x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, device=device, dtype=unet.dtype)
    context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, device=device, dtype=unet.dtype)
    with torch.inference_mode():
        out = unet(x, torch.tensor([999], device=device), encoder_hidden_states=context).sample
    drift = float((out - x[:, :out.shape[1]].to(out.device)).mean())
    prediction = checkpoints.Prediction.V if drift < -1 else checkpoints.Prediction.EPSILON
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction.value)
    pipe.unet.config.sample_size = arch.with_prediction(prediction).native_size // pipe.vae_scale_factor
    return arch.with_prediction(prediction)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
