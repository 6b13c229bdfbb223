"""The gallery index: schema and migrations, search, filters, reconcile, delete/undo, threads, faults."""

from __future__ import annotations

import datetime as dt
import errno
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from studio.gallery import Gallery, GalleryError, LockedError, NotFoundError, Query, StorageFullError, files, schema
from studio.recipe import metadata


def recipe(prompt: str = "a red fox", seed: int = 1, **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"schema": 1, "app": "studio", "mode": "txt2img", "prompt": prompt,
                           "negative_prompt": "blurry",
                           "steps": 20, "cfg": 7.0, "seed": seed, "scheduler": "Euler a",
                           "model": {"name": "studio-shapes", "hash": "abc1234567", "path": "/m"}}
    out.update(changes)
    return out


def save(gallery: Gallery, prompt: str = "a red fox", seed: int = 1, parent_id: int | None = None,
         **changes: Any) -> int:
    image = Image.new("RGB", (16, 16), (seed % 256, 80, 160))
    return gallery.save(image, recipe(prompt, seed, **changes), parent_id=parent_id)


@pytest.fixture
def gallery(data_dir: Path):
    with Gallery(data_dir) as opened:
        yield opened


def ids(records: list[Any]) -> list[int]:
    return [r.id for r in records]


# ----------------------------------------------------------------------------------- schema

