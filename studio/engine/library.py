"""The model library: the folders a designer already has (AUTOMATIC1111, ComfyUI, InvokeAI, Studio's own),
read in place, never copied.

Files are sorted by the sub-folder names those tools use (`Stable-diffusion`, `checkpoints`, `Lora`,
`loras`, `embeddings`, `VAE`, `ESRGAN`, `upscale_models`, …) and, where a folder's name says nothing,
by what a .safetensors header holds (read without loading any weights). The list of folders lives in
`library.json` in the data folder, so the GUI and the CLI share it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from studio.engine import checkpoints, flow_files, hashes
from studio.paths import cache_dir
from studio.recipe.errors import ModelError

LIBRARY_FILE = "library.json"
RESCAN_SECONDS = 10.0  # a file dropped into the library is seen by the next lookup after this long
MAX_DEPTH = 6
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


class ItemKind(str, Enum):
    CHECKPOINT = "checkpoint"
    DIFFUSERS = "diffusers"
    LORA = "lora"
    EMBEDDING = "embedding"
    VAE = "vae"
    TEXT_ENCODER = "text-encoder"
    UPSCALER = "upscaler"


# Folder names other tools use, lower-cased (A1111 / ComfyUI / InvokeAI).
FOLDER_KINDS = {
    "stable-diffusion": ItemKind.CHECKPOINT, "checkpoints": ItemKind.CHECKPOINT, "main": ItemKind.CHECKPOINT,
    "unet": ItemKind.CHECKPOINT, "diffusion_models": ItemKind.CHECKPOINT,  # ComfyUI's place for FLUX transformers
    "text_encoders": ItemKind.TEXT_ENCODER, "clip": ItemKind.TEXT_ENCODER, "t5": ItemKind.TEXT_ENCODER,
    "lora": ItemKind.LORA, "loras": ItemKind.LORA, "lycoris": ItemKind.LORA,
    "embeddings": ItemKind.EMBEDDING, "embedding": ItemKind.EMBEDDING, "textual_inversion": ItemKind.EMBEDDING,
    "vae": ItemKind.VAE, "esrgan": ItemKind.UPSCALER, "realesrgan": ItemKind.UPSCALER,
    "upscale_models": ItemKind.UPSCALER, "upscalers": ItemKind.UPSCALER,
}


@dataclass
class LibraryItem:
    kind: ItemKind
    name: str
    path: Path
    size: int
    family: str = ""  # "SD 1.x", "SDXL inpainting", … where the header tells
    native_size: int | None = None
    hash: str | None = None  # the A1111 short hash, once computed
    triggers: list[str] = field(default_factory=list)  # a LoRA's most used training tags

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind.value, "name": self.name, "path": str(self.path), "size": self.size,
                "family": self.family, "native_size": self.native_size, "hash": self.hash,
                "triggers": self.triggers}


# ---------------------------------------------------------------------- the list of folders

def folders(data_dir: Path | None) -> list[Path]:
    """The folders in the library: the data folder's models/ first, then those the user added."""
    found: list[Path] = []
    if data_dir is not None:
        found.append(data_dir / "models")
        try:
            extra = json.loads((data_dir / LIBRARY_FILE).read_text()).get("folders", [])
        except (OSError, ValueError, AttributeError):
            extra = []
        found += [Path(f) for f in extra if isinstance(f, str)]
    return found


def add_folder(data_dir: Path, folder: Path) -> Path:
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise ModelError(f"{folder} is not a folder")
    current = [str(f) for f in folders(data_dir)[1:]]
    if str(folder) not in current:
        current.append(str(folder))
        _save(data_dir, current)
    return folder


def remove_folder(data_dir: Path, folder: Path) -> None:
    target = str(folder.expanduser().resolve())
    current = [str(f) for f in folders(data_dir)[1:]]
    if target not in current:
        raise ModelError(f"{folder} is not in the library")
    _save(data_dir, [f for f in current if f != target])


