"""Where the files that ship with Studio live."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "resources"
BUILTIN_MODEL_NAME = "studio-shapes"
BUILTIN_MODEL = ROOT / "models" / BUILTIN_MODEL_NAME
ICONS = ROOT / "icons"
CONFIGS = ROOT / "configs"  # single-file model skeletons and the CLIP tokenizer
