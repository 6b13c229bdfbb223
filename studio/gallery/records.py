"""Plain records the gallery hands out, the query filter, and the recipe -> row mapping."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from studio.recipe.request import section

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
    ids: tuple[int, ...] | None = None  # only these images (which of a run's images a filter lets through)
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
        if self.ids is not None:
            clauses.append(f"id IN ({', '.join('?' * len(self.ids))})" if self.ids else "0")
            params.extend(self.ids)
        return " AND ".join(clauses), params

    def search_only(self) -> bool:
        """Full-text search over live images and nothing else: `Gallery.count` answers it inside the index."""
        return bool(fts_query(self.search)) and not (self.trash or self.favorites or self.model is not None
                                                     or self.since is not None or self.until is not None
                                                     or self.seed is not None or self.ids is not None)

    def order(self) -> str:
        # By the time an image came into the gallery: ids only grow, so an import appears at the top
        # like a new picture, while its own date (`created_at`, kept from the file) stays in the record.
        return "id ASC" if self.sort == "oldest" else "id DESC"


SEARCH_SYNTAX = ('every word must appear (in any order, case and accents ignored, the last one as a prefix); '
                 'OR between words finds either ("fox OR owl night"); "quoted words" match as a phrase')
_OPERATORS = ("AND", "OR")
MAX_TERMS = 16


def fts_query(text: str) -> str:
    """User text -> a safe FTS5 query (SEARCH_SYNTAX): terms are ANDed, `OR` joins its neighbours,
    "quoted words" are one phrase, and the last bare word is a prefix (as you type).

    Each term is a quoted FTS5 string and the operators are written here, so no user input is ever
    FTS syntax: a stray `"`, `NEAR(` or a dangling `OR` cannot raise an error.
    """
    terms = [(t, phrase) for t, phrase in _terms(text) if _is_operator(t, phrase) or _TOKEN.search(t)]
    terms = terms[:2 * MAX_TERMS]  # room for MAX_TERMS words with an operator between each two
    last = max((k for k, (t, phrase) in enumerate(terms) if not _is_operator(t, phrase)), default=-1)
    groups: list[list[str]] = []  # AND of ORs: `a b OR c` -> a AND (b OR c), as web searches read it
    join_next = False
    for k, (term, phrase) in enumerate(terms):
        if _is_operator(term, phrase):
            join_next = term == "OR" and bool(groups)
            continue
        quoted = '"' + term.replace('"', '""') + '"'
        if k == last and not phrase and len(term) > 1:
            quoted += "*"  # a one-letter prefix matches nearly everything and is slow to expand
        if join_next:
            groups[-1].append(quoted)
        else:
            groups.append([quoted])
        join_next = False
    return " AND ".join(g[0] if len(g) == 1 else "(" + " OR ".join(g) + ")" for g in groups)


def _terms(text: str) -> list[tuple[str, bool]]:
    """Words and "quoted phrases" (an unclosed quote runs to the end), each with whether it was quoted."""
    return [(m.group(1).strip(), True) if m.group(1) is not None else (m.group(2), False)
            for m in re.finditer(r'"([^"]*)"?|([^\s"]+)', text.replace("\0", " "))]  # SQLite ends a string at NUL


def _is_operator(term: str, phrase: bool) -> bool:
    return not phrase and term in _OPERATORS


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
    model = section(recipe, "model")
    return {
        "width": width, "height": height,
        "model_name": _typed(model.get("name"), str), "model_hash": _typed(model.get("hash"), str),
        "mode": _typed(recipe.get("mode"), str),
        "prompt": _typed(recipe.get("prompt"), str) or "",
        "negative_prompt": _typed(recipe.get("negative_prompt"), str) or "",
        "seed": _typed(recipe.get("seed"), int), "steps": _typed(recipe.get("steps"), int),
        "cfg": _typed(recipe.get("cfg"), float), "scheduler": _typed(recipe.get("scheduler"), str),
        "strength": _typed(recipe.get("strength"), float),
    }
