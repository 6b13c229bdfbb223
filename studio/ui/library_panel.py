"""The model library panel: every checkpoint, LoRA, embedding and VAE in the folders the designer added,
and beside them the checkpoints and LoRAs of the ComfyUI servers (a light on the name, "on ComfyUI" as family).

Scanning (reading safetensors headers), hashing (reading whole files) and asking the servers run on pool
threads; the panel only receives the results. Double-click a checkpoint to load it (a server's: to run the
next jobs on the servers with it), a LoRA to add `<lora:name:1>` to the prompt, an embedding to add its name.
"""

from __future__ import annotations

import enum
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.backends.status import ServerStatus
from studio.engine.library import ItemKind, LibraryItem, size_text
from studio.ui.server_models import ServerModel, ServerWatch, host
from studio.ui.servers_dialog import LIGHTS, light


class Place(enum.Enum):
    HERE = "this computer"
    SERVERS = "ComfyUI servers"


COLUMNS = ("Name", "Kind", "Family", "Size")  # the rest (native size, hash, path, triggers) shows on selection
# A server's checkpoint or LoRA shows its server(s) where a local file shows its family (which a server does not
# tell): a fifth column would squeeze the names out of the dock's width.
SERVER_COLUMN = COLUMNS.index("Family")
SERVER_ROLE = Qt.ItemDataRole.UserRole + 1  # a server row's ServerModel (a local row has its path as UserRole)
KIND_LABELS = {ItemKind.CHECKPOINT: "Checkpoint", ItemKind.DIFFUSERS: "Pipeline folder", ItemKind.LORA: "LoRA",
               ItemKind.EMBEDDING: "Embedding", ItemKind.VAE: "VAE", ItemKind.TEXT_ENCODER: "Text encoder",
               ItemKind.UPSCALER: "Upscaler"}
# (label, kinds shown (None: all), where (None: both places))
FILTERS: list[tuple[str, tuple[ItemKind, ...] | None, Place | None]] = [
    ("Everything", None, None), ("Models", (ItemKind.CHECKPOINT, ItemKind.DIFFUSERS), None),
    ("LoRAs", (ItemKind.LORA,), None), ("Embeddings", (ItemKind.EMBEDDING,), None), ("VAEs", (ItemKind.VAE,), None),
    ("Text encoders", (ItemKind.TEXT_ENCODER,), None), ("Upscalers", (ItemKind.UPSCALER,), None),
    ("On ComfyUI servers", None, Place.SERVERS)]


class _Relay(QObject):
    """Carries a pool thread's results to the GUI thread (queued signals)."""

    scanned = Signal(int, list)  # scan number, list[LibraryItem]
    hashed = Signal(str, str)  # path, short hash


