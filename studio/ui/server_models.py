"""What the ComfyUI servers have, for the model library: each configured server is asked on a pool thread
(a dead or silent server costs the window nothing; `status.CHECK_TIMEOUT` bounds each question), and the
answers come back to the GUI thread as signals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from studio.backends import settings as server_settings
from studio.backends.base import ServerError
from studio.backends.comfy_client import ServerConfig
from studio.backends.status import ServerStatus, check
from studio.engine.library import ItemKind

CHECKS_AT_ONCE = 8  # servers asked at once: each question mostly waits on the network


@dataclass(frozen=True)
class ServerModel:
    """A checkpoint or LoRA that one or more servers have, by the name the servers give it."""

    name: str  # as ComfyUI lists it: "sd15/dreamshaper_8.safetensors"
    kind: ItemKind  # CHECKPOINT or LORA
    servers: tuple[str, ...]  # the URLs of the servers that have it

    @property
    def label(self) -> str:
        """The name without its extension, subfolder kept (two folders may hold the same file name)."""
        path = PurePosixPath(self.name.replace("\\", "/"))
        return str(path.with_suffix("")) if path.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin") \
            else str(path)

    @property
    def stem(self) -> str:
        """What a `<lora:…>` tag names it by (the servers match tags by file name or stem)."""
        return PurePosixPath(self.label).name

    def where(self) -> str:
        """Short, for a column of a narrow dock (the row's tooltip and the details name the servers)."""
        return "on ComfyUI" if len(self.servers) == 1 else f"on {len(self.servers)} ComfyUI servers"


def host(url: str) -> str:
    """`http://gpu-box:8188` -> `gpu-box:8188` (what fits in a column); a path stays, it tells servers apart."""
    parts = urlsplit(url)
    return parts.netloc + parts.path


def server_models(statuses: list[ServerStatus]) -> list[ServerModel]:
    """Every checkpoint and LoRA of the servers that answered, once each, with the servers that have it."""
    found: dict[tuple[ItemKind, str], list[str]] = {}
    for status in statuses:
        if not status.up:
            continue
        for kind, names in ((ItemKind.CHECKPOINT, status.checkpoints), (ItemKind.LORA, status.loras)):
            for name in names:
                found.setdefault((kind, name), []).append(status.url)
    return [ServerModel(name, kind, tuple(urls)) for (kind, name), urls in found.items()]


class _Relay(QObject):
    checked = Signal(int, object)  # round, ServerStatus


class _Check(QRunnable):
    def __init__(self, config: ServerConfig, round_: int, relay: _Relay) -> None:
        super().__init__()
        self.config, self.round, self.relay = config, round_, relay  # holds the relay while it runs

    def run(self) -> None:
        self.relay.checked.emit(self.round, check(self.config))


class ServerWatch(QObject):
    """Asks the servers in servers.json what they have. `statuses` maps each URL to its latest answer
    (None while it is being asked); `problem` says why servers.json could not be read ("" when it could)."""

    changed = Signal()  # an answer came in, or a new round of questions started
    checked = Signal()  # every server of the latest round has answered

    def __init__(self, data_dir: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self.statuses: dict[str, ServerStatus | None] = {}
        self._known: dict[str, ServerStatus] = {}  # each server's last answer: its models stay listed while asked
        self.problem = ""
        self._round = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(CHECKS_AT_ONCE)
        self._relay = _Relay()  # no parent: a question still out when the watch goes emits into nothing
        self._relay.checked.connect(self._on_checked)

    def check(self) -> None:
        """Ask every configured server again (the list as servers.json has it now)."""
        self._round += 1
        configs: list[ServerConfig] = []
        self.problem = ""
        if self.data_dir is not None:
            try:
                configs = server_settings.load(self.data_dir).servers
            except ServerError as exc:
                self.problem = str(exc)
        self.statuses = {c.url: None for c in configs}
        for config in configs:
            self._pool.start(_Check(config, self._round, self._relay))
        self.changed.emit()
        if not configs:
            self.checked.emit()

    def _on_checked(self, round_: int, status: ServerStatus) -> None:
        if round_ != self._round or status.url not in self.statuses:
            return  # an older round's answer, after the list changed
        self.statuses[status.url] = status
        self._known[status.url] = status
        self.changed.emit()
        if self.done():
            self.checked.emit()

    def done(self) -> bool:
        return all(s is not None for s in self.statuses.values())

    def answered(self) -> list[ServerStatus]:
        """This round's answers."""
        return [s for s in self.statuses.values() if s is not None]

    def models(self) -> list[ServerModel]:
        """The models of the configured servers, as each last answered (this round or the one before)."""
        return server_models([self._known[url] for url in self.statuses if url in self._known])
