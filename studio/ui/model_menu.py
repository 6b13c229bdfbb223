"""The window's model: load one (from the Model menu, the library or at start), fall back to the built-in
model when the first load fails, show what is loaded (or the server checkpoint, while jobs run on the
ComfyUI servers), and move guidance and steps to what it suggests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog

from studio.backends.base import BackendKind
from studio.engine.models import DEFAULT_CFG
from studio.recipe.request import GenerationRequest
from studio.resources import BUILTIN_MODEL_NAME

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow


class ModelController(QObject):
    """The Model menu and the model load flow; `info` is what the backend last loaded ({} before any)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.info: dict[str, Any] = {}
        self._wanted: str | None = None  # the model generations ask for: the last one loading or loaded
        self._notice = ""  # a load failure to repeat once the fallback model is in
        self._local_label = (window.model_label.text(), "")  # what the label says of this computer's model
        # What this window last took from a model for each knob.
        self._suggested: dict[str, float | None] = {"cfg": None, "steps": None}
        self.menu = window.menuBar().addMenu("&Model")
        self.menu.aboutToShow.connect(self.fill_menu)
        b = window.backend
        b.model_loading.connect(lambda text: self._set_label(text, ""))
        b.model_loaded.connect(self.on_loaded)
        b.model_failed.connect(self.on_failed)
        window.run_on.changed.connect(self.show_label)
        self.show_label()

    def _status(self, message: str, ms: int) -> None:
        self.window.statusBar().showMessage(message, ms)

    def wanted(self) -> str:
        """The model a generation asks for: the last one loading or loaded, else the setting."""
        return self._wanted or self.window.settings.get("model")

    def choose(self, model: str) -> None:
        """The designer picked a model of this computer (Model menu, Library): jobs run here again, with it."""
        self.window.run_on.choose(BackendKind.LOCAL)
        self.load(model)

    def load(self, model: str) -> None:
        """Load a model on the backend (progress in the status bar; Esc cancels). The setting follows
        only once it has loaded, so a folder that fails leaves the working model in use, now and at
        the next start."""
        self._wanted = model
        self.window.backend.load_model(model, memory=self.window.settings.get("memory"))
        self.window.progress.setFormat("Loading model…")
        self.window.set_busy(True)

    # ------------------------------------------------------------------ the menu

    def fill_menu(self) -> None:
        from studio.engine.memory import MemoryPreset
        from studio.resources import BUILTIN_MODEL

        menu, library = self.menu, self.window.library_panel
        menu.clear()
        current = self.info.get("path")
        models = [(BUILTIN_MODEL_NAME, str(BUILTIN_MODEL), "built-in")] + [
            (item.name, str(item.path), item.family) for item in library.models()]
        for name, path, family in models:
            action = menu.addAction(f"{name}  ({family})" if family else name)
            action.setCheckable(True)
            action.setChecked(path == current)
            action.triggered.connect(lambda _=False, p=path: self.choose(p))
        if len(models) == 1:
            hint = menu.addAction("Your models appear here once the library has a folder")
            hint.setEnabled(False)
        menu.addSeparator()
        menu.addAction("Add models folder to the library…", library.choose_folder)
        menu.addAction("Open model file…", self._choose_file)
        menu.addAction("Open model folder…", self._choose_folder)
        vae_menu = menu.addMenu("VAE for this model")
        chosen_vae = self.vaes().get(str(self.wanted()), "")
        for name, path in [("The model's own", "")] + [(i.name, str(i.path)) for i in library.vaes()]:
            action = vae_menu.addAction(name)
            action.setCheckable(True)
            action.setChecked(path == chosen_vae)
            action.triggered.connect(lambda _=False, p=path: self._set_vae(p))
        memory = menu.addMenu("Memory")
        chosen = self.window.settings.get("memory")
        for preset, text in ((MemoryPreset.AUTO, "Auto (from the model and the GPU)"),
                             (MemoryPreset.HIGH, "High: all on the GPU (fastest)"),
                             (MemoryPreset.LOW, "Low: model CPU offload, sliced attention, tiled VAE"),
                             (MemoryPreset.LOWEST, "Lowest: layer-by-layer offload (slowest)")):
            action = memory.addAction(text)
            action.setCheckable(True)
            action.setChecked(chosen == preset.value)
            action.triggered.connect(lambda _=False, v=preset.value: self._set_memory(v))

    def vaes(self) -> dict[str, str]:
        """Each model's VAE override (model ref -> VAE path), kept in the settings."""
        try:
            chosen = json.loads(self.window.settings.get("vaes") or "{}")
        except ValueError:
            return {}
        return chosen if isinstance(chosen, dict) else {}

    def _set_vae(self, path: str) -> None:
        chosen = self.vaes()
        chosen[str(self.wanted())] = path
        self.window.settings.set("vaes", json.dumps({k: v for k, v in chosen.items() if v}))
        self._status(f"Decoding with {Path(path).name if path else 'the model’s own VAE'} "
                     "from the next generation on", 8000)

    def _set_memory(self, preset: str) -> None:
        self.window.settings.set("memory", preset)
        if self.info:
            self.load(self.info["ref"])  # the backend reloads under the new preset

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Open a diffusers model folder")
        if folder:
            self.choose(folder)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open a checkpoint", "",
                                              "Checkpoints (*.safetensors *.ckpt *.pt *.pth)")
        if path:
            self.choose(path)

    # ------------------------------------------------------------------ the backend's answers

    def on_loaded(self, info: dict[str, Any]) -> None:
        w, controls = self.window, self.window.controls
        self.info = info
        controls.set_native_size(info["native_size"])
        controls.set_family(info.get("family", ""))
        w.progress.setFormat("Ready")
        w.settings.set("model", info["ref"])
        self._set_label(f"{info['name']} · {info.get('family', '')} · {info['device']} · {info['dtype']} · "
                        f"{info['native_size']} px native", f"{info['path']}\n{info.get('memory', '')}")
        if controls.size.currentText() == "Native":  # show what "Native" means for this model
            controls.width_spin.setValue(info["native_size"])
            controls.height_spin.setValue(info["native_size"])
        self._adopt_suggestion("cfg", info["name"], info.get("suggested_cfg"))
        self._adopt_suggestion("steps", info["name"], info.get("suggested_steps"))
        if self._notice:  # why this model and not the one asked for: shown last, so it stays in view
            self._status(self._notice, 30000)
            self._notice = ""

    def _set_label(self, text: str, tip: str) -> None:
        self._local_label = (text, tip)
        self.show_label()

    def show_label(self) -> None:
        """The status bar's model label: this computer's model, or the checkpoint jobs use on the servers."""
        run_on, label = self.window.run_on, self.window.model_label
        if run_on.kind is BackendKind.COMFYUI:
            name = run_on.server_model or "no checkpoint chosen (the Library lists theirs)"
            label.setText(f"on ComfyUI servers: {name}")
            label.setToolTip("New jobs run on " + ", ".join(run_on.settings.urls()) +
                             "; choose a server checkpoint in the Library, or a model here to run here")
            return
        text, tip = self._local_label
        label.setText(text)
        label.setToolTip(tip)

    def _adopt_suggestion(self, knob: str, model: str, suggested: float | None) -> None:
        """Move the guidance (or steps) to what the model suggests, unless the designer chose a value of
        their own.

        A value counts as theirs when it is neither the usual default nor what this window last set for
        a model; a model without a suggestion gets the default back in the same case.
        """
        controls = self.window.controls
        control, default, label = {"cfg": (controls.cfg, DEFAULT_CFG, "Guidance"),
                                   "steps": (controls.steps, GenerationRequest.steps, "Steps")}[knob]
        current = control.value()
        if current not in (default, self._suggested[knob], suggested):  # the last: restored at start
            return
        target = suggested if suggested is not None else default
        if target != current:
            control.setValue(target)
            self._status(f"{label} {control.value():g}: " + (
                f"what {model} suggests" if suggested else "the usual default for this kind of model"), 10000)
        # What the control holds (it rounds to its step), so the next model recognises it as ours.
        self._suggested[knob] = control.value() if suggested is not None else None

    def on_failed(self, message: str) -> None:
        w = self.window
        failed, self._wanted = self._wanted, self.info.get("ref")  # back to one that works
        if not self.info and failed not in (None, "builtin", BUILTIN_MODEL_NAME):
            # Nothing loaded yet (a model folder moved away since the last session, a wrong --model):
            # the designer still gets a working studio, and is told why it is not theirs.
            self._notice = f"{message}; opened the built-in model instead"
            self._status(self._notice, 30000)
            self.load("builtin")
            return
        w.progress.setFormat("Ready" if self.info else "No model")
        if self.info:  # the engine keeps the model it had
            self._status(f"Still using {self.info['name']}: {message}", 20000)
        else:
            self._set_label("No model", message)
            self._status(message, 20000)
