"""The gallery database schema as a list of forward migrations, versioned by `PRAGMA user_version`.

Migration N (1-based) takes a database at version N-1 to version N. Never edit a released step:
append a new one. Before upgrading a database that already holds data, a copy is taken with the
sqlite3 backup API to `gallery.sqlite3.bak-v<old version>`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from studio.gallery.errors import GalleryError

_V1 = """
CREATE TABLE images (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: thumbnails and undo key on it
    path            TEXT NOT NULL UNIQUE,               -- relative to the data folder, '/' separated
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    created_at      TEXT NOT NULL,                      -- UTC, 'YYYY-MM-DDTHH:MM:SS.ffffffZ': sorts as text
    model_name      TEXT,
    model_hash      TEXT,
    mode            TEXT,
    prompt          TEXT NOT NULL DEFAULT '',
    negative_prompt TEXT NOT NULL DEFAULT '',
    seed            INTEGER,
    steps           INTEGER,
    cfg             REAL,
    scheduler       TEXT,
    strength        REAL,
    parent_id       INTEGER REFERENCES images(id) ON DELETE SET NULL,
    favorite        INTEGER NOT NULL DEFAULT 0,
    deleted_at      TEXT,
    recipe_json     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX images_by_date ON images(created_at, id);
"""

# Full-text search over the prompts. External content (the text lives once, in `images`), kept
# in step by triggers; prefix indexes make search-as-you-type prefix queries cheap.
_V2 = """
CREATE VIRTUAL TABLE images_fts USING fts5(
    prompt, negative_prompt, content='images', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2', prefix='2 3'
);
CREATE TRIGGER images_fts_insert AFTER INSERT ON images BEGIN
    INSERT INTO images_fts(rowid, prompt, negative_prompt) VALUES (new.id, new.prompt, new.negative_prompt);
END;
CREATE TRIGGER images_fts_delete AFTER DELETE ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, prompt, negative_prompt)
    VALUES ('delete', old.id, old.prompt, old.negative_prompt);
END;
CREATE TRIGGER images_fts_update AFTER UPDATE OF prompt, negative_prompt ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, prompt, negative_prompt)
    VALUES ('delete', old.id, old.prompt, old.negative_prompt);
    INSERT INTO images_fts(rowid, prompt, negative_prompt) VALUES (new.id, new.prompt, new.negative_prompt);
END;
INSERT INTO images_fts(images_fts) VALUES ('rebuild');
"""

# Reconcile bookkeeping and the indexes behind the filters.
_V3 = """
ALTER TABLE images ADD COLUMN missing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN image_sha256 TEXT;
DROP INDEX images_by_date;
-- The grid lists live images by date: a partial index answers it without touching the table.
CREATE INDEX images_live_by_date ON images(created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX images_by_favorite ON images(favorite, created_at, id) WHERE favorite = 1;
CREATE INDEX images_by_model ON images(model_name, created_at, id);
CREATE INDEX images_by_seed ON images(seed);
CREATE INDEX images_by_parent ON images(parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX images_by_deleted ON images(deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX images_by_sha256 ON images(image_sha256);
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3]
VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def backup(conn: sqlite3.Connection, db_path: Path, version: int) -> Path:
    """Copy the database (consistently, even in WAL mode) before it is upgraded."""
    target = db_path.with_name(f"{db_path.name}.bak-v{version}")
    copy = sqlite3.connect(target)
    try:
        conn.backup(copy)
    finally:
        copy.close()
    return target


def check(db_path: Path, timeout_s: float) -> None:
    """Refuse a file this Studio must not write to, before anything does (even the switch to WAL
    rewrites the header): another program's database, or a gallery from a newer Studio."""
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return  # a new gallery
    conn = sqlite3.connect(db_path, timeout=timeout_s)
    try:
        found = user_version(conn)
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        conn.close()
    if found > VERSION:
        raise GalleryError(f"{db_path} was written by a newer Studio (schema {found}, this one knows {VERSION}); "
                           "update Studio to open it")
    if found == 0 and tables:
        raise GalleryError(f"{db_path} is not a Studio gallery (it holds the tables {', '.join(tables[:5])} of "
                           f"another program); the pictures in {db_path.parent / 'images'} are untouched: move "
                           "that file aside or choose another data folder (--data-dir)")


def migrate(conn: sqlite3.Connection, db_path: Path) -> int:
    """Bring the database to `VERSION`; return the version it was at. Safe if two processes race."""
    found = user_version(conn)
    if found == VERSION:
        return found  # the common case costs one pragma read
    if found > VERSION:
        raise GalleryError(f"{db_path} was written by a newer Studio (schema {found}, this one knows {VERSION}); "
                           "update Studio to open it")
    if found > 0:
        backup(conn, db_path, found)
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read inside the write lock: another process may have migrated meanwhile.
        start = user_version(conn)
        for number in range(start + 1, VERSION + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _statements(script: str) -> list[str]:
    """Split a migration into statements; `sqlite3.complete_statement` knows about trigger bodies."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