def _save(data_dir: Path, entries: list[str]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (LIBRARY_FILE + ".tmp")
    tmp.write_text(json.dumps({"folders": entries}, indent=2))
    os.replace(tmp, data_dir / LIBRARY_FILE)


# ---------------------------------------------------------------------- scanning

def scan(data_dir: Path | None, kinds: tuple[ItemKind, ...] | None = None) -> list[LibraryItem]:
    """Every model file and pipeline folder under the library's folders (skipping unreadable ones)."""
    items: list[LibraryItem] = []
    seen: set[Path] = set()
    cache = cache_dir(data_dir)
    table = hashes.read_cache(cache)  # once for the whole scan, not once a file
    for root in folders(data_dir):
        # A folder added directly (A1111's models/Lora, embeddings/) says what its files are by its own name.
        for item in _walk(root, root, FOLDER_KINDS.get(root.name.lower()), 0):
            if item.path in seen or (kinds is not None and item.kind not in kinds):
                continue
            seen.add(item.path)
            item.hash = item.hash or _known_hash(item, cache, table)
            items.append(item)
    return items


@dataclass
class LibraryIndex:
    """The library as generations look things up in it (LoRAs, VAEs, embeddings): scanned at most every
    RESCAN_SECONDS, and again at once when a name is missing, so a file just added is found without
    waiting and a generation does not walk the folders for every tag."""

    data_dir: Path | None
    _items: list[LibraryItem] = field(default_factory=list)
    _scanned: float = float("-inf")

    def items(self, kind: ItemKind) -> list[LibraryItem]:
        if time.monotonic() - self._scanned > RESCAN_SECONDS:
            self.refresh()
        return [i for i in self._items if i.kind is kind]

    def refresh(self) -> None:
        self._items, self._scanned = scan(self.data_dir), time.monotonic()

    def find(self, kind: ItemKind, name: str) -> LibraryItem:
        """The item of `kind` called `name` (file stem, case-insensitive), or a ModelError listing what there is."""
        for fresh in (False, True):
            if fresh:
                self.refresh()
            items = self.items(kind)
            for item in items:
                if item.name.lower() == name.lower():
                    return item
        have = ", ".join(sorted(i.name for i in items)[:12]) or "none"
        raise ModelError(f"no {kind.value} named {name!r} in the model library (it has: {have})")


def _walk(root: Path, folder: Path, kind: ItemKind | None, depth: int) -> Iterator[LibraryItem]:
    if depth > MAX_DEPTH:
        return
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return
    if (folder / "model_index.json").is_file():
        yield _pipeline_folder(folder)
        return
    for path in entries:
        try:
            if path.is_dir():
                yield from _walk(root, path, FOLDER_KINDS.get(path.name.lower(), kind), depth + 1)
            elif path.suffix.lower() in WEIGHT_SUFFIXES and not path.name.startswith("."):
                item = _file_item(path, kind)
                if item is not None:
                    yield item
        except (OSError, KeyError, IndexError, ValueError):
            continue  # a broken link, a file that vanished mid-scan, a header of the wrong shape: skip it


def _pipeline_folder(folder: Path) -> LibraryItem:
    # The Hugging Face cache keeps models as models--org--name/snapshots/<commit>/.
    name = folder.parent.parent.name.split("--")[-1] if folder.parent.name == "snapshots" else folder.name
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    try:
        cls = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
    except (OSError, ValueError, AttributeError):
        cls = ""
    family = ("SDXL" if "XL" in str(cls) else "FLUX" if "Flux" in str(cls) else "SD 3" if "Diffusion3" in str(cls)
              else "SD" if cls else "")
    return LibraryItem(ItemKind.DIFFUSERS, name, folder, size, family)


def _file_item(path: Path, kind: ItemKind | None) -> LibraryItem | None:
    size = path.stat().st_size
    item = LibraryItem(kind or ItemKind.CHECKPOINT, path.stem, path, size)
    if path.suffix.lower() != ".safetensors":
        return item if kind is not None or path.suffix.lower() in (".ckpt",) else None
    try:
        contents = checkpoints.read_contents(path)
    except ModelError:
        return item if kind is not None else None  # shown where the user put it; loading says what is wrong
    sniffed = _sniff(contents)
    if kind is None or kind is ItemKind.CHECKPOINT:
        item.kind = sniffed or ItemKind.CHECKPOINT
    if item.kind is ItemKind.CHECKPOINT:
        try:
            detect = flow_files.detect if flow_files.is_flow(contents) else checkpoints.detect
            arch = detect(contents, path.name)
            item.family, item.native_size = arch.label, arch.native_size
        except (ModelError, KeyError, IndexError, ValueError):
            item.family = "unknown"
    elif item.kind is ItemKind.TEXT_ENCODER:
        item.family = flow_files.encoder_label(contents)
    elif item.kind is ItemKind.VAE:
        latents = [e.width for e in flow_files.encoders_in(contents) if e.kind == "vae"]
        item.family = {4: "SD 1.x / 2.x / XL", 16: "FLUX / SD 3"}.get(latents[0], "") if latents else ""
    elif item.kind is ItemKind.LORA:
        item.family = lora_family(contents)
        item.triggers = lora_triggers(contents.metadata)
        # kohya writes A1111's LoRA hash into the file; A1111 prefers it to hashing (hashes.lora_hash).
        written = contents.metadata.get("sshs_model_hash", "")
        item.hash = written[:hashes.LORA_SHORT].lower() if len(written) >= hashes.LORA_SHORT else None
    return item


def _sniff(contents: checkpoints.Contents) -> ItemKind | None:
    keys = contents.shapes.keys()
    if any(k.startswith(checkpoints.UNET) for k in keys) or flow_files.is_flow(contents):
        return ItemKind.CHECKPOINT
    if any(e.kind != "vae" for e in flow_files.encoders_in(contents)):
        return ItemKind.TEXT_ENCODER
    if any(".lora_down." in k or ".lora_A." in k or k.startswith("lora_") for k in keys):
        return ItemKind.LORA
    if any(k.startswith(("encoder.down.", "decoder.up.")) for k in keys):
        return ItemKind.VAE
    if {"clip_l", "clip_g"} & set(keys) or {"emb_params", "string_to_param"} & set(keys):
        return ItemKind.EMBEDDING
    return None


def lora_family(contents: checkpoints.Contents) -> str:
    """The family a kohya LoRA was trained for, from its text-encoder names or cross-attention width."""
    keys = contents.shapes.keys()
    if any(k.startswith(("lora_te2_", "lora_te1_")) for k in keys):
        return "SDXL"
    width = context_width(contents)
    return {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}.get(width or 0, "")


def context_width(contents: checkpoints.Contents) -> int | None:
    """The text-feature width a LoRA's cross-attention keys expect (768 SD 1.x, 1024 SD 2.x, 2048 SDXL)."""
    for key, shape in contents.shapes.items():
        if "attn2" in key and ("to_k" in key or "to_v" in key) and (".lora_down." in key or ".lora_A." in key):
            return shape[1]
    return None


def lora_triggers(metadata: dict[str, str], limit: int = 8) -> list[str]:
    """The tags a kohya LoRA was trained with most often (its `ss_tag_frequency`), or its modelspec trigger."""
    if metadata.get("modelspec.trigger_phrase"):
        return [metadata["modelspec.trigger_phrase"]]
    try:
        datasets = json.loads(metadata.get("ss_tag_frequency", "{}"))
    except ValueError:
        return []
    counts: dict[str, int] = {}
    for tags in datasets.values() if isinstance(datasets, dict) else []:
        for tag, n in (tags.items() if isinstance(tags, dict) else []):
            counts[tag.strip()] = counts.get(tag.strip(), 0) + int(n)
    return [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1]) if t][:limit]


