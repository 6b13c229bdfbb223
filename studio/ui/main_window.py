"""The main window: controls on the left, canvas (or variation grid) in the middle, gallery on the right."""

from __future__ import annotations

import time
from pathlib import Path
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

from studio.engine.models import DEFAULT_CFG
from studio.recipe.request import GenerationRequest, RequestError, variation_seed_for
from studio.resources import BUILTIN_MODEL_NAME
from studio.ui.canvas_images import pil_to_qimage
from studio.ui.controls import GenerationControls
from studio.ui.settings import Settings
from studio.ui.variations import VariationGrid
from studio.ui.worker import Backend, JobResult

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
        self._running: dict[int, dict[str, Any]] = {}  # job id -> what it was for
        self._grid_results: list[JobResult] = []  # the finished run the variation grid shows
        self._model_info: dict[str, Any] = {}
        self.startup_model: str = settings.get("model")  # what the app loads first (`--model` overrides)
        self._wanted_model: str | None = None  # the model generations ask for: the last one loading or loaded
        self._notice = ""  # a load failure to repeat once the fallback model is in
        self._suggested: dict[str, float | None] = {"cfg": None, "steps": None}  # what this window last took
        # from a model for each knob
        self._closing = False
        self._build_left_dock()
        self._build_gallery_dock()
        self._build_library_dock()
        self._build_status_bar()
        from studio.ui.canvas_toolbar import CanvasToolBar

        self.canvas_toolbar = CanvasToolBar(self.canvas, self.controls)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.canvas_toolbar)
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
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)
        self.canvas.load_failed.connect(lambda message: self.statusBar().showMessage(message, 10000))
        self.grid.picked.connect(self._pick_variation)
        self.grid.chosen.connect(self._keep_variation)

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
        self.gallery_panel.reuse_settings.connect(self._reuse)
        self.gallery_panel.reuse_seed.connect(self._adopt_seed)
        self.gallery_panel.send_to_canvas.connect(self.open_image)
        self.gallery_panel.regenerate.connect(self._regenerate)
        self.gallery_panel.make_variations.connect(self._variations_of)

    def _build_library_dock(self) -> None:
        from studio.ui.library_panel import LibraryPanel

        self.library_panel = LibraryPanel(self.backend.data_dir)
        dock = QDockWidget("Library")
        dock.setObjectName("library")
        dock.setWidget(self.library_panel)
        self.library_dock = dock
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        if self.gallery_panel is not None:
            self.tabifyDockWidget(self.gallery_dock, dock)
            self.gallery_dock.raise_()  # the gallery is what a session starts on
        self.library_panel.load_model.connect(self.load_model)
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
        self.generate_action = self._action(gen, "&Generate", [S("Ctrl+Return"), S("Ctrl+Enter")], self.generate)
        self.cancel_action = self._action(gen, "&Cancel", S("Esc"), self.cancel)
        self._action(gen, "Clear &queue", S("Shift+Esc"), self.backend.clear_queue)
        from studio.ui import servers_dialog

        servers_dialog.install(self, gen)  # "Generate on" and "Servers…": ComfyUI servers (issue 19)
        gen.addSeparator()
        self._action(gen, "4 variations", S("Ctrl+4"), lambda: self._generate_batch(4))
        self._action(gen, "9 variations", S("Ctrl+9"), lambda: self._generate_batch(9))
        gen.addSeparator()
        seed = self.controls.seed
        self._action(gen, "Random seed", S("Ctrl+R"), seed.randomise)
        self._action(gen, "Previous seed", S("Alt+Left"), lambda: seed.step(-1))
        self._action(gen, "Next seed", S("Alt+Right"), lambda: seed.step(1))
        lock = self._action(gen, "Lock seed", S("Ctrl+L"), seed.lock.toggle)
        lock.setCheckable(True)  # the menu shows whether it is locked
        lock.setChecked(seed.lock.isChecked())
        seed.lock.toggled.connect(lock.setChecked)
        self.model_menu = self.menuBar().addMenu("&Model")
        self.model_menu.aboutToShow.connect(self._fill_model_menu)
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
        b = self.backend
        b.model_loading.connect(self._on_model_loading)
        b.model_loaded.connect(self._on_model_loaded)
        b.model_failed.connect(self._on_model_failed)
        b.started.connect(self._on_started)
        b.step.connect(self._on_step)
        b.finished.connect(self._on_finished)
        b.failed.connect(self._on_failed)
        b.cancelled.connect(self._on_cancelled)
        b.stopped.connect(lambda: self._closing and self.close())
        b.queue_changed.connect(lambda n: self.queue_label.setText(f"{n} queued" if n else ""))
        # `idle` is queued: a new job may have been submitted since it was sent, so ask the backend.
        b.idle.connect(lambda: self.set_busy(self.backend.busy()))

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

    # ------------------------------------------------------------------ generation

    def build_request(self, **overrides: Any) -> GenerationRequest:
        fields = self.controls.request_fields()
        fields["model"] = self._wanted_model or self.settings.get("model")
        fields["vae"] = self._vaes().get(str(fields["model"]), "")
        outpaint = self.canvas.outpaint()
        if outpaint is not None:  # the Extend tool's picture: an outpaint of the one before, as the CLI runs it
            source, extension = outpaint
            fields.update(init_image=source, outpaint=extension.extents, outpaint_fill=extension.fill,
                          outpaint_overlap=extension.overlap)
        elif self.canvas.has_image() and self.canvas.has_mask():
            fields["init_image"] = self.canvas.image()
            fields["mask"] = self.canvas.mask()
        elif self.canvas.has_image() and self.controls.from_canvas.isChecked():
            fields["init_image"] = self.canvas.image()
        if "init_image" in fields:
            fields["parent_id"] = self.canvas.source_id()  # the gallery links "made from" / "used for"
        fields.update(overrides)
        return GenerationRequest(**fields).validate()

    def generate(self) -> None:
        self._generate_batch(self.controls.batch.value())

    def _generate_batch(self, count: int) -> int | None:
        """Run a batch of `count` (Ctrl+4, Ctrl+9): the Batch field says so, as it says what Generate runs."""
        self.controls.batch.setValue(count)
        self.controls.seed.before_run()
        try:
            request = self.build_request()
        except RequestError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            return None
        return self.submit(request)

    def submit(self, request: GenerationRequest) -> int:
        # Text-to-image previews fill the preview grid (one tile, or one per variation); an inpaint
        # previews on the canvas, over the region it repaints.
        grid = request.batch_size > 1 or request.mode == "txt2img"
        job = self.backend.generate(request, preview_all=request.batch_size > 1)
        seeds = request.batch_seeds()
        labels = [f"seed {s} · variation {request.item(k).variation_seed}" if request.varies() else f"seed {s}"
                  for k, s in enumerate(seeds)]
        self._running[job] = {"grid": grid, "seeds": seeds, "labels": labels, "aspect": _picture_aspect(request),
                              "t0": time.perf_counter(),
                              "mode": request.mode,
                              # Image-to-image and inpaint run strength x steps: say so beside the count.
                              "scale": (f" ({request.strength:g} × {request.steps})"
                                        if request.mode != "txt2img" and request.strength < 1 else "")}
        self.set_busy(True)
        return job

    def cancel(self) -> None:
        if self.backend.busy():
            self.backend.cancel_current()
            self.statusBar().showMessage("Cancelling…", 2000)

    def set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self.cancel_action.setEnabled(busy)

    def _on_started(self, job: int) -> None:
        info = self._running.get(job, {})
        info["t0"] = time.perf_counter()
        info["started"] = True
        if info.get("grid"):
            self._grid_results = []
            self.grid.start(info["seeds"], info["labels"], info["aspect"])
            self.center.setCurrentWidget(self.grid)
        else:
            self.center.setCurrentWidget(self.canvas)
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")

    def _on_step(self, job: int, step: int, total: int, elapsed: float, previews: list, region: Any) -> None:
        info = self._running.get(job, {})
        self.progress.setMaximum(total)
        self.progress.setValue(step)
        rate = step / max(elapsed, 1e-6)
        left = (total - step) / max(rate, 1e-6)
        self.progress.setFormat(f"Step {step}/{total}{info.get('scale', '')} · {rate:.1f} it/s · {left:.1f} s left")
        if info.get("grid"):
            self.grid.set_previews(previews)
        elif previews:
            self.canvas.show_preview(previews[0], region)

    def _on_finished(self, job: int, results: list[JobResult]) -> None:
        info = self._job_ended(job)
        seconds = time.perf_counter() - info.get("t0", time.perf_counter())
        self.timing_label.setText(f"{len(results)} image{'s' if len(results) > 1 else ''} in {seconds:.1f} s")
        self.progress.setValue(self.progress.maximum())
        self.progress.setFormat("Done")
        if info.get("grid"):
            self._grid_results = results  # what the tiles show: picked and kept by index
            for k, result in enumerate(results):
                self.grid.set_final(k, pil_to_qimage(result.image))
        if len(results) == 1:
            self.canvas.show_preview(None)
            # An inpaint's mask stays on its result, so Generate again re-rolls it with another seed;
            # Clear mask (Ctrl+Shift+M) or Ctrl+Z is one step away.
            self.canvas.apply_result(results[0].image, f"Generate (seed {results[0].seed})",
                                     source_id=results[0].gallery_id)
            self.center.setCurrentWidget(self.canvas)
        if self.gallery_panel is not None:
            self.gallery_panel.refresh()
            # The new pictures in view, the first one's settings shown.
            self.gallery_panel.show_new([r.gallery_id for r in results if r.gallery_id is not None])

    def _on_failed(self, job: int, message: str) -> None:
        if self._job_ended(job).get("grid"):
            self.center.setCurrentWidget(self.canvas)  # no tile will fill: show the picture, not blanks
        self.canvas.show_preview(None)
        self.progress.setFormat("Failed")
        self.statusBar().showMessage(f"Generation failed: {message}", 15000)

    def _on_cancelled(self, job: int) -> None:
        info = self._job_ended(job)
        if info.get("grid") and info.get("started"):  # a queued job never showed
            self.grid.stop()
        if info:
            self.progress.setFormat("Cancelled")
            if info.get("started") and not self._running:  # a queued job would replace it at once
                self.statusBar().showMessage("Cancelled — the last preview stays on screen", 5000)

    def _pick_variation(self, index: int) -> None:
        """A click on a tile: the seed field and the gallery name that picture. The seed counts as
        used, so an unlocked Generate still moves on to a new one."""
        self.controls.seed.set_seed(self.grid.seed(index))
        self.controls.seed.mark_used()
        self._show_in_gallery(index)

    def _keep_variation(self, index: int) -> None:
        """A double-click on a finished tile: its picture goes on the canvas (one undo step) and its seed is kept."""
        results = self._grid_results
        if 0 <= index < len(results):
            self.canvas.apply_result(results[index].image, f"Keep variation (seed {results[index].seed})",
                                     source_id=results[index].gallery_id)
            self.center.setCurrentWidget(self.canvas)
            self._adopt_seed(results[index].seed)
            self._show_in_gallery(index)

    def _show_in_gallery(self, index: int) -> None:
        results = self._grid_results
        if self.gallery_panel is not None and 0 <= index < len(results) and results[index].gallery_id is not None:
            self.gallery_panel.select_image(results[index].gallery_id)

    def _adopt_seed(self, seed: int) -> None:
        self.controls.seed.set_seed(seed)
        self.controls.seed.lock.setChecked(True)
        self.statusBar().showMessage(f"Seed set to {seed} (locked)", 4000)

    def _reuse(self, recipe: dict[str, Any]) -> dict[str, Any]:
        """Reuse a recipe's settings; its LoRAs are looked up by hash where this library names them otherwise.
        Returns the recipe as it is reused."""
        from studio.engine.library import match_loras

        if recipe.get("loras"):
            recipe = {**recipe, "prompt": match_loras(str(recipe.get("prompt") or ""), recipe["loras"],
                                                      self.library_panel.items)}
        self.controls.apply_recipe(recipe)
        return recipe

    def _request_of(self, recipe: dict[str, Any]) -> GenerationRequest | None:
        """The request that made a gallery picture, whole: model, inpaint settings, variation, its init image
        and mask (kept by the gallery); None, with the reason in the status bar, when it cannot run again."""
        from studio.recipe.request import from_recipe

        inputs = {}
        for what, key in (("init image", "init_image_hash"), ("mask", "mask_hash")):
            digest = recipe.get(key)
            inputs[what] = self.gallery.input_image(digest) if digest and self.gallery is not None else None
            if digest and inputs[what] is None:
                self.statusBar().showMessage(f"The {what} this picture was made from is no longer kept in the "
                                             "gallery: open it on the canvas and generate from there", 10000)
                return None
        model = recipe.get("model") if isinstance(recipe.get("model"), dict) else {}
        if not (model.get("name") or model.get("path")) and self._model_info:
            recipe = {**recipe, "model": {"name": self._model_info["ref"]}}  # a recipe naming none: this one
        try:
            request = from_recipe(recipe, inputs["init image"], inputs["mask"])
            return request.item(min(int(recipe.get("batch_index") or 0), request.batch_size - 1)).validate()
        except (RequestError, TypeError, ValueError) as exc:
            self.statusBar().showMessage(f"This picture cannot be made again: {exc}", 10000)
            return None

    def _regenerate(self, recipe: dict[str, Any]) -> None:
        """The picture again from its whole recipe (not from the controls and the canvas): the same model,
        inpaint settings, variation and input images; the controls show its settings."""
        request = self._request_of(self._reuse(recipe))
        if request is not None:
            self.controls.seed.lock.setChecked(True)
            self.submit(request)

    def _variations_of(self, recipe: dict[str, Any]) -> None:
        """Four small changes of one picture: its whole recipe, four variation seeds. While they run, the
        Batch and Variation fields show it; then they go back (unless changed meanwhile), so the next
        Generate is the plain seed again."""
        from dataclasses import replace

        request = self._request_of(self._reuse(recipe))
        if request is None:
            return
        variation, batch = self.controls.variation, self.controls.batch
        strength = max(request.variation_strength, 0.15)
        restore = [(variation, variation.value(), strength), (batch, batch.value(), 4)]
        variation.setValue(strength)
        batch.setValue(4)
        try:
            varied = replace(request, batch_size=4, variation_strength=strength,
                             variation_seed=variation_seed_for(request.seed)).validate()
        except RequestError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            _put_back(restore)
            return
        self._running[self.submit(varied)]["restore"] = restore

    def _job_ended(self, job: int) -> dict[str, Any]:
        """Forget a finished, failed or cancelled job; what it was for comes back."""
        info = self._running.pop(job, {})
        _put_back(info.get("restore", []))
        return info

    # ------------------------------------------------------------------ model

    def load_model(self, model: str) -> None:
        """Load a model on the backend (progress in the status bar; Esc cancels). The setting follows
        only once it has loaded, so a folder that fails leaves the working model in use, now and at
        the next start."""
        self._wanted_model = model
        self.backend.load_model(model, memory=self.settings.get("memory"))
        self.progress.setFormat("Loading model…")
        self.set_busy(True)

    def _fill_model_menu(self) -> None:
        from studio.engine.memory import MemoryPreset
        from studio.resources import BUILTIN_MODEL

        self.model_menu.clear()
        current = self._model_info.get("path")
        models = [(BUILTIN_MODEL_NAME, str(BUILTIN_MODEL), "built-in")] + [
            (item.name, str(item.path), item.family) for item in self.library_panel.models()]
        for name, path, family in models:
            action = self.model_menu.addAction(f"{name}  ({family})" if family else name)
            action.setCheckable(True)
            action.setChecked(path == current)
            action.triggered.connect(lambda _=False, p=path: self.load_model(p))
        if len(models) == 1:
            hint = self.model_menu.addAction("Your models appear here once the library has a folder")
            hint.setEnabled(False)
        self.model_menu.addSeparator()
        self.model_menu.addAction("Add models folder to the library…", self.library_panel.choose_folder)
        self.model_menu.addAction("Open model file…", self._choose_model_file)
        self.model_menu.addAction("Open model folder…", self._choose_model_folder)
        vae_menu = self.model_menu.addMenu("VAE for this model")
        chosen_vae = self._vaes().get(str(self._wanted_model or self.settings.get("model")), "")
        for name, path in [("The model's own", "")] + [(i.name, str(i.path)) for i in self.library_panel.vaes()]:
            action = vae_menu.addAction(name)
            action.setCheckable(True)
            action.setChecked(path == chosen_vae)
            action.triggered.connect(lambda _=False, p=path: self._set_vae(p))
        memory = self.model_menu.addMenu("Memory")
        chosen = self.settings.get("memory")
        for preset, text in ((MemoryPreset.AUTO, "Auto (from the model and the GPU)"),
                             (MemoryPreset.HIGH, "High: all on the GPU (fastest)"),
                             (MemoryPreset.LOW, "Low: model CPU offload, sliced attention, tiled VAE"),
                             (MemoryPreset.LOWEST, "Lowest: layer-by-layer offload (slowest)")):
            action = memory.addAction(text)
            action.setCheckable(True)
            action.setChecked(chosen == preset.value)
            action.triggered.connect(lambda _=False, v=preset.value: self._set_memory(v))

    def _vaes(self) -> dict[str, str]:
        """Each model's VAE override (model ref -> VAE path), kept in the settings."""
        import json

        try:
            chosen = json.loads(self.settings.get("vaes") or "{}")
        except ValueError:
            return {}
        return chosen if isinstance(chosen, dict) else {}

    def _set_vae(self, path: str) -> None:
        import json

        chosen = self._vaes()
        chosen[str(self._wanted_model or self.settings.get("model"))] = path
        self.settings.set("vaes", json.dumps({k: v for k, v in chosen.items() if v}))
        self.statusBar().showMessage(f"Decoding with {Path(path).name if path else 'the model’s own VAE'} "
                                     "from the next generation on", 8000)

    def _set_memory(self, preset: str) -> None:
        self.settings.set("memory", preset)
        if self._model_info:
            self.load_model(self._model_info["ref"])  # the backend reloads under the new preset

    def _choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a diffusers model folder")
        if folder:
            self.load_model(folder)

    def _choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a checkpoint", "",
                                              "Checkpoints (*.safetensors *.ckpt *.pt *.pth)")
        if path:
            self.load_model(path)

    def _on_model_loading(self, message: str) -> None:
        self.model_label.setText(message)

    def _on_model_loaded(self, info: dict[str, Any]) -> None:
        self._model_info = info
        self.controls.set_native_size(info["native_size"])
        self.controls.set_family(info.get("family", ""))
        self.progress.setFormat("Ready")
        self.settings.set("model", info["ref"])
        self.model_label.setText(f"{info['name']} · {info.get('family', '')} · {info['device']} · {info['dtype']} · "
                                 f"{info['native_size']} px native")
        self.model_label.setToolTip(f"{info['path']}\n{info.get('memory', '')}")
        if self.controls.size.currentText() == "Native":  # show what "Native" means for this model
            self.controls.width_spin.setValue(info["native_size"])
            self.controls.height_spin.setValue(info["native_size"])
        self._adopt_suggestion("cfg", info["name"], info.get("suggested_cfg"))
        self._adopt_suggestion("steps", info["name"], info.get("suggested_steps"))
        if self._notice:  # why this model and not the one asked for: shown last, so it stays in view
            self.statusBar().showMessage(self._notice, 30000)
            self._notice = ""

    def _adopt_suggestion(self, knob: str, model: str, suggested: float | None) -> None:
        """Move the guidance (or steps) to what the model suggests, unless the designer chose a value of
        their own.

        A value counts as theirs when it is neither the usual default nor what this window last set for
        a model; a model without a suggestion gets the default back in the same case.
        """
        control, default, label = {"cfg": (self.controls.cfg, DEFAULT_CFG, "Guidance"),
                                   "steps": (self.controls.steps, GenerationRequest.steps, "Steps")}[knob]
        current = control.value()
        if current not in (default, self._suggested[knob], suggested):  # the last: restored at start
            return
        target = suggested if suggested is not None else default
        if target != current:
            control.setValue(target)
            self.statusBar().showMessage(f"{label} {control.value():g}: " + (
                f"what {model} suggests" if suggested else "the usual default for this kind of model"), 10000)
        # What the control holds (it rounds to its step), so the next model recognises it as ours.
        self._suggested[knob] = control.value() if suggested is not None else None

    def _on_model_failed(self, message: str) -> None:
        failed, self._wanted_model = self._wanted_model, self._model_info.get("ref")  # back to one that works
        if not self._model_info and failed not in (None, "builtin", BUILTIN_MODEL_NAME):
            # Nothing loaded yet (a model folder moved away since the last session, a wrong --model):
            # the designer still gets a working studio, and is told why it is not theirs.
            self._notice = f"{message}; opened the built-in model instead"
            self.statusBar().showMessage(self._notice, 30000)
            self.load_model("builtin")
            return
        self.progress.setFormat("Ready" if self._model_info else "No model")
        if self._model_info:  # the engine keeps the model it had
            self.statusBar().showMessage(f"Still using {self._model_info['name']}: {message}", 20000)
        else:
            self.model_label.setText("No model")
            self.model_label.setToolTip(message)
            self.statusBar().showMessage(message, 20000)

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


def _put_back(fields: list[tuple[Any, float, float]]) -> None:
    """(widget, value before, value set): each widget that still shows the value set gets its own back."""
    for widget, before, shown in fields:
        if widget.value() == shown:
            widget.setValue(before)


def _picture_aspect(request: GenerationRequest) -> float:
    """Width / height of what `request` makes: its size, else its start image's (extended, for an
    outpaint), else square (a model's native size is square)."""
    if request.width and request.height:
        return request.width / request.height
    if request.init_image is not None:
        left, top, right, bottom = request.outpaint or (0, 0, 0, 0)
        return (request.init_image.width + left + right) / (request.init_image.height + top + bottom)
    return 1.0


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
