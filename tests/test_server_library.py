"""The Library lists the ComfyUI servers' checkpoints and LoRAs beside the local ones, and Run on chooses where
the next jobs go: driven like a designer, against fake servers (fast; the real ComfyUI run is marked slow)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from studio.backends import settings as server_settings
from studio.backends.base import BackendKind
from studio.recipe.request import GenerationRequest, to_recipe
from studio.ui.library_panel import SERVER_COLUMN, SERVER_ROLE
from studio.ui.settings import Settings
from tests.fake_comfy import FakeComfy

CHECKPOINT = "sd15/dreamshaper_8.safetensors"


@pytest.fixture
def fake():
    server = FakeComfy("good", checkpoints=(CHECKPOINT,), loras=("inkwash_v2.safetensors",))
    yield server
    server.close()


@pytest.fixture
def window(qtbot, data_dir):
    """The window without its worker thread: what a job would be is read from the submitted job."""
    from studio.gallery import Gallery
    from studio.ui.main_window import MainWindow
    from studio.ui.worker import Backend

    def make():
        w = MainWindow(Backend(data_dir, device="cpu"), Settings(data_dir / "settings.ini"), Gallery(data_dir))
        qtbot.addWidget(w)
        w.show()
        w.library_dock.raise_()
        w.loads, w.jobs = [], []
        w.backend.load_model = lambda model, memory=None: w.loads.append(model)
        w.backend.submit = lambda job: w.jobs.append(job) or job
        return w

    return make


def _rows(panel):
    return [panel.tree.topLevelItem(k) for k in range(panel.tree.topLevelItemCount())]


def _row(panel, name):
    return next(r for r in _rows(panel) if r.text(0) == name)


def _double_click(qtbot, tree, row):
    """On the row's name, as a designer does (press, release, then the double-click event)."""
    where = tree.visualRect(tree.indexFromItem(row, 0)).center()
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=where)
    qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=where)


def _menu_action(window, menu_title, text):
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == menu_title)
    found = [a for a in menu.actions() if a.text() == text]
    for sub in (a.menu() for a in menu.actions() if a.menu() is not None):
        found += [a for a in sub.actions() if a.text() == text]
    return found[0]


def test_the_library_lists_a_servers_models_and_a_server_checkpoint_runs_the_next_jobs_there(
        qtbot, data_dir, fake, window):
    server_settings.add(data_dir, fake.url)
    w = window()
    panel = w.library_panel
    panel.rescan()
    qtbot.waitUntil(lambda: any(r.text(0) == "sd15/dreamshaper_8" for r in _rows(panel)), timeout=10_000)
    host = fake.url.removeprefix("http://")
    checkpoint, lora = _row(panel, "sd15/dreamshaper_8"), _row(panel, "inkwash_v2")
    assert (checkpoint.text(1), checkpoint.text(SERVER_COLUMN)) == ("Checkpoint", "on ComfyUI")
    assert (lora.text(1), lora.text(SERVER_COLUMN)) == ("LoRA", "on ComfyUI")
    assert checkpoint.toolTip(0).startswith(f"{CHECKPOINT} on {fake.url}")
    assert f"{host} up (1 checkpoint(s), 1 LoRA(s))" in panel.server_status.text()
    panel.kind.setCurrentText("On ComfyUI servers")
    assert {r.text(0) for r in _rows(panel)} == {"sd15/dreamshaper_8", "inkwash_v2"}
    panel.kind.setCurrentText("Models")
    assert [r.text(0) for r in _rows(panel) if r.data(0, SERVER_ROLE)] == ["sd15/dreamshaper_8"]
    panel.kind.setCurrentText("Everything")

    w.controls.prompt.setPlainText("a lighthouse")
    _double_click(qtbot, panel.tree, _row(panel, "inkwash_v2"))
    assert w.controls.prompt.toPlainText() == "a lighthouse, <lora:inkwash_v2:1>"  # the tag the servers match
    assert w.run_on.selector.currentText() == "This computer"
    assert w.generation.build_request().backend == "local"

    panel.tree.setCurrentItem(_row(panel, "sd15/dreamshaper_8"))
    assert fake.url in panel.details.text() and "ComfyUI servers" in panel.details.text()
    _double_click(qtbot, panel.tree, _row(panel, "sd15/dreamshaper_8"))
    assert w.loads == []  # nothing loads here
    # Choosing servers asks them again: meanwhile the list and the selection stay as they were.
    assert panel.tree.currentItem().text(0) == "sd15/dreamshaper_8"
    qtbot.waitUntil(w.server_watch.done, timeout=10_000)
    assert panel.tree.currentItem().text(0) == "sd15/dreamshaper_8"
    assert w.run_on.selector.currentText() == "ComfyUI servers"
    assert w.model_label.text() == f"on ComfyUI servers: {CHECKPOINT}"
    assert _menu_action(w, "&Generate", "ComfyUI servers").isChecked()
    saved = server_settings.load(data_dir)
    assert (saved.default, saved.model) == (BackendKind.COMFYUI, CHECKPOINT)  # the CLI's default too
    qtbot.mouseClick(w.generate_button, Qt.MouseButton.LeftButton)
    job = w.jobs[-1]
    assert (job.request.backend, job.request.model, job.request.vae) == ("comfyui", CHECKPOINT, "")
    assert "<lora:inkwash_v2:1>" in job.request.prompt

    # A model of this computer, from the Model menu: jobs run here again, and it loads.
    w.models.fill_menu()
    builtin = next(a for a in w.models.menu.actions() if a.text().startswith("studio-shapes"))
    builtin.trigger()
    assert w.run_on.selector.currentText() == "This computer" and len(w.loads) == 1
    assert not w.model_label.text().startswith("on ComfyUI")
    qtbot.mouseClick(w.generate_button, Qt.MouseButton.LeftButton)
    assert (w.jobs[-1].request.backend, w.jobs[-1].request.model) == ("local", w.loads[0])
    assert job.request.backend == "comfyui"  # the first job keeps its place
    w.close()