def _known_hash(item: LibraryItem, cache: Path | None, table: dict) -> str | None:
    """The hash computed earlier for an item as it is now (a LoRA's own, written hash is read by _file_item)."""
    if item.kind is ItemKind.LORA:
        known = hashes.cached(item.path, cache, item.path.suffix.lower() == ".safetensors", table)
        return known[:hashes.LORA_SHORT] if known else None
    known = hashes.cached(item.path, cache, table=table)
    return known[:hashes.SHORT] if known else None


def size_text(n: float) -> str:
    """A file size as people read it: 336 B, 63.4 KB, 6.9 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def match_loras(prompt: str, loras: list[dict[str, object]], items: list[LibraryItem]) -> str:
    """`prompt` with each `<lora:name:…>` the library has no file for renamed to the library LoRA whose
    hash matches the one recorded beside it (A1111's `Lora hashes`): a LoRA renamed on this machine is
    still found when an image made elsewhere is regenerated. Only hashes already known are compared
    (cached by the library panel's background hashing, or written in the file): `items` is a scan the
    caller already has, so this reads no file at all."""
    items = [i for i in items if i.kind is ItemKind.LORA]
    names = {i.name.lower() for i in items}
    wanted = [(str(lora.get("name") or ""), str(lora.get("hash") or "")) for lora in loras]
    wanted = [(name, digest) for name, digest in wanted if name and digest and name.lower() not in names]
    for item in items if wanted else []:
        for name, digest in wanted:
            if item.hash and item.hash.startswith(digest.lower()[:hashes.LORA_SHORT]):
                prompt = re.sub(rf"<lora:{re.escape(name)}(?=[:>])", f"<lora:{item.name}", prompt,
                                flags=re.IGNORECASE)
    return prompt


def hash_missing(data_dir: Path | None, items: list[LibraryItem]) -> None:
    """Compute and cache the short hash of each item that has none (slow for big files: run it off the GUI)."""
    cache = cache_dir(data_dir)
    for item in items:
        if item.hash is None:
            item.hash = (hashes.lora_hash(item.path, cache)[:hashes.LORA_SHORT] if item.kind is ItemKind.LORA
                         else hashes.short_hash(item.path, cache))
