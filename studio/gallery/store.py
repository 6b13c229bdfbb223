"""The gallery: a SQLite index (WAL) of image files kept beside it, with their recipes.

Layout of a data folder::

    gallery.sqlite3            the index (plus -wal/-shm while open, .bak-vN after an upgrade)
    images/YYYY/MM/*.png       the images, each carrying its own recipe
    thumbnails/<size>/...      a cache, safe to delete

Every thread gets its own connection (the GUI reads while the worker writes); WAL lets readers
run beside the one writer and only ever see committed rows. A save writes and fsyncs the file
before the row is committed, so a row never points at a half-written file, and a file whose row
was lost (crash between the two) is found and re-imported by `reconcile()`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from studio.gallery import files, importer, schema
from studio.gallery.errors import DamagedError, GalleryError, NotFoundError, StorageFullError, translate, translated
from studio.gallery.importer import ImportResult
from studio.gallery.records import COLUMNS, ImageRecord, Query, fts_query, parse_time, row_values, utc_text
from studio.recipe import metadata
from studio.recipe.request import SCHEMA, content_hash, png_bytes

DB_NAME = "gallery.sqlite3"
DEFAULT_TEMPLATE = "{date}-{seed}-{prompt}"
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM images"
_INSERT_COLUMNS = ("path", "width", "height", "created_at", "model_name", "model_hash", "mode", "prompt",
                   "negative_prompt", "seed", "steps", "cfg", "scheduler", "strength", "parent_id",
                   "recipe_json", "image_sha256")


@dataclass
class ReconcileReport:
    """What `reconcile()` changed: rows marked missing, rows whose file came back, files imported."""

    missing: int = 0
    restored: int = 0
    imported: int = 0
    temp_removed: int = 0
    errors: list[tuple[Path, str]] = field(default_factory=list)


class Gallery:
    """Images and their recipes in a data folder. Thread-safe: each thread uses its own connection."""

    def __init__(self, data_dir: Path | str, *, reconcile: bool = False, timeout_s: float = 10.0) -> None:
        """Open (creating or upgrading) the gallery in `data_dir`. `timeout_s`: how long to wait for
        another program's write lock before `LockedError`. Reconcile is opt-in here because it
        stats every file; `Gallery.open` does it (or call `reconcile()` on a worker thread)."""
        self.timeout_s = timeout_s
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.images_dir = self.data_dir / "images"
        self.thumbnails_dir = self.data_dir / "thumbnails"
        self.db_path = self.data_dir / DB_NAME
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            with translated(f"open the gallery at {self.data_dir}"):
                self.images_dir.mkdir(parents=True, exist_ok=True)
                schema.check(self.db_path, timeout_s)
                schema.migrate(self._conn(), self.db_path)
        except DamagedError as exc:
            self.close()
            detail = str(exc.__cause__ or exc)
            raise DamagedError(f"the gallery database {self.db_path} is damaged ({detail}); the pictures themselves "
                               f"are safe in {self.images_dir}. Move {DB_NAME} aside (keep it: it may be "
                               "recoverable) and start Studio again: the window rebuilds the gallery from the "
                               "pictures' own metadata (favourites and the trash are not in them)") from exc
        if reconcile:
            self.reconcile()

    @classmethod
    def open(cls, data_dir: Path | str, *, reconcile: bool = True, timeout_s: float = 10.0) -> Gallery:
        """Open (creating or upgrading) the gallery and reconcile it with the files on disk."""
        return cls(data_dir, reconcile=reconcile, timeout_s=timeout_s)

    # ------------------------------------------------------------------ connections

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise GalleryError("the gallery is closed")
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in `transaction`), so a
        # plain read never holds a transaction open and never blocks the writer's checkpoints.
        conn = sqlite3.connect(self.db_path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable against app crashes; WAL + fsynced files
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -32000")  # 32 MB of pages: the 100k-row index stays hot
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection. Call when no other thread is still using the gallery."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that commits on success and rolls back on any exception."""
        conn = self._conn()
        with translated("write to the gallery"):
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise translate(exc, "write to the gallery") from exc
            raise

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with translated("read the gallery"):
            return self._conn().execute(sql, tuple(params)).fetchall()

    # ------------------------------------------------------------------ queries

    def find(self, query: Query | None = None, *, offset: int = 0, limit: int = 200,
             **filters: Any) -> list[ImageRecord]:
        """One page of images matching `query` (or the keyword filters of `Query`), newest first.

        In id order SQLite's own plan is the fast one: the first page walks the table backwards from
        the newest row, and a search looks its matches up by id in order (no sort of every match).
        """
        query = query or Query(**filters)
        where, params = query.where()
        rows = self._read(f"{_SELECT} WHERE {where} ORDER BY {query.order()} LIMIT ? OFFSET ?",
                          [*params, limit, offset])
        return [ImageRecord.from_row(row, self.data_dir) for row in rows]

    def count(self, query: Query | None = None, **filters: Any) -> int:
        """How many images `find` would page through with the same filters."""
        query = query or Query(**filters)
        if query.search_only():
            # Counted inside the full-text index, less the (few) soft-deleted matches: no join
            # over every match with the images table.
            match = fts_query(query.search)
            deleted = self._read("SELECT count(*) FROM images_fts WHERE images_fts MATCH ? AND rowid IN "
                                 "(SELECT id FROM images WHERE deleted_at IS NOT NULL)", [match])[0][0]
            return self._fts_count(match) - int(deleted)
        where, params = query.where()
        return int(self._read(f"SELECT count(*) FROM images WHERE {where}", params)[0][0])

    def _fts_count(self, match: str) -> int:
        return int(self._read("SELECT count(*) FROM images_fts WHERE images_fts MATCH ?", [match])[0][0])

    def get(self, image_id: int) -> ImageRecord:
        rows = self._read(f"{_SELECT} WHERE id = ?", [image_id])
        if not rows:
            raise NotFoundError(f"no image with id {image_id} in the gallery")
        return ImageRecord.from_row(rows[0], self.data_dir)

    def children(self, image_id: int) -> list[ImageRecord]:
        """Images made from this one (inpaints, variations), oldest first; soft-deleted ones left out."""
        rows = self._read(f"{_SELECT} WHERE parent_id = ? AND deleted_at IS NULL ORDER BY created_at, id", [image_id])
        return [ImageRecord.from_row(row, self.data_dir) for row in rows]

    def parent(self, image_id: int) -> ImageRecord | None:
        parent_id = self.get(image_id).parent_id
        return self.get(parent_id) if parent_id is not None else None

    def models(self) -> list[str]:
        """Model names in use, for a filter menu."""
        rows = self._read("SELECT DISTINCT model_name FROM images WHERE model_name IS NOT NULL ORDER BY model_name")
        return [row[0] for row in rows]

    # ------------------------------------------------------------------ saving

    def save(self, image: Image.Image, recipe: Mapping[str, Any], parent_id: int | None = None,
             inputs: Iterable[Image.Image | None] = ()) -> int:
        """Store a generated image with its recipe; return its id once it is durable. `inputs` (the init
        image and the mask it was made from) are kept by content hash, so the recipe replays.

        Order: inputs, then the PNG (with the recipe in it) to a temp file, fsync, rename, fsync the folder,
        then the row. Disk full raises `StorageFullError` and leaves neither a file nor a row behind.
        """
        recipe = self._complete_recipe(image, recipe, parent_id)
        for source in inputs:
            if source is not None:
                self.keep_input(source)
        created = (parse_time(recipe["created_at"]) or dt.datetime.now(dt.timezone.utc)).astimezone()
        try:
            data = metadata.encode_png(image, recipe)
        except (OSError, ValueError, TypeError) as exc:  # an image mode PNG cannot hold, a non-JSON value
            raise GalleryError(f"cannot save: {exc}") from None
        name = files.new_image_name(created, recipe.get("seed"))
        target = self._place(data, files.image_folder(self.data_dir, created), name)
        try:
            values = row_values(recipe, image.width, image.height)
            return self._insert(self._relative(target), recipe, values, files.sha256_bytes(data))
        except BaseException:
            files.remove_durably(target)  # no row, so no file: nothing half-saved
            raise

    def keep_input(self, image: Image.Image) -> str:
        """Keep an input image (init, mask) under inputs/<content hash>.png, once; return the hash."""
        data = png_bytes(image)
        digest = content_hash(data)  # image_hash's rule, on the very bytes kept
        target = files.input_path(self.data_dir, digest)
        if not target.is_file():
            with translated("keep the input image"):
                target.parent.mkdir(parents=True, exist_ok=True)
                files.atomic_write(target, data)
        return digest

    def input_image(self, digest: str) -> Image.Image | None:
        """A kept input image by its hash, or None when it is gone (or unreadable)."""
        from studio.images import ImageFileError, open_image

        path = files.input_path(self.data_dir, digest)
        try:
            return open_image(path) if path.is_file() else None
        except ImageFileError:
            return None

    @staticmethod
    def _place(data: bytes, folder: Path, name: str) -> Path:
        """Durably write a new file under a name no other file has (temp, fsync, rename, fsync dir)."""
        with translated("save the image"):
            temp = files.write_temp(folder, data, ".png")
            try:
                target = files.unused_path(folder, Path(name).stem, Path(name).suffix)
                os.replace(temp, target)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            files.fsync_dir(folder)
        return target

    def _complete_recipe(self, image: Image.Image, recipe: Mapping[str, Any], parent_id: int | None) -> dict[str, Any]:
        out = {k: v for k, v in recipe.items() if k != "source"}
        out.setdefault("schema", SCHEMA)
        if out.get("created_at") is None:
            out["created_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
        if out.get("width") is None or out.get("height") is None:
            out["width"], out["height"] = image.width, image.height
        if parent_id is not None:
            out["parent_id"] = parent_id
        try:
            return metadata.validate_recipe(out)
        except metadata.MetadataError as exc:
            raise GalleryError(f"cannot save: invalid recipe ({exc})") from None

    def _insert(self, relative: str, recipe: Mapping[str, Any], values: dict[str, Any], sha256: str | None,
                *, replace: bool = True) -> int:
        """Insert a row for a file already in place. On a path clash (reconcile raced us) the row is
        updated (`replace`) or left alone; either way the row's id comes back."""
        created = parse_time(recipe.get("created_at"))
        row = {**values, "path": relative, "created_at": utc_text(created), "image_sha256": sha256,
               "recipe_json": json.dumps(dict(recipe), ensure_ascii=False, allow_nan=False),
               "parent_id": recipe.get("parent_id") if type(recipe.get("parent_id")) is int else None}
        names = ", ".join(_INSERT_COLUMNS)
        marks = ", ".join(f":{c}" for c in _INSERT_COLUMNS)
        update = ", ".join(f"{c} = excluded.{c}" for c in _INSERT_COLUMNS if c != "path")
        conflict = f"DO UPDATE SET {update}" if replace else "DO NOTHING"
        with self.transaction() as conn:
            if row["parent_id"] is not None and not conn.execute("SELECT 1 FROM images WHERE id = ?",
                                                                 (row["parent_id"],)).fetchone():
                row["parent_id"] = None  # the parent was purged meanwhile: keep the image, drop the link
            found = conn.execute(f"INSERT INTO images ({names}) VALUES ({marks}) "
                                 f"ON CONFLICT(path) {conflict} RETURNING id",
                                 row).fetchone()
            if found is None:
                found = conn.execute("SELECT id FROM images WHERE path = ?", (relative,)).fetchone()
            return int(found[0])

    def _relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.data_dir).as_posix()

    # ------------------------------------------------------------------ edits

    def set_favorite(self, image_id: int, favorite: bool = True) -> None:
        with self.transaction() as conn:
            if conn.execute("UPDATE images SET favorite = ? WHERE id = ?", (int(favorite), image_id)).rowcount == 0:
                raise NotFoundError(f"no image with id {image_id} in the gallery")

    def delete(self, ids: Iterable[int]) -> int:
        """Soft delete (undo with `undelete`); return how many were deleted."""
        return self._set_deleted(ids, utc_text(None))

    def undelete(self, ids: Iterable[int]) -> int:
        return self._set_deleted(ids, None)

    def _set_deleted(self, ids: Iterable[int], when: str | None) -> int:
        wanted = "deleted_at IS NULL" if when else "deleted_at IS NOT NULL"
        with self.transaction() as conn:
            return sum(conn.execute(f"UPDATE images SET deleted_at = ? WHERE id = ? AND {wanted}", (when, i)).rowcount
                       for i in ids)

    def purge(self, older_than: dt.timedelta = dt.timedelta(days=30)) -> int:
        """Really remove images soft-deleted longer ago than `older_than` (files, thumbnails, rows).

        Files go first: if interrupted, a row is left without its file (marked missing, purged next
        time) rather than a file without a row, which reconcile would bring back from the dead.
        """
        cutoff = utc_text(dt.datetime.now(dt.timezone.utc) - older_than)
        rows = self._read("SELECT id, path FROM images WHERE deleted_at IS NOT NULL AND deleted_at <= ?", [cutoff])
        with translated("remove deleted images"):
            for _, relative in rows:
                (self.data_dir / relative).unlink(missing_ok=True)
                files.remove_thumbnails(self.thumbnails_dir, relative)
            for folder in {(self.data_dir / r).parent for _, r in rows}:
                files.fsync_dir(folder)
        with self.transaction() as conn:
            conn.executemany("DELETE FROM images WHERE id = ?", [(image_id,) for image_id, _ in rows])
        return len(rows)

    # ------------------------------------------------------------------ files

    def thumbnail(self, image: int | str | Path, size: int = 256) -> Path:
        """A cached JPEG thumbnail (made on first use, remade if deleted); raises if the image is gone."""
        source = self.get(image).file if isinstance(image, int) else Path(image)
        source = source if source.is_absolute() else self.data_dir / source
        try:
            key = source.resolve().relative_to(self.data_dir).as_posix()
        except ValueError:
            key = str(source.resolve())
        if not source.exists():
            raise NotFoundError(f"image file {source} is missing")
        return files.make_thumbnail(source, files.thumbnail_path(self.thumbnails_dir, key, size), size)

    def reconcile(self, *, temp_grace_s: float = 60.0) -> ReconcileReport:
        """Make the index agree with the files: mark rows whose file vanished (or came back), import
        image files that have no row, and sweep temp files older than `temp_grace_s`."""
        report = ReconcileReport()
        rows = self._read("SELECT id, path, missing FROM images")
        known = {path for _, path, _ in rows}
        changes = []
        for image_id, relative, missing in rows:
            exists = (self.data_dir / relative).is_file()
            if exists == bool(missing):
                changes.append((0 if exists else 1, image_id))
                report.restored += exists
                report.missing += not exists
        if changes:
            with self.transaction() as conn:
                conn.executemany("UPDATE images SET missing = ? WHERE id = ?", changes)
        for path in importer.scan_images(self.images_dir, temp_grace_s, report):
            if path.relative_to(self.data_dir).as_posix() in known:
                continue
            try:
                self._add_file(path, copy=False, warnings=report.errors)
                report.imported += 1
            except StorageFullError:
                raise
            except GalleryError as exc:
                report.errors.append((path, str(exc)))
        return report

    def import_paths(self, paths: Iterable[Path | str]) -> ImportResult:
        """Copy image files (or folders of them) into the gallery with the recipe they carry.

        Returns the new (or, for an identical file already here, existing) ids in order; `.errors`
        lists files skipped and why, `.warnings` files imported without their unreadable metadata.
        """
        result = ImportResult()
        for path in importer.expand(paths, result):
            try:
                image_id, added = self._add_file(path, copy=True, warnings=result.warnings)
            except StorageFullError:
                raise
            except GalleryError as exc:
                result.errors.append((path, str(exc)))
                continue
            result.append(image_id)
            if not added:
                result.already.append((path, image_id))
        return result

    def _add_file(self, path: Path, *, copy: bool, warnings: list[tuple[Path, str]]) -> tuple[int, bool]:
        """Index one image file (copied into the gallery first with `copy`); returns its id and whether
        it is new (False: the same image, byte for byte, is already in the gallery)."""
        probe = importer.probe(path)
        if probe.warning:
            warnings.append((path, probe.warning))
        with translated(f"import {path.name}"):
            sha256 = files.sha256_file(path)
            if copy:
                same = self._read("SELECT id FROM images WHERE image_sha256 = ? AND deleted_at IS NULL LIMIT 1",
                                  [sha256])
                if same:
                    return int(same[0][0]), False  # already here: importing twice makes no duplicate
                created = parse_time(probe.recipe.get("created_at")) or probe.modified
                target = files.copy_into(path, files.image_folder(self.data_dir, created.astimezone()),
                                         importer.import_name(path, created))
            else:
                target = path
        recipe = {**probe.recipe, "created_at": probe.recipe.get("created_at") or probe.modified.isoformat()}
        try:
            return self._insert(self._relative(target), recipe, row_values(recipe, probe.width, probe.height),
                                sha256, replace=False), True
        except BaseException:
            if copy:
                files.remove_durably(target)
            raise

    def export(self, ids: Iterable[int], to_dir: Path | str, fmt: str = "png", strip_metadata: bool = False,
               template: str = DEFAULT_TEMPLATE) -> list[Path]:
        """Write copies of images to `to_dir`, named from `template`, never overwriting a file.

        Template fields: {id} {date} {seed} {prompt} {model} {steps} {cfg} {width} {height}.
        PNG keeps the metadata chunks; JPEG/WebP carry the A1111 text in EXIF UserComment.
        """
        fmt = fmt.lower()
        if fmt not in files.EXPORT_FORMATS:
            raise GalleryError(f"unknown export format {fmt!r}; choose png, jpeg or webp")
        fmt = "jpeg" if fmt == "jpg" else fmt
        out: list[Path] = []
        for image_id in ids:
            record = self.get(image_id)
            if not record.file.is_file():
                raise NotFoundError(f"the file of image {image_id} is missing ({record.path})")
            stem = files.sanitize_name(files.expand_template(template, _template_fields(record)))
            with translated(f"export image {image_id}"):
                data = files.export_bytes(record.file, record.recipe(), fmt, strip_metadata)
                out.append(files.write_export(Path(to_dir), stem, files.EXPORT_FORMATS[fmt], data))
        return out


def _template_fields(record: ImageRecord) -> dict[str, Any]:
    created = parse_time(record.created_at) or dt.datetime.now(dt.timezone.utc)
    prompt = " ".join(record.prompt.split()[:12])[:60]
    return {"id": record.id, "date": f"{created.astimezone():%Y%m%d-%H%M%S}",
            "seed": record.seed if record.seed is not None else "", "prompt": prompt,
            "model": record.model_name or "", "steps": record.steps or "", "cfg": record.cfg or "",
            "width": record.width, "height": record.height}
