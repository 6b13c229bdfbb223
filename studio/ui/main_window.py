"""The main window: controls on the left, canvas (or variation grid) in the middle, gallery on the right."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QUndoGroup
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from studio.ui.controls import GenerationControls
from studio.ui.generation import GenerationController
from studio.ui.model_menu import ModelController
from studio.ui.settings import Settings
from studio.ui.variations import VariationGrid
from studio.ui.worker import Backend

GALLERY_DOCK_MIN = 260  # px: two columns of thumbnails, the detail picture over its settings
# How long closing waits for the backend in place. Importing torch or reading a model's weights has no
# cancel point; past this the window hides and the app ends when the backend does.
BACKEND_STOP_WAIT_MS = 2000


class MainWindow(QMainWindow):
    """Wires the controls, the canvas, the gallery and the backend together; owns no model state."""

    def __init__(self, backend: Backend, settings: Settings, gallery: Any = None) -> None:
        super().__init__()
        from studio.ui.canvas import CanvasView

        self.backend = backend
        self.settings = settings
        self.gallery = gallery
        self.setWindowTitle("Studio")
        self.controls = GenerationControls()
        self.canvas = CanvasView()
        self.grid = VariationGrid()
        self.center = QStackedWidget()
        self.center.addWidget(self.canvas)
        self.center.addWidget(self.grid)
        self.setCentralWidget(self.center)
        self.startup_model: str = settings.get("model")  # what the app loads first (`--model` overrides)
        self._closing = False
        from studio.ui.run_on import RunOn
        from studio.ui.server_models import ServerWatch

        self.server_watch = ServerWatch(backend.data_dir, self)  # what the servers have: Library and Run on
        self.run_on = RunOn(backend.data_dir, self.server_watch, self)
        self._build_left_dock()
        self._build_gallery_dock()
        self._build_library_dock()
        self._build_status_bar()
        from studio.ui.canvas_toolbar import CanvasToolBar

        self.canvas_toolbar = CanvasToolBar(self.canvas, self.controls)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.canvas_toolbar)
        self.generation = GenerationController(self)
        self._build_actions()
        from studio.ui import extras

        extras.install(self)  # Upscale, comparison grids, before/after
        self._connect_backend()
        self.controls.load(settings)
        self._restore_geometry()
        self.set_busy(False)

    # ------------------------------------------------------------------ layout

    def _build_left_dock(self) -> None:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.controls)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        layout.addWidget(scroll, 1)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("Ready")
        self.progress.setValue(0)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setDefault(True)
        self.generate_button.setMinimumHeight(36)
        self.cancel_button = QPushButton("Cancel")
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        run_on = QHBoxLayout()
        run_on_label = QLabel("Run on:")
        run_on_label.setBuddy(self.run_on.selector)
        run_on.addWidget(run_on_label)
        run_on.addWidget(self.run_on.selector, 1)
        layout.addLayout(run_on)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)
        dock = QDockWidget("Generate")
        dock.setObjectName("controls")
        dock.setWidget(panel)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        # As wide as the controls' widest row and the scroll bar: never a horizontal scroll bar.
        bar = scroll.verticalScrollBar().sizeHint().width()
        dock.setMinimumWidth(self.controls.minimumSizeHint().width() + bar + 2)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.canvas.load_failed.connect(lambda message: self.statusBar().showMessage(message, 10000))

    def _build_gallery_dock(self) -> None:
        self.gallery_panel = None
        if self.gallery is None:
            return
        from studio.ui.gallery_view import GalleryPanel

        self.gallery_panel = GalleryPanel(self.gallery)
        dock = QDockWidget("Gallery")
        dock.setObjectName("gallery")
        dock.setWidget(self.gallery_panel)
        self.gallery_dock = dock
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.gallery_panel.send_to_canvas.connect(self.open_image)

    def _build_library_dock(self) -> None:
        from studio.ui.library_panel import LibraryPanel

        self.library_panel = LibraryPanel(self.backend.data_dir, self.server_watch)
        dock = QDockWidget("Library")
        dock.setObjectName("library")
        dock.setWidget(self.library_panel)
        self.library_dock = dock
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        if self.gallery_panel is not None:
            self.tabifyDockWidget(self.gallery_dock, dock)
            self.gallery_dock.raise_()  # the gallery is what a session starts on
        self.library_panel.insert_text.connect(self._insert_in_prompt)

    def _insert_in_prompt(self, text: str) -> None:
        """Add a LoRA tag or an embedding's name at the end of the prompt, separated as A1111 prompts are."""
        prompt = self.controls.prompt.toPlainText().rstrip()
        self.controls.prompt.setPlainText(f"{prompt}, {text}" if prompt else text)
        self.statusBar().showMessage(f"Added {text} to the prompt", 5000)

    def _build_status_bar(self) -> None:
        self.model_label = QLabel("Starting…")
        self.timing_label = QLabel("")
        self.queue_label = QLabel("")
        bar = self.statusBar()
        # Permanent widgets stay visible under temporary messages: which model is in use always shows.
        bar.addPermanentWidget(self.model_label)
        bar.addPermanentWidget(self.queue_label)
        bar.addPermanentWidget(self.timing_label)

    def _action(self, menu: Any, text: str, shortcut: Any, slot: Any, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcuts(shortcut if isinstance(shortcut, list) else [shortcut])
            keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            action.setToolTip(f"{tip or text.replace('&', '')} ({keys})")  # "&" marks the menu mnemonic
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)  # shortcuts work wherever the focus is
        return action

    def _build_actions(self) -> None:
        S = QKeySequence
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open image…", S.StandardKey.Open, self.open_dialog)
        self._action(file_menu, "&Save canvas as…", S.StandardKey.SaveAs, self.save_dialog)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", S.StandardKey.Quit, self.close)
        edit = self.menuBar().addMenu("&Edit")
        # One Undo for the window: it undoes in the canvas, or in the gallery while that has focus.
        self.undo_group = QUndoGroup(self)
        self.undo_group.addStack(self.canvas.undo_stack)
        self.undo_group.setActiveStack(self.canvas.undo_stack)
        if self.gallery_panel is not None:
            self.undo_group.addStack(self.gallery_panel.undo_stack)
            self.gallery_panel.actions_by_name["undo"].setShortcut(QKeySequence())  # no ambiguous Ctrl+Z
            QApplication.instance().focusChanged.connect(self._focus_changed)
        self.undo_action = self.undo_group.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(S.StandardKey.Undo)
        self.redo_action = self.undo_group.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([S("Ctrl+Shift+Z"), S.StandardKey.Redo])
        for a in (self.undo_action, self.redo_action):
            edit.addAction(a)
            self.addAction(a)
        self._action(edit, "&Paste image", S.StandardKey.Paste, self.canvas.paste_from_clipboard)
        edit.addSeparator()
        self._action(edit, "Clear mask", S("Ctrl+Shift+M"), self.canvas.clear_mask)
        self._action(edit, "Invert mask", S("Ctrl+I"), self.canvas.invert_mask)
        edit.addMenu(self.canvas_toolbar.extend_menu)
        gen = self.menuBar().addMenu("&Generate")
        generation = self.generation
        self.generate_action = self._action(gen, "&Generate", [S("Ctrl+Return"), S("Ctrl+Enter")],
                                            generation.generate)
        self.cancel_action = self._action(gen, "&Cancel", S("Esc"), generation.cancel)
        self._action(gen, "Clear &queue", S("Shift+Esc"), self.backend.clear_queue)
        from studio.ui import servers_dialog

        servers_dialog.install(self, gen)  # "Generate on" and "Servers…": ComfyUI servers (issue 19)
        gen.addSeparator()
        self._action(gen, "4 variations", S("Ctrl+4"), lambda: generation.generate_batch(4))
        self._action(gen, "9 variations", S("Ctrl+9"), lambda: generation.generate_batch(9))
        gen.addSeparator()
        seed = self.controls.seed
        self._action(gen, "Random seed", S("Ctrl+R"), seed.randomise)
        self._action(gen, "Previous seed", S("Alt+Left"), lambda: seed.step(-1))
        self._action(gen, "Next seed", S("Alt+Right"), lambda: seed.step(1))
        lock = self._action(gen, "Lock seed", S("Ctrl+L"), seed.lock.toggle)
        lock.setCheckable(True)  # the menu shows whether it is locked
        lock.setChecked(seed.lock.isChecked())
        seed.lock.toggled.connect(lock.setChecked)
        self.models = ModelController(self)  # the Model menu, here in the menu bar
        view = self.menuBar().addMenu("&View")
        for dock in (getattr(self, "gallery_dock", None), self.library_dock):
            if dock is not None:  # a closed dock comes back from here
                view.addAction(dock.toggleViewAction())
        view.addSeparator()
        self._action(view, "Fit to window", S("Ctrl+0"), self.canvas.fit)
        self._action(view, "Actual size", S("Ctrl+1"), self.canvas.actual_size)
        self._action(view, "Show canvas", S("Ctrl+Shift+C"), lambda: self.center.setCurrentWidget(self.canvas))
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "Keyboard shortcuts", S("F1"), self.show_shortcuts)
        self.generate_button.setToolTip(self.generate_action.toolTip())
        self.cancel_button.setToolTip(self.cancel_action.toolTip())

    def _focus_changed(self, _old: QWidget | None, new: QWidget | None) -> None:
        in_gallery = new is not None and self.gallery_panel is not None and self.gallery_panel.isAncestorOf(new)
        self.undo_group.setActiveStack(self.gallery_panel.undo_stack if in_gallery  # type: ignore[union-attr]
                                       else self.canvas.undo_stack)

    def _connect_backend(self) -> None:
        """The parts that act on one another: buttons, gallery and library to the generation and the model."""
        generation, b = self.generation, self.backend
        self.generate_button.clicked.connect(generation.generate)
        self.cancel_button.clicked.connect(generation.cancel)
        if self.gallery_panel is not None:
            self.gallery_panel.reuse_settings.connect(generation.reuse)
            self.gallery_panel.reuse_seed.connect(generation.adopt_seed)
            self.gallery_panel.regenerate.connect(generation.regenerate)
            self.gallery_panel.make_variations.connect(generation.variations_of)
        self.library_panel.load_model.connect(self.models.choose)
        self.library_panel.use_server_model.connect(self.run_on.use_server_model)
        self.run_on.notice.connect(lambda text: self.statusBar().showMessage(text, 10000))
        b.stopped.connect(self._backend_stopped)  # a method: the connection goes with the window
        b.queue_changed.connect(self._show_queue)
        b.idle.connect(lambda: self.set_busy(False))  # sent on this thread once the last job has ended

    def _backend_stopped(self) -> None:
        if self._closing:  # the window hid while the backend finished: now it closes for good
            self.close()

    def _show_queue(self, running: int, waiting: int) -> None:
        """The status bar's count: how many jobs run at once (servers run several) and how many wait."""
        parts = ([f"{running} running"] if running > 1 else []) + ([f"{waiting} queued"] if waiting else [])
        self.queue_label.setText(" · ".join(parts))

    def _restore_geometry(self) -> None:
        geometry, state = self.settings.get("window_geometry"), self.settings.get("window_state")
        if geometry:
            self.restoreGeometry(QByteArray(geometry))
        else:  # first start: 1400 x 860, or the whole screen where that is smaller
            room = self.screen().availableGeometry()
            self.resize(min(1400, room.width()), min(860, room.height()))
        if state:
            self.restoreState(QByteArray(state))
        elif self.gallery_panel is not None:
            # First start: the canvas gets the room. Left alone, the gallery dock takes the width of
            # its widest button row, which on a 1024 px screen left the canvas 160 px.
            self.resizeDocks([self.gallery_dock], [max(GALLERY_DOCK_MIN, self.width() // 4)],
                             Qt.Orientation.Horizontal)

    def set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self.cancel_action.setEnabled(busy)

    # ------------------------------------------------------------------ files

    def open_image(self, path: str, source_id: int | None = None) -> bool:
        """Put an image file on the canvas (undoable); a bad file is reported, nothing changes."""
        opened = self.canvas.open_file(path, source_id)
        if opened:
            self.center.setCurrentWidget(self.canvas)
        return opened

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)")
        if path:
            self.open_image(path)

    def save_dialog(self) -> None:
        if not self.canvas.has_image():
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save canvas", "canvas.png", "PNG (*.png)")
        if path:
            self.canvas.image().save(path)

    def shortcuts_text(self) -> str:
        """Every shortcut, by where it works (the F1 dialog)."""
        canvas = ["Brush / eraser / extend tool: B / E / X", "Brush size: [ and ]", "Show effective mask: M",
                  "Fill mask: Ctrl+Shift+F", "Pan: Space-drag or middle button", "Zoom: mouse wheel"]
        sections = [("Anywhere", _shortcut_lines(self.actions())), ("Canvas", canvas)]
        if self.gallery_panel is not None:
            sections.append(("Gallery (when it has the focus)",
                             _shortcut_lines(self.gallery_panel.actions_by_name.values())))
        return "\n\n".join(f"{title}\n" + "\n".join(f"  {line}" for line in lines) for title, lines in sections)

    def show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard shortcuts", self.shortcuts_text())

    # ------------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.library_panel.stop()
        if not self._closing:
            self._closing = True
            self.controls.save(self.settings)
            self.settings.set("window_geometry", bytes(self.saveGeometry().data()))
            self.settings.set("window_state", bytes(self.saveState().data()))
            self.settings.sync()
            self.model_label.setText("Stopping…")
        if not self.backend.shutdown(BACKEND_STOP_WAIT_MS):
            # Quitting under a running thread aborts the process, and waiting here would freeze the
            # window: it goes now, and `stopped` closes it for good.
            event.ignore()
            self.hide()
            return
        super().closeEvent(event)


def _shortcut_lines(actions: Any) -> list[str]:
    """One "name: keys" line per action with a shortcut, sorted; Undo and Redo without their step."""
    lines = set()
    for action in actions:
        if action.shortcut().isEmpty():
            continue
        name = action.text().replace("&", "")
        name = next((word for word in ("Undo", "Redo") if name.startswith(word)), name)
        lines.add(f"{name}: {action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)}")
    return sorted(lines)
