"""Plain records the gallery hands out, the query filter, and the recipe -> row mapping."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Sort = Literal["newest", "oldest"]  # by the time an image came into the gallery

COLUMNS = ("id", "path", "width", "height", "created_at", "model_name", "model_hash", "mode", "prompt",
           "negative_prompt", "seed", "steps", "cfg", "scheduler", "strength", "parent_id", "favorite",
           "deleted_at", "missing", "recipe_json", "image_sha256")
_TOKEN = re.compile(r"\w")


@dataclass(frozen=True)
class ImageRecord:
    """One gallery row. `path` is relative to the data folder `root`; `file` is the absolute path."""

    id: int
    path: str
    root: Path = field(repr=False, compare=False)
    width: int
    height: int
    created_at: str
    model_name: str | None
    model_hash: str | None
    mode: str | None
    prompt: str
    negative_prompt: str
    seed: int | None
    steps: int | None
    cfg: float | None
    scheduler: str | None
    strength: float | None
    parent_id: int | None
    favorite: bool
    deleted_at: str | None
    missing: bool
    recipe_json: str
    image_sha256: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...], root: Path) -> ImageRecord:
        values = dict(zip(COLUMNS, row))
        values["favorite"] = bool(values["favorite"])
        values["missing"] = bool(values["missing"])
        return cls(root=root, **values)

    @property
    def file(self) -> Path:
        """Absolute path of the image file (made on demand: Path joins cost more than the row)."""
        return self.root / self.path

    def recipe(self) -> dict[str, Any]:
        """The stored recipe (an empty dict for an image imported without metadata)."""
        try:
            value = json.loads(self.recipe_json)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI's `gallery list --json` row)."""
        out = {name: getattr(self, name) for name in COLUMNS if name != "recipe_json"}
        out["file"] = str(self.file)
        return out


@dataclass(frozen=True)
class Query:
    """What the grid shows: every filter is optional; `search` is full text over both prompts."""

    search: str = ""
    favorites: bool = False
    model: str | None = None
    since: dt.datetime | dt.date | str | None = None  # inclusive
    until: dt.datetime | dt.date | str | None = None  # exclusive
    seed: int | None = None
    trash: bool = False  # True lists soft-deleted images instead
    sort: Sort = "newest"

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["deleted_at IS NOT NULL" if self.trash else "deleted_at IS NULL"]
        params: list[Any] = []
        match = fts_query(self.search)
        if match:
            clauses.append("id IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)")
            params.append(match)
        if self.favorites:
            clauses.append("favorite = 1")
        if self.model is not None:
            clauses.append("model_name = ?")
            params.append(self.model)
        if self.since is not None:
            clauses.append("created_at >= ?")
            params.append(utc_text(self.since))
        if self.until is not None:
            clauses.append("created_at < ?")
            params.append(utc_text(self.until))
        if self.seed is not None:
            clauses.append("seed = ?")
            params.append(self.seed)
        return " AND ".join(clauses), params

    def search_only(self) -> bool:
        """Full-text search over live images and nothing else: the case `Gallery` plans by hand."""
        return bool(fts_query(self.search)) and not (self.trash or self.favorites or self.model is not None
                                                     or self.since is not None or self.until is not None
                                                     or self.seed is not None)

    def order(self) -> str:
        # By the time an image came into the gallery: ids only grow, so an import appears at the top
        # like a new picture, while its own date (`created_at`, kept from the file) stays in the record.
        return "id ASC" if self.sort == "oldest" else "id DESC"


def fts_query(text: str) -> str:
    """User text -> a safe FTS5 query: each word a quoted phrase, the last one a prefix (as you type).

    Quoting means no user input is ever FTS syntax, so a stray `"` or `AND` cannot raise an error.
    """
    words = [w for w in text.split() if _TOKEN.search(w)][:16]
    if not words:
        return ""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    if len(words[-1]) > 1:  # a one-letter prefix matches nearly everything and is slow to expand
        quoted[-1] += "*"
    return " AND ".join(quoted)


def utc_text(value: dt.datetime | dt.date | str | None) -> str:
    """Timestamps as UTC 'YYYY-MM-DDTHH:MM:SS.ffffffZ', whose text order is time order.

    Naive values are local time (what a person typing a date means); a date is its local midnight.
    """
    if value is None:
        moment = dt.datetime.now(dt.timezone.utc)
    elif isinstance(value, str):
        moment = dt.datetime.fromisoformat(value.strip())
    elif isinstance(value, dt.datetime):
        moment = value
    else:
        moment = dt.datetime(value.year, value.month, value.day)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive = local
    return f"{moment.astimezone(dt.timezone.utc):%Y-%m-%dT%H:%M:%S.%f}Z"


def parse_time(value: Any) -> dt.datetime | None:
    """A recipe's `created_at` as an aware datetime, or None if absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.astimezone()


def _typed(value: Any, kind: type) -> Any:
    if kind is float and type(value) in (int, float):
        return float(value)
    return value if type(value) is kind else None


def row_values(recipe: Mapping[str, Any], width: int, height: int) -> dict[str, Any]:
    """The indexed columns of a row, taken from a (validated) recipe; absent fields become NULL."""
    model = recipe.get("model") if isinstance(recipe.get("model"), Mapping) else {}
    return {
        "width": width, "height": height,
        "model_name": _typed(model.get("name"), str), "model_hash": _typed(model.get("hash"), str),
        "mode": _typed(recipe.get("mode"), str),
        "prompt": _typed(recipe.get("prompt"), str) or "", "negative_prompt": _typed(recipe.get("negative_prompt"), str) or "",
        "seed": _typed(recipe.get("seed"), int), "steps": _typed(recipe.get("steps"), int),
        "cfg": _typed(recipe.get("cfg"), float), "scheduler": _typed(recipe.get("scheduler"), str),
        "strength": _typed(recipe.get("strength"), float),
    }