class LibraryPanel(QWidget):
    load_model = Signal(str)  # a checkpoint's or pipeline folder's path
    use_server_model = Signal(str)  # a server checkpoint's name: the next jobs run on the servers with it
    insert_text = Signal(str)  # text for the prompt: "<lora:name:1>" or an embedding's name
    changed = Signal()  # a scan finished: the model menu may differ

    def __init__(self, data_dir: Path | None, servers: ServerWatch | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self.items: list[LibraryItem] = []
        self._scan_number = 0
        self._pool = QThreadPool(self)  # its own: closing the window need not wait on the global pool
        self._pool.setMaxThreadCount(1)
        self._relay = _Relay()
        self._relay.scanned.connect(self._on_scanned)
        self._relay.hashed.connect(self._on_hashed)
        self.servers = servers or ServerWatch(data_dir, self)  # the window shares its own with Run on
        self.servers.changed.connect(self._on_servers)
        self._shown_server_models: list[ServerModel] = []
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search models, LoRAs, embeddings…")
        self.search.setClearButtonEnabled(True)
        self.kind = QComboBox()
        for label, _kinds, _place in FILTERS:
            self.kind.addItem(label)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # names are what people read
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemActivated.connect(self._activate)
        self.tree.currentItemChanged.connect(lambda row, _old: self._show_details(row))
        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Read an existing models folder in place (AUTOMATIC1111, ComfyUI, InvokeAI "
                                   "or any folder); nothing is copied")
        self.rescan_button = QPushButton("Rescan")
        self.status = QLabel("Not scanned yet")
        self.status.setWordWrap(True)
        self.server_status = QLabel("")  # each server's light and state; hidden while none is configured
        self.server_status.setWordWrap(True)
        self.server_status.hide()
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.kind)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.rescan_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.details)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.server_status)
        self.search.textChanged.connect(self._refill)
        self.kind.currentIndexChanged.connect(self._refill)
        self.add_button.clicked.connect(self.choose_folder)
        self.rescan_button.clicked.connect(self.rescan)

    # ------------------------------------------------------------------ scanning (off the GUI thread)

    def rescan(self) -> None:
        from studio.engine import library

        self._scan_number += 1
        number, data_dir, relay = self._scan_number, self.data_dir, self._relay
        self.status.setText("Scanning the library…")
        self.servers.check()

        def work() -> None:
            items = library.scan(data_dir)
            relay.scanned.emit(number, items)
            for item in items:  # the short hashes, slowest last: a 6 GB file takes a while
                if number != self._scan_number:
                    return  # a newer scan (or closing) took over: stop between files
                if item.hash is None and item.kind is not ItemKind.DIFFUSERS:
                    try:
                        library.hash_missing(data_dir, [item])
                    except OSError:
                        continue
                    relay.hashed.emit(str(item.path), item.hash or "")

        self._pool.start(work)

    def stop(self) -> None:
        """Stop background hashing after the file in hand (the window is closing)."""
        self._scan_number += 1

    def add_folder(self, folder: Path) -> None:
        from studio.engine import library
        from studio.recipe.errors import ModelError

        if self.data_dir is None:
            return
        try:
            library.add_folder(self.data_dir, folder)
        except ModelError as exc:
            self.status.setText(str(exc))
            return
        self.rescan()

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a models folder to the library")
        if folder:
            self.add_folder(Path(folder))

    def _on_scanned(self, number: int, items: list[LibraryItem]) -> None:
        if number != self._scan_number:
            return  # an older scan finished after a newer one started
        self.items = items
        folders = len({str(i.path.parent) for i in items})
        self.status.setText(f"{len(items)} file(s) in {folders} folder(s)" if items else
                            "No models yet: Add folder… reads an AUTOMATIC1111, ComfyUI or InvokeAI models folder")
        self._refill()
        self.changed.emit()

    def _on_hashed(self, path: str, short: str) -> None:
        for item in self.items:
            if str(item.path) == path:
                item.hash = short
        current = self.tree.currentItem()
        if current is not None and current.data(0, Qt.ItemDataRole.UserRole) == path:
            self._show_details(current)

    # ------------------------------------------------------------------ showing

    def models(self) -> list[LibraryItem]:
        return [i for i in self.items if i.kind in (ItemKind.CHECKPOINT, ItemKind.DIFFUSERS)]

    def vaes(self) -> list[LibraryItem]:
        return [i for i in self.items if i.kind is ItemKind.VAE]

    def visible_items(self) -> list[LibraryItem]:
        _label, kinds, place = FILTERS[self.kind.currentIndex()]
        text = self.search.text().strip().lower()
        return [i for i in self.items if place in (None, Place.HERE) and (kinds is None or i.kind in kinds)
                and (not text or text in i.name.lower() or text in i.family.lower()
                     or any(text in t.lower() for t in i.triggers))]

    def visible_server_models(self) -> list[ServerModel]:
        _label, kinds, place = FILTERS[self.kind.currentIndex()]
        text = self.search.text().strip().lower()
        return [m for m in self.servers.models() if place in (None, Place.SERVERS)
                and (kinds is None or m.kind in kinds) and text in m.name.lower()]

    def _refill(self) -> None:
        current = _key(self.tree.currentItem())
        self.tree.setSortingEnabled(False)
        self.tree.clear()
        for item in self.visible_items():
            row = QTreeWidgetItem([item.name, KIND_LABELS[item.kind], item.family or "-", size_text(item.size)])
            row.setData(0, Qt.ItemDataRole.UserRole, str(item.path))
            tip = str(item.path)
            if item.triggers:
                tip += "\nTrained with: " + ", ".join(item.triggers)
            tip += "\n" + _hint(item.kind)
            for column in range(len(COLUMNS)):
                row.setToolTip(column, tip)
            self.tree.addTopLevelItem(row)
        for model in self.visible_server_models():
            row = QTreeWidgetItem([model.label, KIND_LABELS[model.kind], model.where(), "-"])
            row.setData(0, SERVER_ROLE, model)
            row.setIcon(0, light(True))  # on a server that answered
            tip = f"{model.name} on " + ", ".join(model.servers) + "\n" + _server_hint(model.kind)
            for column in range(len(COLUMNS)):
                row.setToolTip(column, tip)
            self.tree.addTopLevelItem(row)
        self.tree.setSortingEnabled(True)
        if current is not None:  # a refill (a server answered, a scan ended) keeps what the designer selected
            again = next((r for r in map(self.tree.topLevelItem, range(self.tree.topLevelItemCount()))
                          if _key(r) == current), None)
            if again is not None:
                self.tree.setCurrentItem(again)

    def _on_servers(self) -> None:
        """A server answered (or a new round of questions began): its light, and its models in the list."""
        models = self.servers.models()
        if models != self._shown_server_models:  # refilling loses the selection: only when the list differs
            self._shown_server_models = models
            self._refill()
        statuses = self.servers.statuses
        if not statuses and not self.servers.problem:
            self.server_status.hide()
            return
        parts = [_server_state(url, status) for url, status in statuses.items()]
        self.server_status.setText("ComfyUI servers: " + (" · ".join(parts) or self.servers.problem))
        self.server_status.setToolTip("\n".join(s.text for s in self.servers.answered()) or self.servers.problem)
        self.server_status.show()

    def _item(self, row: QTreeWidgetItem | None) -> LibraryItem | None:
        path = row.data(0, Qt.ItemDataRole.UserRole) if row is not None else None
        return next((i for i in self.items if str(i.path) == path), None)

    def _show_details(self, row: QTreeWidgetItem | None) -> None:
        model = row.data(0, SERVER_ROLE) if row is not None else None
        if isinstance(model, ServerModel):
            self.details.setText(f"<b>{model.label}</b> · {KIND_LABELS[model.kind]} on ComfyUI servers: "
                                 f"{', '.join(model.servers)}<br><small>{model.name}</small><br>"
                                 f"<i>{_server_hint(model.kind)}</i>")
            return
        item = self._item(row)
        if item is None:
            self.details.setText("")
            return
        parts = [f"<b>{item.name}</b>", KIND_LABELS[item.kind], item.family or "family unknown"]
        if item.native_size:
            parts.append(f"{item.native_size} px native")
        parts.append(f"hash {item.hash}" if item.hash else "hash being computed…")
        text = " · ".join(parts)
        if item.triggers:
            text += "<br>Trained with: " + ", ".join(item.triggers)
        self.details.setText(f"{text}<br><small>{item.path}</small><br><i>{_hint(item.kind)}</i>")

    def _activate(self, row: QTreeWidgetItem, _column: int = 0) -> None:
        model = row.data(0, SERVER_ROLE)
        if isinstance(model, ServerModel):
            if model.kind is ItemKind.CHECKPOINT:
                self.use_server_model.emit(model.name)
            else:
                self.insert_text.emit(f"<lora:{model.stem}:1>")
            return
        item = self._item(row)
        if item is None:
            return
        if item.kind in (ItemKind.CHECKPOINT, ItemKind.DIFFUSERS):
            self.load_model.emit(str(item.path))
        elif item.kind is ItemKind.LORA:
            self.insert_text.emit(f"<lora:{item.name}:1>")
        elif item.kind is ItemKind.EMBEDDING:
            self.insert_text.emit(item.name)


