"""Where the window's next jobs run (this computer or the ComfyUI servers) and which checkpoint they use there.

One state behind three faces: the Run on selector under the controls, Generate > Generate on, and a server
checkpoint chosen in the Library. It is servers.json's default and model (the CLI's default too, so the
choice persists); each job's request records where it runs (`GenerationRequest.backend`), so a queued job
keeps its place whatever is chosen after it, and Regenerate goes back to where a picture was made.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QComboBox

from studio.backends import settings as server_settings
from studio.backends.base import BackendKind, ServerError
from studio.ui.server_models import ServerWatch, host

LABELS = {BackendKind.LOCAL: "This computer", BackendKind.COMFYUI: "ComfyUI servers"}
NO_SERVER = "Add a ComfyUI server first (Generate > Servers…) to run jobs there"


class RunOn(QObject):
    """The choice, read from and saved to servers.json; `selector` is its combo box."""

    changed = Signal()  # where jobs run, the server checkpoint or the list of servers changed
    notice = Signal(str)  # for the status bar

    def __init__(self, data_dir: Path | None, watch: ServerWatch, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self.watch = watch
        self.settings = server_settings.ServerSettings()  # its defaults are the defaults (one place)
        self.problem = ""  # why servers.json could not be read
        self._verify = False  # tell the designer when the servers just chosen do not answer
        self.selector = QComboBox()
        for kind in BackendKind:
            self.selector.addItem(LABELS[kind], kind.value)
        self.selector.activated.connect(lambda index: self.choose(BackendKind(self.selector.itemData(index))))
        watch.checked.connect(self._checked)
        self.reload()

    @property
    def kind(self) -> BackendKind:
        return self.settings.default if self.settings.servers else BackendKind.LOCAL

    @property
    def server_model(self) -> str:
        return self.settings.model

    def reload(self) -> None:
        """Read servers.json again (the Servers dialog saved it, or `studio servers` changed it)."""
        self.problem = ""
        try:
            self.settings = (server_settings.load(self.data_dir) if self.data_dir is not None
                             else server_settings.ServerSettings())
        except ServerError as exc:
            self.settings, self.problem = server_settings.ServerSettings(), str(exc)
        self._show()
        self.changed.emit()

    def choose(self, kind: BackendKind) -> None:
        if kind is BackendKind.COMFYUI and not self.settings.servers:
            self._show()
            self.notice.emit(NO_SERVER)
            return
        if kind is self.kind:
            return
        self.settings.default = kind
        self._save()
        self.notice.emit(f"New jobs run on {self._where()}")
        if kind is BackendKind.COMFYUI:
            self._check()

    def use_server_model(self, name: str) -> None:
        """A server checkpoint chosen in the Library: the next jobs run on the servers with it; nothing loads here."""
        if not self.settings.servers:
            self.notice.emit(NO_SERVER)
            return
        self.settings.default, self.settings.model = BackendKind.COMFYUI, name
        self._save()
        self.notice.emit(f"New jobs run on the ComfyUI servers with {name}")
        self._check()

    def _save(self) -> None:
        if self.data_dir is not None:
            server_settings.save(self.data_dir, self.settings)
        self._show()
        self.changed.emit()

    def _where(self) -> str:
        return "the ComfyUI servers" if self.kind is BackendKind.COMFYUI else "this computer"

    def _show(self) -> None:
        # `activated` fires on the user's choice only, so setting the index here does not loop back.
        self.selector.setCurrentIndex(self.selector.findData(self.kind.value))
        self.selector.setEnabled(bool(self.settings.servers))
        if self.problem or not self.settings.servers:
            self.selector.setToolTip(self.problem or NO_SERVER)
        else:
            self.selector.setToolTip("Where the next jobs run. The servers: " +
                                     ", ".join(host(url) for url in self.settings.urls()))

    # ------------------------------------------------------------------ do the servers answer?

    def _check(self) -> None:
        self._verify = True
        self.watch.check()

    def _checked(self) -> None:
        if not self._verify:
            return
        self._verify = False
        answered = self.watch.answered()
        if self.kind is BackendKind.COMFYUI and answered and not any(s.up for s in answered):
            self.notice.emit("No ComfyUI server answers (" + "; ".join(s.text for s in answered) +
                             "): jobs on the servers fail until one does; Run on: This computer works meanwhile")
