"""Where the files that ship with Studio live.

In a checkout they are `resources/` beside the code; an installed Studio (wheel, pipx, PyInstaller)
carries the same folder inside the package as `studio._resources` (pyproject's package-dir).
"""

from __future__ import annotations

from pathlib import Path


def _root() -> Path:
    checkout = Path(__file__).resolve().parent.parent / "resources"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent / "_resources"


ROOT = _root()
BUILTIN_MODEL_NAME = "studio-shapes"
BUILTIN_MODEL = ROOT / "models" / BUILTIN_MODEL_NAME
ICONS = ROOT / "icons"
CONFIGS = ROOT / "configs"  # single-file model skeletons and the CLIP tokenizer
