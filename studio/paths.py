"""Where Studio keeps its data: `--data-dir`, else $STUDIO_HOME, else the platform's user data folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(data: Path | None) -> Path | None:
    """The data folder's `cache/` (preview maps, model hashes), or None without a data folder."""
    return data / "cache" if data is not None else None


def data_dir(override: str | Path | None = None) -> Path:
    if override:
        path = Path(override).expanduser()
    elif os.environ.get("STUDIO_HOME"):
        path = Path(os.environ["STUDIO_HOME"]).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("studio", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
