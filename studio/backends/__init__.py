"""Where a job runs: the local engine, or one or more ComfyUI servers (no Qt here)."""

from __future__ import annotations

from studio.backends.base import Backend, BackendKind, ServerError, ServerGone, recipe_backend, recipe_server
from studio.backends.comfy_client import ServerConfig

__all__ = ["Backend", "BackendKind", "ServerConfig", "ServerError", "ServerGone", "recipe_backend", "recipe_server"]
