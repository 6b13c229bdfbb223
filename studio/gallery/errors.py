"""Typed gallery errors: environment faults (disk full, locked) apart from missing things and bugs."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from studio.recipe.errors import StudioError

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL, _SQLITE_IOERR = 5, 6, 13, 10
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class GalleryError(StudioError):
    """Base of every gallery error; the message is meant for the person using Studio."""


class StorageFullError(GalleryError):
    """The disk (or the user's quota) is full; nothing was half-written."""


class LockedError(GalleryError):
    """Another program holds the gallery database and did not let go in time."""


class DamagedError(GalleryError):
    """The database file is not a readable SQLite database any more (corrupt, cut short, overwritten)."""


class NotFoundError(GalleryError, LookupError):
    """No image with that id (or path) in the gallery."""


def translate(exc: BaseException, action: str) -> GalleryError:
    """The typed error for an OSError or sqlite3 error raised while doing `action`."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return StorageFullError(f"could not {action}: the disk is full (free some space and try again)")
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        text = str(exc)
        if code == _SQLITE_FULL or "database or disk is full" in text:
            return StorageFullError(f"could not {action}: the disk is full (free some space and try again)")
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
            return DamagedError(f"could not {action}: the gallery database is damaged ({text})")
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text or "busy" in text:
            return LockedError(f"could not {action}: the gallery database is locked by another program")
        return GalleryError(f"could not {action}: database error: {text}")
    if isinstance(exc, OSError):
        return GalleryError(f"could not {action}: {exc.strerror or exc}")
    return GalleryError(f"could not {action}: {exc}")


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Re-raise OSError and sqlite3 errors inside the block as typed gallery errors."""
    try:
        yield
    except GalleryError:
        raise
    except (OSError, sqlite3.Error) as exc:
        raise translate(exc, action) from exc