def test_run_on_is_off_without_servers_follows_the_servers_dialog_and_the_menu(qtbot, data_dir, fake, window):
    from studio.ui import servers_dialog

    w = window()
    selector = w.run_on.selector
    assert not selector.isEnabled() and "Add a ComfyUI server first" in selector.toolTip()
    assert selector.currentText() == "This computer"

    def fill_in_the_dialog():
        dialog = QApplication.activeModalWidget()
        dialog.url.setText(fake.url)
        qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
        qtbot.mouseClick(dialog.button_box.button(dialog.button_box.StandardButton.Save), Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, fill_in_the_dialog)
    servers_dialog.edit_servers(w, data_dir)  # Generate > Servers…, saved
    assert selector.isEnabled() and fake.url.removeprefix("http://") in selector.toolTip()
    qtbot.waitUntil(lambda: any(r.text(0) == "sd15/dreamshaper_8" for r in _rows(w.library_panel)), timeout=10_000)

    selector.setFocus()
    qtbot.keyClick(selector, Qt.Key.Key_Down)  # the keyboard's way through a closed combo box
    assert selector.currentText() == "ComfyUI servers"
    assert _menu_action(w, "&Generate", "ComfyUI servers").isChecked()
    assert "New jobs run on the ComfyUI servers" in w.statusBar().currentMessage()
    assert w.generation.build_request().backend == "comfyui"
    assert w.model_label.text().startswith("on ComfyUI servers: no checkpoint chosen")
    _menu_action(w, "&Generate", "This computer").trigger()
    assert selector.currentText() == "This computer"
    assert w.generation.build_request().backend == "local"
    assert server_settings.load(data_dir).default is BackendKind.LOCAL
    w.close()


def test_a_dead_server_shows_not_reachable_and_the_window_stays_responsive(qtbot, data_dir, window):
    silent = FakeComfy("hang")  # accepts the connection, never answers: the check's timeout ends it
    try:
        server_settings.add(data_dir, silent.url)
        server_settings.add(data_dir, "http://127.0.0.1:9")  # nothing listens there
        w = window()
        panel = w.library_panel
        panel.rescan()
        qtbot.waitUntil(lambda: "127.0.0.1:9 not reachable" in panel.server_status.text(), timeout=10_000)
        # The silent one is still being asked, and the window answers meanwhile: keys, lists, Run on.
        assert f"{silent.url.removeprefix('http://')} checking…" in panel.server_status.text()
        selector = w.run_on.selector
        selector.setFocus()
        qtbot.keyClick(selector, Qt.Key.Key_Down)
        assert selector.currentText() == "ComfyUI servers"
        qtbot.waitUntil(lambda: panel.server_status.text().count("not reachable") == 2, timeout=10_000)
        qtbot.waitUntil(lambda: "No ComfyUI server answers" in w.statusBar().currentMessage(), timeout=10_000)
        assert "cannot reach the server" in w.statusBar().currentMessage()
        assert not any(r.data(0, SERVER_ROLE) for r in _rows(panel))
        w.close()
    finally:
        silent.close()


def test_regenerate_of_a_servers_picture_goes_back_to_the_servers(qtbot, data_dir, fake, window):
    server_settings.add(data_dir, fake.url)
    w = window()
    assert w.run_on.kind is BackendKind.LOCAL
    recipe = to_recipe(GenerationRequest(prompt="a lighthouse", seed=5, width=64, height=64, model=CHECKPOINT,
                                         backend="comfyui"))
    recipe["backend"] = {"kind": "comfyui", "server": fake.url}
    w.generation.regenerate(recipe)
    assert (w.jobs[-1].request.backend, w.jobs[-1].request.model) == ("comfyui", CHECKPOINT)
    w.close()


@pytest.mark.slow
def test_a_server_checkpoint_picked_in_the_library_makes_the_next_picture_there(qtbot, comfyui_servers, data_dir):
    """Against a real ComfyUI: no model loads here, the picture comes from the server into the gallery."""
    from studio.gallery import Gallery
    from studio.ui.main_window import MainWindow
    from studio.ui.worker import Backend

    server = comfyui_servers[0]
    server_settings.add(data_dir, server.url)
    backend = Backend(data_dir, device="cpu")
    w = MainWindow(backend, Settings(data_dir / "settings.ini"), Gallery(data_dir))
    qtbot.addWidget(w)
    w.show()
    w.library_dock.raise_()
    backend.start()
    try:
        panel = w.library_panel
        panel.rescan()
        qtbot.waitUntil(lambda: any(r.text(0) == "studio-tiny-sd15" for r in _rows(panel)), timeout=30_000)
        _double_click(qtbot, panel.tree, _row(panel, "studio-tiny-sd15"))
        assert w.model_label.text() == "on ComfyUI servers: studio-tiny-sd15.safetensors"
        c = w.controls
        c.steps.setValue(2)
        c.size.setCurrentText("Custom")
        c.width_spin.setValue(64)
        c.height_spin.setValue(64)
        with qtbot.waitSignal(backend.finished, timeout=300_000) as finished:
            qtbot.mouseClick(w.generate_button, Qt.MouseButton.LeftButton)
        [result] = finished.args[0].results
        assert result.recipe["backend"] == {**result.recipe["backend"], "kind": "comfyui", "server": server.url}
        assert w.gallery.get(result.gallery_id).file.exists() and result.image.size == (64, 64)
        assert w.models.info == {}  # nothing was loaded on this computer
    finally:
        assert backend.shutdown()
        w.close()
