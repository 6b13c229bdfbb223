"""Which backend runs a job from the GUI: the request's own choice (a replay keeps its kind), else the
default in servers.json; on the servers, the request's model becomes the server checkpoint chosen there."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from studio.backends import settings as server_settings
from studio.backends.base import Backend, BackendKind
from studio.backends.local import LocalBackend
from studio.recipe.request import GenerationRequest

_pools: dict[tuple[str, ...], Any] = {}  # one pool per list of servers, so slots and down marks persist


def backend_for(request: GenerationRequest, engine: Any, data_dir: Path | None) -> tuple[Backend, GenerationRequest]:
    configured = server_settings.load(data_dir) if data_dir is not None else server_settings.ServerSettings()
    kind = BackendKind(request.backend) if request.backend else configured.default
    if kind is BackendKind.LOCAL:
        return LocalBackend(engine), request
    from studio.backends.pool import ServerPool

    key = tuple(f"{s.url}#{s.max_in_flight}" for s in configured.servers)
    if key not in _pools:
        _pools[key] = ServerPool(configured.servers)  # raises "no ComfyUI server given" for an empty list
    if configured.model and not request.backend:  # a fresh job: the checkpoint chosen for the servers
        request = replace(request, model=configured.model)
    return _pools[key], request
