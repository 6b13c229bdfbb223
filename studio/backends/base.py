"""The backend seam: where a generation runs. The local engine is one backend, ComfyUI servers another.

The CLI and the GUI's worker hand a request to a `Backend` and get `GenerationResult`s back, with progress
and previews on the way; the gallery and the recipe do not care which one ran, except that every recipe
records it (`recipe["backend"]`), so Regenerate and `--from` go back to the same kind of backend.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

from studio.recipe.errors import StudioError
from studio.recipe.request import GenerationRequest, GenerationResult, StepInfo

StepCallback = Callable[[StepInfo], None]
StopCheck = Callable[[], bool]
NoticeCallback = Callable[[str], None]  # something the user should know that is not an error (a server dropped out)


class BackendKind(str, enum.Enum):
    LOCAL = "local"
    COMFYUI = "comfyui"


class ServerError(StudioError):
    """A ComfyUI server failed or misbehaved; the message names the server and what went wrong."""


class ServerGone(ServerError):
    """The server cannot be reached any more (refused, reset, closed): its work can move to another server."""


class Backend(Protocol):
    kind: BackendKind

    def describe(self) -> str:
        """One line for people: what runs the job (a model on a device, or the servers)."""
        ...

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None, on_notice: NoticeCallback | None = None,
                 **options: Any) -> list[GenerationResult]:
        """Run `request`; raise `studio.engine.Cancelled` when `should_stop` says so, a StudioError
        with a readable message when it cannot run. `options` are the local engine's extras
        (sequential, preview_all, preview_interval); other backends ignore those they cannot honour."""
        ...


def recipe_backend(recipe: dict[str, Any]) -> BackendKind:
    """Which kind of backend made a recipe (recipes from before backends were recorded are local)."""
    backend = recipe.get("backend")
    kind = backend.get("kind") if isinstance(backend, dict) else None
    return BackendKind.COMFYUI if kind == BackendKind.COMFYUI.value else BackendKind.LOCAL


def recipe_server(recipe: dict[str, Any]) -> str | None:
    backend = recipe.get("backend")
    server = backend.get("server") if isinstance(backend, dict) else None
    return server if isinstance(server, str) else None
