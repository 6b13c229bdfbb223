"""Turn any exception into one line a designer can act on (used by the CLI and the GUI alike)."""

from __future__ import annotations

import errno


class StudioError(Exception):
    """Any failure Studio can explain to a person; its message is that explanation."""


class ModelError(StudioError, RuntimeError):
    """A model that cannot be found or loaded, with a message meant for a person."""


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk is full: nothing was saved; free some space and try again"
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return (f"the data folder is on a read-only file system, so {exc.filename or 'nothing'} cannot be written: "
                "choose a writable folder with --data-dir or STUDIO_HOME")
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    known: tuple[type[BaseException], ...] = (StudioError, ValueError)  # request, CLI, model, gallery errors…
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, known):
        return text
    if "out of memory" in text.lower():
        return ("the device ran out of memory: try a smaller size or batch, or a lower memory preset "
                "(Model > Memory in the window, --memory low or lowest on the command line)")
    if isinstance(exc, OSError) and exc.strerror:  # the system's own words, without the class name
        return f"{exc.strerror.lower()}: {exc.filename}" if exc.filename else exc.strerror.lower()
    return f"{type(exc).__name__}: {text}"