def test_new_gallery_is_configured(gallery: Gallery) -> None:
    conn = sqlite3.connect(gallery.db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    own = gallery._conn()
    assert own.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert own.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert not list(gallery.data_dir.glob("*.bak-v*"))  # nothing to back up on a fresh database


V1_SCHEMA = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE, width INTEGER NOT NULL,
    height INTEGER NOT NULL, created_at TEXT NOT NULL, model_name TEXT, model_hash TEXT, mode TEXT,
    prompt TEXT NOT NULL DEFAULT '', negative_prompt TEXT NOT NULL DEFAULT '', seed INTEGER, steps INTEGER,
    cfg REAL, scheduler TEXT, strength REAL, parent_id INTEGER REFERENCES images(id) ON DELETE SET NULL,
    favorite INTEGER NOT NULL DEFAULT 0, deleted_at TEXT, recipe_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX images_by_date ON images(created_at, id);
PRAGMA user_version = 1;
"""


def test_older_database_is_backed_up_and_upgraded(data_dir: Path) -> None:
    db = sqlite3.connect(data_dir / "gallery.sqlite3")
    db.executescript(V1_SCHEMA)
    db.executemany("INSERT INTO images (path, width, height, created_at, prompt, seed) VALUES (?, 8, 8, ?, ?, ?)",
                   [("images/a.png", "2024-01-01T00:00:00.000000Z", "old lighthouse", 5),
                    ("images/b.png", "2024-01-02T00:00:00.000000Z", "old castle", 6)])
    db.commit()
    db.close()

    with Gallery(data_dir) as gallery:
        conn = gallery._conn()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
        columns = {row[1] for row in conn.execute("PRAGMA table_info(images)")}
        assert {"missing", "image_sha256"} <= columns
        assert ids(gallery.find(search="lighthouse")) == [1]  # old rows are in the new search index
        assert gallery.get(2).missing is False
        new_id = save(gallery, "new castle")
        assert ids(gallery.find(search="castle")) == [new_id, 2]

    backup = sqlite3.connect(data_dir / "gallery.sqlite3.bak-v1")
    assert backup.execute("PRAGMA user_version").fetchone()[0] == 1
    assert backup.execute("SELECT count(*) FROM images").fetchone()[0] == 2


def test_newer_database_is_refused(data_dir: Path) -> None:
    db = sqlite3.connect(data_dir / "gallery.sqlite3")
    db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    db.close()
    with pytest.raises(GalleryError, match="newer Studio"):
        Gallery(data_dir)


def test_migration_failure_rolls_back(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, "CREATE TABLE broken (;"])
    monkeypatch.setattr(schema, "VERSION", len(schema.MIGRATIONS))
    with pytest.raises(GalleryError):
        Gallery(data_dir)
    db = sqlite3.connect(data_dir / "gallery.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'images'").fetchone()[0] == 0


# ----------------------------------------------------------------------------------- search and filters

def fts_ok(gallery: Gallery) -> None:
    with gallery.transaction() as conn:  # raises "database disk image is malformed" when out of step
        conn.execute("INSERT INTO images_fts(images_fts, rank) VALUES ('integrity-check', 1)")


def test_full_text_index_follows_updates_and_deletes(gallery: Gallery) -> None:
    fox, owl = save(gallery, "a red fox"), save(gallery, "an owl at night")
    cat = save(gallery, "a cat", negative_prompt="fox")
    assert ids(gallery.find(search="fox")) == [cat, fox]  # negative prompts are searched too
    with gallery.transaction() as conn:
        conn.execute("UPDATE images SET prompt = 'a grey wolf' WHERE id = ?", (fox,))
    assert ids(gallery.find(search="fox")) == [cat]
    assert ids(gallery.find(search="wolf")) == [fox]
    gallery.delete([owl])
    assert gallery.find(search="owl") == [] and gallery.count(search="owl") == 0
    assert ids(gallery.find(search="owl", trash=True)) == [owl]
    assert gallery.purge(older_than=dt.timedelta(0)) == 1
    with gallery.transaction() as conn:
        assert conn.execute("SELECT count(*) FROM images_fts WHERE images_fts MATCH 'owl'").fetchone()[0] == 0
    fts_ok(gallery)


@pytest.mark.parametrize("text",
                         ['"', 'fox"', "AND", "OR fox", "fox OR", "OR", "fox OR OR", '"red', 'fox " OR', "fox\0owl", '"fox\0',
                                  "NEAR(", "fox*", "(", "-fox", "^", "a:b", "'; DROP TABLE images; --"])
def test_search_text_is_never_syntax(gallery: Gallery, text: str) -> None:
    save(gallery, "a red fox")
    gallery.find(search=text)
    gallery.count(search=text)
    assert gallery.count() == 1


def test_search_or_phrases_and_words(gallery: Gallery) -> None:
    fox, owl, both, cat = (save(gallery, "a red fox in snow"), save(gallery, "an owl at night"),
                           save(gallery, "a fox and an owl at night"), save(gallery, "a night cat"))
    assert ids(gallery.find(search="fox OR owl")) == [both, owl, fox]
    assert gallery.count(search="fox OR owl") == 3
    assert ids(gallery.find(search="fox OR cat night")) == [cat, both]  # (fox OR cat) AND night
    assert ids(gallery.find(search="owl OR")) == [both, owl]  # typing on: a dangling OR is no word
    assert ids(gallery.find(search='"red fox"')) == [fox] and gallery.find(search='"fox red"') == []
    assert ids(gallery.find(search="or")) == [] and ids(gallery.find(search="fox and")) == [both]  # lower case: words


def test_search_is_prefix_and_case_and_accent_insensitive(gallery: Gallery) -> None:
    first = save(gallery, "Café LIGHTHOUSE at dawn")
    assert ids(gallery.find(search="lighth")) == [first]
    assert ids(gallery.find(search="cafe light")) == [first]
    assert gallery.find(search="dawnx") == []


def test_filters_sort_and_paging(gallery: Gallery) -> None:
    start = dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone.utc)
    made = [save(gallery, f"castle {i}", seed=i, created_at=(start + dt.timedelta(days=i)).isoformat(),
                 model={"name": "sd15" if i % 2 else "studio-shapes", "hash": "0123456789", "path": ""})
            for i in range(10)]
    gallery.set_favorite(made[3])
    gallery.set_favorite(made[6])
    gallery.set_favorite(made[6], False)
    assert ids(gallery.find()) == made[::-1]
    assert ids(gallery.find(sort="oldest")) == made
    assert ids(gallery.find(favorites=True)) == [made[3]]
    assert ids(gallery.find(model="sd15")) == made[1::2][::-1]
    assert gallery.models() == ["sd15", "studio-shapes"]
    assert ids(gallery.find(seed=4)) == [made[4]]
    since, until = start + dt.timedelta(days=2), start + dt.timedelta(days=5)
    assert ids(gallery.find(since=since, until=until, sort="oldest")) == made[2:5]
    assert gallery.count(since=since, until=until) == 3
    assert ids(gallery.find(since=since.date(), model="studio-shapes", sort="oldest")) == made[2::2]
    pages = [ids(gallery.find(offset=o, limit=3)) for o in range(0, 12, 3)]
    assert sum(pages, []) == made[::-1] and pages[-1] == [made[0]]
    assert gallery.count() == 10 and gallery.count(Query(favorites=True)) == 1
    assert ids(gallery.find(ids=(made[1], made[3], made[4]), favorites=True)) == [made[3]]
    assert gallery.count(ids=(made[1], made[2])) == 2 and gallery.find(ids=()) == []


def test_search_pages_come_in_the_order_images_were_added(gallery: Gallery) -> None:
    # Dense and rare words, dates out of id order (as after importing older pictures), some deleted:
    # every page agrees with a plain filter over the rows, newest added first.
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    words = ["castle", "forest", "river"]
    rows = []
    with gallery.transaction() as conn:
        for i in range(600):
            prompt = f"{words[i % 3]} {'storm' if i % 7 == 0 else 'calm'}"
            created = f"{start + dt.timedelta(minutes=(i * 7919) % 600):%Y-%m-%dT%H:%M:%S.%f}Z"
            conn.execute("INSERT INTO images (path, width, height, created_at, prompt, deleted_at) VALUES (?, 8, 8, ?, ?, ?)",
                         (f"images/{i}.png", created, prompt, "2024-02-01T00:00:00.000000Z" if i % 11 == 0 else None))
            rows.append((i + 1, prompt, i % 11 == 0))
    for text in ("castle", "storm", "castle storm"):
        expected = [i for i, prompt,
                    deleted in reversed(rows) if all(w in prompt for w in text.split()) and not deleted]
        assert ids(gallery.find(search=text, limit=1000)) == expected
        assert ids(gallery.find(search=text, offset=5, limit=20)) == expected[5:25]
        assert ids(gallery.find(search=text, sort="oldest", limit=1000)) == expected[::-1]
        assert gallery.count(search=text) == len(expected)


# ----------------------------------------------------------------------------------- edits

def test_soft_delete_undo_and_purge(gallery: Gallery) -> None:
    keep, gone = save(gallery, "keep me"), save(gallery, "delete me")
    file = gallery.get(gone).file
    thumb = gallery.thumbnail(gone)
    assert gallery.delete([gone]) == 1 and gallery.delete([gone]) == 0
    assert ids(gallery.find()) == [keep] and gallery.count(trash=True) == 1
    assert gallery.get(gone).deleted_at is not None and file.exists()
    assert gallery.undelete([gone]) == 1
    assert ids(gallery.find()) == [gone, keep]
    gallery.delete([gone])
    assert gallery.purge() == 0  # deleted just now: kept for 30 days
    assert gallery.purge(older_than=dt.timedelta(0)) == 1
    assert not file.exists() and not thumb.exists()
    with pytest.raises(NotFoundError):
        gallery.get(gone)
    assert ids(gallery.find()) == [keep]


def test_parent_links(gallery: Gallery) -> None:
    parent = save(gallery, "original")
    child_a = save(gallery, "inpaint", parent_id=parent)
    child_b = save(gallery, "variation", parent_id=parent)
    assert ids(gallery.children(parent)) == [child_a, child_b]
    assert gallery.parent(child_a).id == parent and gallery.parent(parent) is None
    assert gallery.get(child_a).recipe()["parent_id"] == parent  # the file's recipe says so too
    gallery.delete([parent])
    gallery.purge(older_than=dt.timedelta(0))
    assert gallery.get(child_a).parent_id is None  # ON DELETE SET NULL
    orphan = save(gallery, "parent purged already", parent_id=parent)
    assert gallery.get(orphan).parent_id is None


def test_missing_ids_raise_not_found(gallery: Gallery) -> None:
    with pytest.raises(NotFoundError):
        gallery.get(99)
    with pytest.raises(NotFoundError):
        gallery.set_favorite(99, True)
    with pytest.raises(NotFoundError):
        gallery.thumbnail(99)


def test_saved_row_matches_file_recipe(gallery: Gallery) -> None:
    image_id = save(gallery, "a fox", seed=4242, strength=None)
    record = gallery.get(image_id)
    stored = metadata.read_recipe(record.file)
    assert stored is not None and stored.pop("source") == "studio"
    assert stored == record.recipe()
    assert (record.seed, record.prompt, record.model_name, record.width) == (4242, "a fox", "studio-shapes", 16)
    assert record.path.startswith("images/") and "-4242.png" in record.path
    assert record.image_sha256 == files.sha256_file(record.file)
    with pytest.raises(GalleryError, match="invalid recipe"):
        gallery.save(Image.new("RGB", (4, 4)), recipe(steps="many"))


# ----------------------------------------------------------------------------------- reconcile

def test_reconcile_both_ways(gallery: Gallery) -> None:
    first, second = save(gallery, "first"), save(gallery, "second")
    moved = gallery.get(first).file
    hidden = moved.with_name("elsewhere.bin")
    moved.rename(hidden)
    report = gallery.reconcile()
    assert (report.missing, report.restored, report.imported) == (1, 0, 0)
    assert gallery.get(first).missing and not gallery.get(second).missing
    hidden.rename(moved)
    assert gallery.reconcile().restored == 1 and not gallery.get(first).missing

    # Files with no row: one carrying a Studio recipe, one with no metadata, a stale temp file.
    folder = gallery.images_dir / "2023" / "07"
    folder.mkdir(parents=True)
    (folder / "orphan.png").write_bytes(metadata.encode_png(Image.new("RGB", (8, 8)), recipe("lost lighthouse", 77)))
    Image.new("RGB", (9, 9)).save(folder / "bare.png")
    (folder / f"{files.TEMP_PREFIX}abc.png").write_bytes(b"half")
    report = gallery.reconcile(temp_grace_s=0)
    assert (report.imported, report.temp_removed, report.errors) == (2, 1, [])
    found = gallery.find(search="lighthouse")
    assert len(found) == 1 and found[0].seed == 77 and found[0].path == "images/2023/07/orphan.png"
    bare = [r for r in gallery.find() if r.path.endswith("bare.png")][0]
    assert bare.recipe() == {"created_at": bare.recipe()["created_at"]} and bare.width == 9
    assert gallery.reconcile().imported == 0  # idempotent
    assert not (folder / f"{files.TEMP_PREFIX}abc.png").exists()


def test_open_reconciles(data_dir: Path) -> None:
    with Gallery(data_dir) as gallery:
        image_id = save(gallery)
        gallery.get(image_id).file.unlink()
    with Gallery.open(data_dir) as gallery:
        assert gallery.get(image_id).missing


# ----------------------------------------------------------------------------------- threads and faults

def test_reader_thread_never_sees_a_half_written_row(gallery: Gallery) -> None:
    done = threading.Event()
    problems: list[str] = []
    seen: set[int] = set()

    def reader() -> None:
        while not done.is_set() or not seen:
            for record in gallery.find(limit=500):
                seen.add(record.id)
                if not record.file.is_file():
                    problems.append(f"{record.id}: row before its file")
                elif record.recipe().get("prompt") != record.prompt:
                    problems.append(f"{record.id}: recipe and columns disagree")
            gallery.count(search="writer")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        written = [save(gallery, f"writer image {i}", seed=i) for i in range(40)]
    finally:
        done.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and problems == []
    assert seen <= set(written) and gallery.count() == 40


def test_disk_full_while_writing_the_file_leaves_nothing(gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(StorageFullError, match="disk is full"):
        save(gallery)
    monkeypatch.undo()
    assert [p for p in gallery.images_dir.rglob("*") if p.is_file()] == []
    assert gallery.count() == 0


def test_database_full_leaves_no_file(gallery: Gallery) -> None:
    save(gallery)
    conn = gallery._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the database cannot grow: SQLITE_FULL
    with pytest.raises(StorageFullError):
        save(gallery, "x" * 200_000, seed=2)
    assert gallery.count() == 1
    assert len([p for p in gallery.images_dir.rglob("*") if p.is_file()]) == 1


def test_locked_database_raises_locked_error(data_dir: Path) -> None:
    with Gallery(data_dir, timeout_s=0.05) as gallery:
        other = sqlite3.connect(gallery.db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LockedError, match="locked"):
                gallery.set_favorite(1, True)
            assert gallery.count() == 0  # reads still work beside a writer (WAL)
        finally:
            other.execute("ROLLBACK")
            other.close()


def test_closed_gallery_refuses(data_dir: Path) -> None:
    gallery = Gallery(data_dir)
    gallery.close()
    with pytest.raises(GalleryError, match="closed"):
        gallery.count()


def test_gallery_imports_neither_qt_nor_torch() -> None:
    code = "import sys, studio.gallery; print(sorted(m for m in ('torch', 'diffusers', 'PySide6') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bench_runs_and_reports_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from studio.bench import gallery as bench

    assert bench.main(["--images", "300", "--saves", "3", "--queries", "8", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["images"] == 300 and figures["search_queries"] == 8 and figures["save_count"] == 3
    assert figures["open_first_page_cold_s"] > 0 and figures["save_per_s"] > 0 and figures["db_size_mb"] > 0
