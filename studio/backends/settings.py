"""The servers the user added, and which backend runs jobs by default: `servers.json` in the data folder,
shared by the GUI and the CLI (like the model library's `library.json`).

Tokens are never written here: a server's bearer token lives in the OS keyring (through `keyring`, when it
is installed) under the service "studio-comfyui" and the server's URL, or comes from $STUDIO_SERVER_TOKEN.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from studio.backends.base import BackendKind, ServerError
from studio.backends.comfy_client import ServerConfig, normalise_url

SERVERS_FILE = "servers.json"
KEYRING_SERVICE = "studio-comfyui"
TOKEN_VARIABLE = "STUDIO_SERVER_TOKEN"


@dataclass
class ServerSettings:
    servers: list[ServerConfig] = field(default_factory=list)
    default: BackendKind = BackendKind.LOCAL  # where a job runs when it does not say
    model: str = ""  # the server checkpoint the GUI's jobs use on the servers ("" : the request's own model name)

    def urls(self) -> list[str]:
        return [s.url for s in self.servers]


def load(data_dir: Path) -> ServerSettings:
    path = data_dir / SERVERS_FILE
    if not path.exists():
        return ServerSettings()
    try:
        raw = json.loads(path.read_text())
        servers = [ServerConfig(str(s["url"]), int(s.get("max_in_flight", 1)), token(str(s["url"])))
                   for s in raw.get("servers", [])]
        default = BackendKind(raw.get("default", BackendKind.LOCAL.value))
        model = str(raw.get("model", ""))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ServerError(f"{path} is not a valid servers file ({exc}); fix or delete it") from None
    return ServerSettings(servers, default, model)


def save(data_dir: Path, settings: ServerSettings) -> None:
    path = data_dir / SERVERS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"default": settings.default.value, "model": settings.model,
                               "servers": [{"url": s.url, "max_in_flight": s.max_in_flight}
                                           for s in settings.servers]}, indent=2))
    tmp.replace(path)


def add(data_dir: Path, url: str, max_in_flight: int = 1, make_default: bool = False) -> ServerSettings:
    settings = load(data_dir)
    config = ServerConfig(url, max_in_flight, token(url))
    settings.servers = [s for s in settings.servers if s.url != config.url] + [config]
    if make_default:
        settings.default = BackendKind.COMFYUI
    save(data_dir, settings)
    return settings


def remove(data_dir: Path, url: str) -> ServerSettings:
    settings = load(data_dir)
    wanted = normalise_url(url)
    if wanted not in settings.urls():
        raise ServerError(f"{wanted} is not in the servers list")
    settings.servers = [s for s in settings.servers if s.url != wanted]
    if not settings.servers:
        settings.default = BackendKind.LOCAL
    save(data_dir, settings)
    return settings


def token(url: str) -> str | None:
    """The bearer token for a server: the OS keyring's, else $STUDIO_SERVER_TOKEN, else none."""
    try:
        import keyring
    except ImportError:
        keyring = None
    if keyring is not None:
        try:
            found = keyring.get_password(KEYRING_SERVICE, normalise_url(url))
        except Exception:  # noqa: BLE001 - no usable keyring backend on this system: fall back to the variable
            found = None
        if found:
            return found
    return os.environ.get(TOKEN_VARIABLE) or None
