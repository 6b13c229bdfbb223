"""AUTOMATIC1111's short model hash (the first 10 hex digits of the file's sha256), computed once.

A full SDXL checkpoint is 6.5 GB: hashing it takes tens of seconds, so the hash is kept in a small
JSON cache keyed by the file's path, size and modification time, and a changed file is hashed anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

CACHE_FILE = "hashes.json"
SHORT = 10  # A1111's model hash
LORA_SHORT = 12  # A1111's LoRA "shorthash" in `Lora hashes`


def weight_files(path: Path) -> list[Path]:
    """The files whose bytes are the model: a single file, or a pipeline folder's UNet weights."""
    if path.is_file():
        return [path]
    for part in ("unet", "transformer"):  # SD 1.x/2.x/XL, or FLUX / SD 3
        folder = path / part
        found = sorted(folder.glob("*.safetensors")) or sorted(p for p in folder.glob("*") if p.is_file())
        if found:
            return found
    return []


def sha256_of(path: Path, skip_header: bool = False) -> str:
    """sha256 of the model's bytes; `skip_header`: of a safetensors file's tensor data only (after its
    8-byte length and JSON header), which is A1111's "addnet" hash for LoRAs."""
    digest = hashlib.sha256()
    for f in weight_files(path):
        with open(f, "rb") as fh:
            if skip_header:
                fh.seek(8 + int.from_bytes(fh.read(8), "little"))
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def lora_hash(path: Path, cache_dir: Path | None = None) -> str:
    """A1111's LoRA hash: the file's own `sshs_model_hash` (kohya writes it), else the sha256 of its
    tensor data; `Lora hashes` carries its first 12 digits."""
    from studio.engine.checkpoints import read_contents

    if path.suffix.lower() == ".safetensors":
        written = read_contents(path).metadata.get("sshs_model_hash", "")
        if len(written) >= LORA_SHORT:
            return written.lower()
        return full_hash(path, cache_dir, tensors_only=True)
    return full_hash(path, cache_dir)


def short_hash(path: Path, cache_dir: Path | None = None, length: int = SHORT) -> str:
    """The A1111 short hash of `path`, from the cache in `cache_dir` when the files did not change."""
    return full_hash(path, cache_dir)[:length]


def full_hash(path: Path, cache_dir: Path | None = None, tensors_only: bool = False) -> str:
    known = cached(path, cache_dir, tensors_only)
    if known is not None:
        return known
    value = sha256_of(path, skip_header=tensors_only)
    if cache_dir is not None:
        cache = _read(cache_dir / CACHE_FILE)
        cache[_key(path, tensors_only)] = {"stamp": _stamp(path), "sha256": value}
        _write(cache_dir / CACHE_FILE, cache)
    return value


def cached(path: Path, cache_dir: Path | None, tensors_only: bool = False,
           table: dict | None = None) -> str | None:
    """The sha256 computed earlier for `path` as it is now (same files, sizes and times), else None.
    `table`: the cache as `read_cache` returned it, for callers looking up many files at once."""
    if cache_dir is None:
        return None
    hit = (table if table is not None else read_cache(cache_dir)).get(_key(path, tensors_only))
    try:
        ok = isinstance(hit, dict) and hit.get("stamp") == _stamp(path) and isinstance(hit.get("sha256"), str)
    except OSError:
        return None
    return hit["sha256"] if ok else None  # type: ignore[index]


def read_cache(cache_dir: Path | None) -> dict:
    return _read(cache_dir / CACHE_FILE) if cache_dir is not None else {}


def _key(path: Path, tensors_only: bool) -> str:
    return ("tensors:" if tensors_only else "") + str(path.resolve())


def _stamp(path: Path) -> list[list[object]]:
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in weight_files(path)]


def _read(path: Path | None) -> dict:
    try:
        data = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}  # a missing or damaged cache only costs a re-hash
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary file of its own: the GUI, the library's pool thread and the backend may all write.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only data folder: the hash is right, just not remembered
