"""Is a server up, and what does it have: for the Servers dialog's lights, `studio servers` and the library."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.backends.base import ServerError, ServerGone
from studio.backends.comfy_client import ComfyClient, ServerConfig

CHECK_TIMEOUT = 3.0  # seconds: a status light must not keep anyone waiting


@dataclass(frozen=True)
class ServerStatus:
    url: str
    up: bool
    text: str  # "ComfyUI 0.3.75, cuda, 3 checkpoints" or why it is down
    checkpoints: list[str] = field(default_factory=list)
    loras: list[str] = field(default_factory=list)
    reachable: bool = True  # False: no answer at all (refused, timed out), rather than a wrong one


def check(config: ServerConfig, timeout: float = CHECK_TIMEOUT) -> ServerStatus:
    client = ComfyClient(config, timeout=timeout)
    try:
        stats = client.system_stats()
        checkpoints = client.choices("CheckpointLoaderSimple", "ckpt_name")
        loras = client.choices("LoraLoader", "lora_name")
    except ServerError as exc:
        return ServerStatus(config.url, False, str(exc), reachable=not isinstance(exc, ServerGone))
    devices = stats.get("devices")
    device = devices[0].get("type") if isinstance(devices, list) and devices and isinstance(devices[0], dict) else None
    text = f"ComfyUI {stats['system'].get('comfyui_version', '?')}, {device or 'unknown device'}, " \
           f"{len(checkpoints)} checkpoint(s), {len(loras)} LoRA(s)"
    return ServerStatus(config.url, True, text, checkpoints, loras)
