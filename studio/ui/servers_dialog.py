"""The Servers dialog: the ComfyUI servers jobs can run on (a status light each), where jobs run by default,
which server checkpoint they use, and what the servers have; plus its entries in the Generate menu.

Status checks run on Qt's thread pool (a slow or dead server never blocks the window); what is saved is
`servers.json` in the data folder, which the CLI reads too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.backends import settings as server_settings
from studio.backends.base import BackendKind, ServerError
from studio.backends.comfy_client import ServerConfig
from studio.backends.status import ServerStatus, check

STATUS_ROLE = Qt.ItemDataRole.UserRole + 1  # the item's last ServerStatus, or None while unknown
LIGHTS = {None: "#9e9e9e", True: "#2e7d32", False: "#c62828"}


def light(up: bool | None) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(LIGHTS[up]))
    return QIcon(pixmap)


class _Checker(QObject):
    done = Signal(str, object)  # url, ServerStatus


class _Check(QRunnable):
    def __init__(self, config: ServerConfig, checker: _Checker) -> None:
        super().__init__()
        self.config, self.checker = config, checker

    def run(self) -> None:
        self.checker.done.emit(self.config.url, check(self.config))


class ServersDialog(QDialog):
    def __init__(self, data_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("ComfyUI servers")
        self.data_dir = data_dir
        self.settings = server_settings.load(data_dir)
        self._checker = _Checker(self)
        self._checker.done.connect(self._show_status)
        self.list = QListWidget()
        self.url = QLineEdit(placeholderText="http://host:8188 or https://host/path")
        self.in_flight = QSpinBox(minimum=1, maximum=64, value=1, toolTip="images this server runs at once")
        self.add_button = QPushButton("Add")
        self.remove_button = QPushButton("Remove")
        self.check_button = QPushButton("Check again")
        self.local = QRadioButton("This computer")
        self.remote = QRadioButton("The ComfyUI servers")
        self.checkpoint = QComboBox(toolTip="the server checkpoint jobs on the servers use")
        self.contents = QLabel(wordWrap=True)
        self.message = QLabel(wordWrap=True)
        self._layout()
        self.add_button.clicked.connect(self.add)
        self.url.returnPressed.connect(self.add)
        self.remove_button.clicked.connect(self.remove)
        self.check_button.clicked.connect(self.check_all)
        for server in self.settings.servers:
            self._add_item(server)
        (self.remote if self.settings.default is BackendKind.COMFYUI else self.local).setChecked(True)
        if self.settings.model:
            self.checkpoint.addItem(self.settings.model)
        self.check_all()

    def _layout(self) -> None:
        add_row = QHBoxLayout()
        for widget in (self.url, QLabel("at once"), self.in_flight, self.add_button):
            add_row.addWidget(widget)
        buttons = QHBoxLayout()
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.check_button)
        buttons.addStretch(1)
        run_on = QHBoxLayout()
        for widget in (QLabel("Generate on:"), self.local, self.remote):
            run_on.addWidget(widget)
        run_on.addStretch(1)
        model_row = QHBoxLayout()
        model_row.addWidget(QLabel("Server checkpoint:"))
        model_row.addWidget(self.checkpoint, 1)
        box = self.button_box = QDialogButtonBox(QDialogButtonBox.StandardButton.Save |
                                                 QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.save)
        box.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for part in (self.list, add_row, buttons, run_on, model_row, self.contents, self.message, box):
            layout.addLayout(part) if isinstance(part, QHBoxLayout) else layout.addWidget(part)

    def _add_item(self, config: ServerConfig) -> None:
        item = QListWidgetItem(light(None), f"{config.url}  ({config.max_in_flight} at once)")
        item.setData(Qt.ItemDataRole.UserRole, config)
        item.setData(STATUS_ROLE, None)
        item.setToolTip("checking…")
        self.list.addItem(item)

    def configs(self) -> list[ServerConfig]:
        return [self.list.item(k).data(Qt.ItemDataRole.UserRole) for k in range(self.list.count())]

    def add(self) -> None:
        try:
            config = ServerConfig(self.url.text(), self.in_flight.value(), server_settings.token(self.url.text()))
        except ServerError as exc:
            self.message.setText(str(exc))
            return
        if config.url in [c.url for c in self.configs()]:
            self.message.setText(f"{config.url} is already in the list")
            return
        self.message.setText("")
        self.url.clear()
        self._add_item(config)
        QThreadPool.globalInstance().start(_Check(config, self._checker))

    def remove(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))
        self._fill_contents()

    def check_all(self) -> None:
        for k in range(self.list.count()):
            item = self.list.item(k)
            item.setIcon(light(None))
            QThreadPool.globalInstance().start(_Check(item.data(Qt.ItemDataRole.UserRole), self._checker))

    def _show_status(self, url: str, status: ServerStatus) -> None:
        for k in range(self.list.count()):
            item = self.list.item(k)
            if item.data(Qt.ItemDataRole.UserRole).url == url:
                item.setIcon(light(status.up))
                item.setData(STATUS_ROLE, status)
                item.setToolTip(status.text)
        self._fill_contents()

    def statuses(self) -> list[ServerStatus]:
        found = (self.list.item(k).data(STATUS_ROLE) for k in range(self.list.count()))
        return [s for s in found if s is not None and s.up]

    def _fill_contents(self) -> None:
        """The servers' checkpoints in the combo box and, below it, every checkpoint and LoRA they have."""
        checkpoints = sorted({name for s in self.statuses() for name in s.checkpoints})
        loras = sorted({name for s in self.statuses() for name in s.loras})
        current = self.checkpoint.currentText()
        self.checkpoint.clear()
        self.checkpoint.addItems(checkpoints)
        if current in checkpoints:
            self.checkpoint.setCurrentText(current)
        self.contents.setText(f"On the servers: {len(checkpoints)} checkpoint(s)"
                              f"{': ' + ', '.join(checkpoints) if checkpoints else ''}; LoRAs: "
                              f"{', '.join(loras) if loras else 'none'}")

    def save(self) -> None:
        remote = self.remote.isChecked()
        if remote and not self.configs():
            self.message.setText("add a server first, or generate on this computer")
            return
        self.settings.servers = self.configs()
        self.settings.default = BackendKind.COMFYUI if remote else BackendKind.LOCAL
        self.settings.model = self.checkpoint.currentText()
        server_settings.save(self.data_dir, self.settings)
        self.accept()


