"""Finding and probing image files for import and reconcile (no database here)."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.gallery import files
from studio.gallery.errors import GalleryError
from studio.images import ImageFileError, open_image
from studio.recipe import metadata

if TYPE_CHECKING:
    from studio.gallery.store import ReconcileReport


class ImportResult(list[int]):
    """The ids of the files given, in order (a file already in the gallery gives its existing id),
    plus the files that were skipped and the warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[tuple[Path, str]] = []    # skipped: not imported
        self.warnings: list[tuple[Path, str]] = []  # imported, but their metadata was unusable
        self.already: list[tuple[Path, int]] = []   # not copied again: the same image is in the gallery (its id)

    @property
    def added(self) -> int:
        """How many images are new in the gallery."""
        return len(self) - len(self.already)

    def summary(self) -> str:
        """"imported 2 images, 1 already in the gallery": importing a file again says it added nothing."""
        text = f"imported {self.added} image{'s' if self.added != 1 else ''}"
        return text + (f", {len(self.already)} already in the gallery" if self.already else "")


@dataclass
class Probe:
    """What import needs to know about a file: its size, its recipe, when it was made."""

    width: int
    height: int
    recipe: dict[str, Any] = field(default_factory=dict)
    modified: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    warning: str | None = None


def probe(path: Path) -> Probe:
    """Decode the whole image (a truncated file must fail here, not later) and read its recipe."""
    try:
        modified = path.stat().st_mtime
        size = open_image(path, upright=False).size
    except FileNotFoundError:
        raise GalleryError(f"{path.name}: no such file") from None
    except ImageFileError as exc:
        raise GalleryError(f"{path.name}: not a readable image: {exc.reason}") from None
    result = Probe(width=size[0], height=size[1])
    result.modified = dt.datetime.fromtimestamp(modified, dt.timezone.utc)
    try:
        result.recipe = metadata.read_recipe(path) or {}
    except metadata.MetadataError as exc:
        result.warning = f"metadata ignored: {exc}"
    return result


def expand(paths: Iterable[Path | str], result: ImportResult) -> Iterator[Path]:
    """Files given, and image files inside folders given (recursively, in name order)."""
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in files.IMAGE_SUFFIXES
                              and not p.name.startswith(files.TEMP_PREFIX))
        elif path.is_file():
            yield path
        else:
            result.errors.append((path, f"{path}: no such file or folder"))


def scan_images(images_dir: Path, temp_grace_s: float, report: ReconcileReport) -> Iterator[Path]:
    """Image files under images/; temp files older than the grace period are removed on the way.

    The grace period keeps a save in flight in another process from losing its temp file.
    """
    cutoff = time.time() - temp_grace_s
    for folder, _, names in os.walk(images_dir):
        for name in sorted(names):
            path = Path(folder) / name
            if name.startswith(files.TEMP_PREFIX):
                try:
                    if path.stat().st_mtime <= cutoff:
                        path.unlink()
                        report.temp_removed += 1
                except FileNotFoundError:
                    pass
            elif path.suffix.lower() in files.IMAGE_SUFFIXES:
                yield path


def import_name(source: Path, created: dt.datetime) -> str:
    """`YYYYMMDD-HHMMSS-<original name>.<ext>` for a copy in the gallery."""
    stem = files.sanitize_name(source.stem)[:80]
    return f"{created.astimezone():%Y%m%d-%H%M%S}-{stem}{source.suffix.lower()}"