def _hint(kind: ItemKind) -> str:
    return {ItemKind.CHECKPOINT: "Double-click to load it", ItemKind.DIFFUSERS: "Double-click to load it",
            ItemKind.LORA: "Double-click to add it to the prompt (edit the weight in the tag)",
            ItemKind.EMBEDDING: "Double-click to add its name to the prompt"}.get(kind, "")


def _server_hint(kind: ItemKind) -> str:
    if kind is ItemKind.CHECKPOINT:
        return "Double-click to run the next jobs on the ComfyUI servers with it"
    return "Double-click to add it to the prompt (it works in jobs on the servers)"


def _server_state(url: str, status: ServerStatus | None) -> str:
    """One server in the panel's server line: a light, its host, and up / checking / why not."""
    if status is None:
        up, state = None, "checking…"
    elif status.up:
        up, state = True, f"up ({len(status.checkpoints)} checkpoint(s), {len(status.loras)} LoRA(s))"
    else:
        up, state = False, "not reachable" if not status.reachable else "not answering as ComfyUI"
    return f'<span style="color:{LIGHTS[up]}">●</span> {host(url)} {state}'


def _key(row: QTreeWidgetItem | None) -> object:
    """What a row shows, the same across refills: a local file's path, or a server model."""
    if row is None:
        return None
    return row.data(0, SERVER_ROLE) or row.data(0, Qt.ItemDataRole.UserRole)
