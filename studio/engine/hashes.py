"""AUTOMATIC1111's short model hash (the first 10 hex digits of the file's sha256), computed once.

A full SDXL checkpoint is 6.5 GB: hashing it takes tens of seconds, so the hash is kept in a small
JSON cache keyed by the file's path, size and modification time, and a changed file is hashed anew.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_FILE = "hashes.json"
SHORT = 10  # A1111's model hash
LORA_SHORT = 12  # A1111's LoRA "shorthash" in `Lora hashes`


def weight_files(path: Path) -> list[Path]:
    """The files whose bytes are the model: a single file, or a pipeline folder's UNet weights."""
    if path.is_file():
        return [path]
    unet = path / "unet"
    return sorted(unet.glob("*.safetensors")) or sorted(p for p in unet.glob("*") if p.is_file())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    for f in weight_files(path):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def short_hash(path: Path, cache_dir: Path | None = None, length: int = SHORT) -> str:
    """The A1111 short hash of `path`, from the cache in `cache_dir` when the files did not change."""
    return full_hash(path, cache_dir)[:length]


def full_hash(path: Path, cache_dir: Path | None = None) -> str:
    known = cached(path, cache_dir)
    if known is not None:
        return known
    value = sha256_of(path)
    if cache_dir is not None:
        cache = _read(cache_dir / CACHE_FILE)
        cache[str(path.resolve())] = {"stamp": _stamp(path), "sha256": value}
        _write(cache_dir / CACHE_FILE, cache)
    return value


def cached(path: Path, cache_dir: Path | None) -> str | None:
    """The sha256 computed earlier for `path` as it is now (same files, sizes and times), else None."""
    if cache_dir is None:
        return None
    hit = _read(cache_dir / CACHE_FILE).get(str(path.resolve()))
    try:
        ok = isinstance(hit, dict) and hit.get("stamp") == _stamp(path) and isinstance(hit.get("sha256"), str)
    except OSError:
        return None
    return hit["sha256"] if ok else None  # type: ignore[index]


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
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only data folder: the hash is right, just not remembered
