"""The gallery: SQLite index + image files beside it. No Qt, no torch."""

from __future__ import annotations

from studio.gallery.errors import GalleryError, LockedError, NotFoundError, StorageFullError
from studio.gallery.importer import ImportResult
from studio.gallery.records import ImageRecord, Query
from studio.gallery.store import DEFAULT_TEMPLATE, Gallery, ReconcileReport

__all__ = ["DEFAULT_TEMPLATE", "Gallery", "GalleryError", "ImageRecord", "ImportResult", "LockedError",
           "NotFoundError", "Query", "ReconcileReport", "StorageFullError"]