def install(window: Any, menu: Any) -> None:
    """Add "Generate on" (the window's Run on choice, as a menu) and "Servers…" to `menu`; show the worker's
    notices in the status bar."""
    from studio.ui.run_on import LABELS

    run_on, data_dir = window.run_on, window.backend.data_dir
    if data_dir is None:
        return
    group = QActionGroup(window)
    on = menu.addMenu("Generate on")
    choices = {}
    for kind in BackendKind:
        action = QAction(LABELS[kind], window, checkable=True)
        group.addAction(action)
        on.addAction(action)
        action.triggered.connect(lambda _checked=False, k=kind: run_on.choose(k))
        choices[kind] = action

    def show() -> None:
        choices[run_on.kind].setChecked(True)
        choices[BackendKind.COMFYUI].setEnabled(bool(run_on.settings.servers))

    on.aboutToShow.connect(run_on.reload)  # `studio servers` may have changed it meanwhile
    run_on.changed.connect(show)
    show()
    menu.addAction("Servers…", lambda: edit_servers(window, data_dir))
    window.backend.notice.connect(lambda text: window.statusBar().showMessage(text, 10000))


def edit_servers(window: Any, data_dir: Path) -> None:
    """The Servers dialog; once saved, Run on and the Library follow the new list."""
    if ServersDialog(data_dir, window).exec():
        window.run_on.reload()
        window.server_watch.check()
