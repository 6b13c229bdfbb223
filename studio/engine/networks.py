"""LoRAs and textual-inversion embeddings on the loaded pipeline, as a prompt asks for them.

LoRAs (kohya / A1111 `.safetensors`, SD 1.x, 2.x and XL) go through diffusers' `load_lora_weights`
(with peft); each request sets the active set and weights, and a request without LoRAs runs the bare
model (the adapters are removed, so nothing of them lingers). Embeddings load once by name the first
time a prompt uses the word, into both text encoders for SDXL (`clip_l`, `clip_g`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.engine import checkpoints, hashes, library
from studio.engine.library import ItemKind, LibraryIndex, LibraryItem
from studio.engine.prompts import LoraTag
from studio.paths import cache_dir
from studio.recipe.errors import ModelError


@dataclass(frozen=True)
class AppliedLora:
    name: str
    weight: float
    hash: str
    path: Path


@dataclass
class Networks:
    """What is applied to one pipeline right now (the Engine keeps one per loaded model)."""

    loras: tuple[Path, ...] = ()
    embeddings: set[str] = field(default_factory=set)

    def apply_loras(self, pipe: Any, index: LibraryIndex, tags: list[LoraTag]) -> list[AppliedLora]:
        """Make exactly `tags` active on `pipe`; a ModelError names a LoRA that is missing or for another family."""
        items = [index.find(ItemKind.LORA, tag.name) for tag in tags]
        for item in items:
            _check_family(item, pipe)
        paths = tuple(item.path for item in items)
        if paths != self.loras:
            if self.loras:
                pipe.unload_lora_weights()
                self.loras = ()
            for item in items:
                try:
                    pipe.load_lora_weights(str(item.path), adapter_name=_adapter(item.path))
                except (ValueError, KeyError, RuntimeError, OSError) as exc:
                    pipe.unload_lora_weights()
                    raise ModelError(f"the LoRA {item.name} could not be applied: "
                                     f"{str(exc).strip().splitlines()[0][:200]}") from exc
            self.loras = paths
        if items:
            pipe.set_adapters([_adapter(p) for p in paths], adapter_weights=[t.weight for t in tags])
        cache = cache_dir(index.data_dir)
        return [AppliedLora(item.name, tag.weight, hashes.lora_hash(item.path, cache)[:hashes.LORA_SHORT], item.path)
                for item, tag in zip(items, tags)]

    def load_embeddings(self, pipe: Any, index: LibraryIndex, *texts: str) -> list[str]:
        """Load every library embedding whose name appears as a word in `texts`; return the names used."""
        words = set(re.findall(r"[\w\-.]+", " ".join(texts)))
        used: list[str] = []
        if getattr(pipe, "unet", None) is None:
            return used  # FLUX and SD 3: Studio loads no textual-inversion embeddings into T5 models
        for item in index.items(ItemKind.EMBEDDING):
            if item.name not in words:
                continue
            if item.name not in self.embeddings:
                try:
                    _load_embedding(pipe, item)
                except ModelError:
                    continue  # made for another family: the word stays a word, as in A1111
                self.embeddings.add(item.name)
            used.append(item.name)
        return used


def _adapter(path: Path) -> str:
    return re.sub(r"\W", "_", path.stem)


def _check_family(item: LibraryItem, pipe: Any) -> None:
    """Refuse a LoRA whose cross-attention width does not match the model before diffusers half-applies it."""
    if item.path.suffix.lower() != ".safetensors" or getattr(pipe, "unet", None) is None:
        return  # FLUX and SD 3 LoRAs: diffusers' loader says whether one fits
    contents = checkpoints.read_contents(item.path)
    width = library.context_width(contents)
    wanted = int(pipe.unet.config.cross_attention_dim)
    if width is not None and width != wanted:
        family = library.lora_family(contents) or f"{width}-wide text features"
        raise ModelError(f"the LoRA {item.name} is for {family}, not for this model "
                         f"({wanted}-wide text features): choose a LoRA made for it")


def _load_embedding(pipe: Any, item: LibraryItem) -> None:
    try:
        if getattr(pipe, "text_encoder_2", None) is not None:
            from safetensors.torch import load_file

            state = load_file(str(item.path))
            if "clip_l" not in state or "clip_g" not in state:
                raise ModelError(f"the embedding {item.name} is not an SDXL embedding (it has no clip_l/clip_g)")
            pipe.load_textual_inversion(state["clip_l"], token=item.name, text_encoder=pipe.text_encoder,
                                        tokenizer=pipe.tokenizer)
            pipe.load_textual_inversion(state["clip_g"], token=item.name, text_encoder=pipe.text_encoder_2,
                                        tokenizer=pipe.tokenizer_2)
        else:
            pipe.load_textual_inversion(str(item.path), token=item.name)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors, torch and diffusers each raise their own kind
        if isinstance(exc, (KeyboardInterrupt, MemoryError)):
            raise
        raise ModelError(f"the embedding {item.name} does not fit this model: "
                         f"{str(exc).strip().splitlines()[0][:200]}") from exc
