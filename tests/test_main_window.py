"""The main window with pytest-qt: generate from the button and the shortcut, cancel, variations, settings."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from studio.ui.settings import Settings


@pytest.fixture
def make_window(qtbot, tiny_model, data_dir):
    from studio.gallery import Gallery
    from studio.ui.main_window import MainWindow
    from studio.ui.worker import Backend

    windows = []

    def make(steps: int | None = 3):
        settings = Settings(data_dir / "settings.ini")
        settings.set("model", str(tiny_model))
        backend = Backend(data_dir, device="cpu")
        window = MainWindow(backend, settings, Gallery(data_dir))
        qtbot.addWidget(window)
        window.show()
        with qtbot.waitSignal(backend.model_loaded, timeout=120_000):
            backend.start()
            backend.load_model(str(tiny_model))
        qtbot.waitUntil(lambda: not backend.busy(), timeout=10_000)
        if steps is not None:
            window.controls.steps.setValue(steps)
        windows.append(window)
        return window

    yield make
    for w in windows:
        w.close()


def test_a_first_start_fits_the_screen_and_gives_the_canvas_the_room(qtbot, data_dir):
    from PySide6.QtWidgets import QScrollArea

    from studio.gallery import Gallery
    from studio.ui.main_window import GALLERY_DOCK_MIN, MainWindow
    from studio.ui.worker import Backend

    window = MainWindow(Backend(data_dir, device="cpu"), Settings(data_dir / "settings.ini"), Gallery(data_dir))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    room = window.screen().availableGeometry()
    assert window.width() <= room.width() and window.height() <= room.height()
    # Left to itself the gallery dock took its widest button row (about 450 px).
    assert window.gallery_dock.width() <= max(GALLERY_DOCK_MIN, window.width() // 4) + 8
    scroll = window.findChild(QScrollArea)
    assert scroll.widget() is window.controls and not scroll.horizontalScrollBar().isVisible()
    window.close()


def test_closing_while_the_backend_cannot_stop_yet_hides_the_window_and_ends_with_it(qtbot, data_dir, monkeypatch):
    import threading

    from studio.gallery import Gallery
    from studio.ui import main_window, worker
    from studio.ui.main_window import MainWindow
    from studio.ui.worker import Backend

    release = threading.Event()
    # A load still importing torch or reading weights: no cancel point until it is done.
    monkeypatch.setattr(worker._EngineThread, "_load", lambda self, job: release.wait(60))
    monkeypatch.setattr(main_window, "BACKEND_STOP_WAIT_MS", 50)
    settings = Settings(data_dir / "settings.ini")
    window = MainWindow(Backend(data_dir, device="cpu"), settings, Gallery(data_dir))
    qtbot.addWidget(window)
    window.show()
    window.backend.start()
    window.backend.load_model("anything")
    qtbot.waitUntil(lambda: bool(window.backend.running()), timeout=10_000)
    window.controls.prompt.setPlainText("kept across the restart")
    assert not window.close()  # not yet: the thread still runs, and Python must not exit under it
    assert window.isHidden() and window.backend._engine_thread.isRunning()
    assert Settings(data_dir / "settings.ini").get("prompt") == "kept across the restart"  # saved at once
    with qtbot.waitSignal(window.backend.stopped, timeout=10_000):
        release.set()
    qtbot.waitUntil(lambda: not window.backend._engine_thread.isRunning(), timeout=10_000)
    assert window.close()  # and now it closes for good


def test_the_tool_bar_overflow_chevron_is_visible_on_the_dark_palette(qtbot):
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QStyle

    from studio.ui.app import StudioStyle, dark_palette

    background = dark_palette().color(QPalette.ColorRole.Window).lightness()

    def contrast(icon) -> float:  # the drawn pixel furthest in lightness from the tool bar's background
        image = icon.pixmap(16, 16).toImage()
        pixels = [QColor.fromRgba(image.pixel(x, y)) for x in range(16) for y in range(16)]
        return max((abs(c.lightness() - background) for c in pixels if c.alpha() > 128), default=0)

    style = StudioStyle()
    for which in (QStyle.StandardPixmap.SP_ToolBarHorizontalExtensionButton,
                  QStyle.StandardPixmap.SP_ToolBarVerticalExtensionButton):
        assert contrast(style.standardIcon(which)) > 120  # Fusion's own dark grey arrow: under 60
    assert not style.standardIcon(QStyle.StandardPixmap.SP_DialogOkButton).isNull()  # the rest is Fusion's


def test_generate_button_puts_the_result_on_the_canvas_and_in_the_gallery(qtbot, make_window):
    w = make_window()
    w.controls.prompt.setPlainText("a blue square")
    w.controls.seed.set_seed(99)
    w.controls.seed.lock.setChecked(True)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as done:
        qtbot.mouseClick(w.generate_button, Qt.MouseButton.LeftButton)
    result = done.args[0].results[0]
    assert result.seed == 99 and result.recipe["prompt"] == "a blue square"
    assert w.canvas.has_image() and w.canvas.image().size == (32, 32)
    assert w.center.currentWidget() is w.canvas
    assert w.progress.format() in ("Done", "Ready")
    assert w.controls.seed.seed() == 99  # locked
    assert w.gallery.count() == 1
    assert w.canvas.undo_stack.count() == 1  # the result landed as an undoable step


def test_ctrl_enter_generates_and_an_unlocked_seed_moves_on(qtbot, make_window):
    w = make_window()
    w.controls.seed.set_seed(5)
    w.controls.seed.lock.setChecked(False)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as done:
        w.generate_action.trigger()
    assert done.args[0].results[0].seed == 5
    assert w.controls.seed.seed() == 5  # the field names the picture on screen
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as again:
        w.generate_action.trigger()
    new_seed = again.args[0].results[0].seed
    assert new_seed != 5 and w.controls.seed.seed() == new_seed  # the next click gave a new picture
    w.controls.seed.step(-1)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as stepped:
        w.generate_action.trigger()
    assert stepped.args[0].results[0].seed == new_seed - 1  # a stepped-to seed is used as it is
    assert w.gallery_panel.current_record().id == stepped.args[0].results[0].gallery_id  # the newest result is shown
    assert "Ctrl+Return" in w.generate_action.toolTip() or "Ctrl+Enter" in w.generate_action.toolTip()
    assert "&" not in w.generate_action.toolTip()  # the menu's mnemonic marker is not shown
    text = w.shortcuts_text()  # the F1 dialog, after a run put a step on the undo stack
    assert "Undo: Ctrl+Z" in text and "Undo Generate" not in text and "&" not in text
    assert "Gallery (when it has the focus)" in text and "Variations: V" in text
    lock = next(a for a in w.actions() if a.text() == "Lock seed")
    w.controls.seed.lock.setChecked(True)
    assert lock.isChecked()  # the menu shows the lock's state
    lock.trigger()
    assert not w.controls.seed.lock.isChecked() and not lock.isChecked()


def test_escape_cancels_and_keeps_the_last_preview(qtbot, make_window):
    w = make_window()
    w.controls.steps.setValue(150)
    w.controls.set_size(256, 256)  # seconds long, so the run is surely still going when Esc arrives
    with qtbot.waitSignal(w.backend.step, timeout=60_000):
        w.generation.generate()
    with qtbot.waitSignal(w.backend.cancelled, timeout=60_000):
        w.cancel_action.trigger()
    assert w.progress.format() == "Cancelled"
    assert w.grid.image(0) is not None  # the preview stays on screen
    assert w.grid.label(0).endswith("· cancelled")  # and says it will not finish


def second_click(qtbot, w, pos) -> None:
    """The second click of a double-click as Qt delivers it: press, double-click and release all go to the
    widget under the mouse at the press (it holds the mouse until the release), which may no longer be
    the one the first click went to."""
    target = w.center.currentWidget()
    qtbot.mousePress(target, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(target, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseRelease(target, Qt.MouseButton.LeftButton, pos=pos)


def test_variations_a_click_picks_a_tile_and_a_double_click_keeps_it(qtbot, make_window):
    w = make_window()
    w.controls.seed.set_seed(40)
    w.controls.seed.lock.setChecked(False)
    with qtbot.waitSignal(w.backend.finished, timeout=120_000) as done:
        w.generation.generate_batch(4)
    results = done.args[0].results
    assert [r.seed for r in results] == [40, 41, 42, 43]
    assert w.center.currentWidget() is w.grid and w.grid.count() == 4
    assert all(w.grid.image(k) is not None for k in range(4))
    steps_before = w.canvas.undo_stack.count()
    third = w.grid.tile_rect(2).center().toPoint()
    qtbot.mouseClick(w.grid, Qt.MouseButton.LeftButton, pos=third)
    # A click picks: the seed field and the gallery name that tile; the grid stays.
    assert w.center.currentWidget() is w.grid and w.grid.picked_index() == 2
    assert w.controls.seed.seed() == 42 and w.gallery_panel.current_record().id == results[2].gallery_id
    assert w.canvas.undo_stack.count() == steps_before
    fourth = w.grid.tile_rect(3).center().toPoint()
    qtbot.mouseClick(w.grid, Qt.MouseButton.LeftButton, pos=fourth)  # the double-click's first click
    second_click(qtbot, w, fourth)
    assert w.center.currentWidget() is w.canvas
    assert w.canvas.image().tobytes() == results[3].image.tobytes()
    assert w.controls.seed.seed() == 43 and w.controls.seed.lock.isChecked()  # its seed is kept
    assert w.gallery_panel.current_record().id == results[3].gallery_id
    assert not w.canvas.has_mask()  # no click on a tile paints on the canvas
    assert w.canvas.undo_stack.count() == steps_before + 1  # the tile choice is the one step
    w.canvas.undo_stack.undo()
    assert w.canvas.undo_stack.count() == steps_before + 1 and w.canvas.undo_stack.index() == steps_before


def test_an_unlocked_seed_picked_from_the_grid_moves_on_at_the_next_generate(qtbot, make_window):
    w = make_window()
    w.controls.seed.set_seed(40)
    w.controls.seed.lock.setChecked(False)
    with qtbot.waitSignal(w.backend.finished, timeout=120_000):
        w.generation.generate_batch(4)
    qtbot.mouseClick(w.grid, Qt.MouseButton.LeftButton, pos=w.grid.tile_rect(1).center().toPoint())
    assert w.controls.seed.seed() == 41
    w.controls.batch.setValue(1)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as again:
        w.generation.generate()
    assert again.args[0].results[0].seed not in (40, 41, 42, 43)  # a new picture, as after any run


def test_variations_of_a_gallery_image_keep_its_seed_and_leave_the_slider_as_it_was(qtbot, make_window):
    w = make_window()
    assert w.controls.batch.value() == 1 and w.controls.variation.value() == 0.0
    recipe = {"prompt": "a red star", "seed": 45, "steps": 3, "cfg": 7.0}
    with qtbot.waitSignal(w.backend.finished, timeout=120_000) as done:
        with qtbot.waitSignal(w.backend.step, timeout=60_000):
            w.generation.variations_of(recipe)
        assert (w.controls.batch.value(), w.controls.variation.value()) == (4, 0.15)  # the fields say what runs
    results = done.args[0].results
    assert [r.seed for r in results] == [45] * 4
    assert [r.recipe["variation_seed"] for r in results] == [1045, 1046, 1047, 1048]
    assert w.controls.variation.value() == 0.0  # the next Generate or Regenerate is the plain seed again
    assert w.controls.batch.value() == 1
    assert w.grid._labels[1] == "seed 45 · variation 1046"


def test_the_batch_field_shows_the_batch_that_runs(qtbot, make_window):
    w = make_window()
    assert w.controls.batch.value() == 1
    four = next(a for a in w.actions() if a.text() == "4 variations")
    with qtbot.waitSignal(w.backend.finished, timeout=120_000) as done:
        with qtbot.waitSignal(w.backend.step, timeout=60_000):
            qtbot.keyClick(w, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
        assert w.controls.batch.value() == 4
    assert len(done.args[0].results) == 4 and w.controls.batch.value() == 4 and "Ctrl+4" in four.toolTip()


def test_an_outpaint_of_a_result_is_saved_as_made_from_it(qtbot, make_window):
    w = make_window()
    w.controls.seed.set_seed(8)
    w.controls.seed.lock.setChecked(True)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as first:
        w.generation.generate()
    origin = first.args[0].results[0].gallery_id
    assert w.canvas.source_id() == origin
    w.canvas.extend(0, 0, 8, 0)
    assert w.canvas.source_id() == origin  # the extended picture is still made from it
    w.controls.strength.setValue(0.75)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as grown:
        with qtbot.waitSignal(w.backend.step, timeout=60_000):
            w.generation.generate()
        assert "(0.75 × 3)" in w.progress.format()  # why an inpaint runs fewer steps than asked
    child = grown.args[0].results[0]
    assert child.recipe["mode"] != "txt2img" and w.gallery.get(child.gallery_id).parent_id == origin
    assert [r.id for r in w.gallery.children(origin)] == [child.gallery_id]
    w.canvas.undo_stack.undo()  # back to the extended picture: still linked
    assert w.canvas.source_id() == origin
    w.canvas.set_image(first.args[0].results[0].image)  # a picture from elsewhere has no source
    assert w.canvas.source_id() is None
    assert w.gallery_panel.select_image(origin)
    w.gallery_panel.actions_by_name["send_to_canvas"].trigger()  # "To canvas" opens the gallery's file
    assert w.canvas.source_id() == origin


def test_closing_during_a_run_joins_the_backend(qtbot, make_window):
    w = make_window()
    w.controls.steps.setValue(100)
    with qtbot.waitSignal(w.backend.step, timeout=60_000):
        w.generation.generate()
    w.close()
    assert w.backend._engine_thread.isFinished()


def test_settings_persist_between_runs(qtbot, make_window, data_dir):
    w = make_window()
    w.controls.steps.setValue(33)
    w.controls.cfg.setValue(4.5)
    w.controls.prompt.setPlainText("a night landscape")
    w.controls.scheduler.setCurrentText("Euler a")
    w.close()
    w2 = make_window(steps=None)
    assert w2.controls.steps.value() == 33 and w2.controls.cfg.value() == 4.5
    assert w2.controls.prompt.toPlainText() == "a night landscape"
    assert w2.controls.scheduler.currentText() == "Euler a"


def test_reuse_settings_fills_the_controls(qtbot, make_window):
    w = make_window()
    w.controls.apply_recipe({"prompt": "a star", "negative_prompt": "blur", "steps": 12, "cfg": 9.5,
                             "seed": 1234, "scheduler": "DDIM", "width": 64, "height": 64})
    f = w.controls.request_fields()
    assert (f["prompt"], f["negative_prompt"], f["steps"], f["cfg"], f["seed"], f["scheduler"]) == \
        ("a star", "blur", 12, 9.5, 1234, "DDIM")
    assert (f["width"], f["height"]) == (64, 64)
    w.controls.set_size(None, None)
    w.controls.apply_recipe({"prompt": "a star", "width": 32, "height": 32})  # the tiny model's own size
    assert w.controls.size.currentText() == "Native"  # stays Native, so it fits the next model too


def test_a_bad_request_is_explained_in_the_status_bar(qtbot, make_window):
    w = make_window()
    w.controls.set_size(100, 64)  # not a multiple of 8
    w.generation.generate()
    assert "multiple of 8" in w.statusBar().currentMessage()
    assert not w.backend.busy()


def test_a_folder_that_fails_to_load_leaves_the_working_model_in_use(qtbot, make_window, tiny_model, tmp_path):
    w = make_window()
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with qtbot.waitSignal(w.backend.model_failed, timeout=60_000) as failed:
        w.models.load(str(bad))
    assert "lists no components" in failed.args[0]
    assert w.settings.get("model") == str(tiny_model)  # the next start opens the working model
    assert w.statusBar().currentMessage().startswith("Still using")
    assert "No model" not in w.model_label.text() and w.progress.format() == "Ready"
    w.controls.seed.set_seed(3)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000):
        w.generation.generate()  # on the model that still works, not another try at the broken folder
    assert w.canvas.has_image()


def test_a_first_model_that_fails_falls_back_to_the_built_in_one(qtbot, data_dir, tmp_path):
    from studio.gallery import Gallery
    from studio.ui.main_window import MainWindow
    from studio.ui.worker import Backend

    bad = tmp_path / "moved-away"  # the last session's model folder, since deleted
    settings = Settings(data_dir / "settings.ini")
    settings.set("model", str(bad))
    w = MainWindow(Backend(data_dir, device="cpu"), settings, Gallery(data_dir))
    qtbot.addWidget(w)
    w.backend.start()
    with qtbot.waitSignal(w.backend.model_loaded, timeout=120_000) as loaded:
        w.models.load(w.startup_model)
    assert loaded.args[0]["name"] == "studio-shapes" and w.settings.get("model") == "builtin"
    assert w.statusBar().currentMessage().endswith("opened the built-in model instead")
    assert "no model named or at" in w.statusBar().currentMessage()
    w.close()


def test_a_model_s_suggested_guidance_is_adopted_unless_the_designer_chose_their_own(make_window):
    w = make_window()
    info = dict(w.models.info)
    assert w.controls.cfg.value() == 7.0  # the tiny model suggests nothing
    w.models.on_loaded({**info, "name": "small", "suggested_cfg": 3.0})
    assert w.controls.cfg.value() == 3.0 and "small suggests" in w.statusBar().currentMessage()
    w.models.on_loaded({**info, "name": "plain", "suggested_cfg": None})
    assert w.controls.cfg.value() == 7.0  # what the window set for the last model is undone
    w.models.on_loaded({**info, "name": "odd", "suggested_cfg": 2.25})  # the control rounds it
    w.models.on_loaded({**info, "name": "plain", "suggested_cfg": None})
    assert w.controls.cfg.value() == 7.0  # the rounded value was still recognised as the window's
    w.controls.cfg.setValue(4.5)
    w.models.on_loaded({**info, "name": "small", "suggested_cfg": 3.0})
    assert w.controls.cfg.value() == 4.5  # the designer's own value stays


def test_a_guidance_restored_at_start_that_equals_the_suggestion_is_the_window_s_to_undo(make_window):
    w = make_window()
    info = dict(w.models.info)
    w.controls.cfg.setValue(3.0)  # as settings restore it after a session with the small model
    w.models.on_loaded({**info, "name": "small", "suggested_cfg": 3.0})
    w.models.on_loaded({**info, "name": "plain", "suggested_cfg": None})
    assert w.controls.cfg.value() == 7.0


def test_flux_schnell_s_four_steps_are_adopted_and_given_back_with_its_guidance_greyed(make_window):
    w = make_window()
    info = dict(w.models.info)
    w.controls.steps.setValue(20)  # the usual default (the test window starts at a few steps, for speed)
    w.models.on_loaded({**info, "name": "flux1-schnell", "family": "FLUX.1 schnell", "suggested_cfg": 1.0,
                        "suggested_steps": 4})
    assert w.controls.steps.value() == 4 and not w.controls.cfg.isEnabled()
    assert w.controls.cfg_label.text() == "FLUX guidance" and not w.controls.negative.isEnabled()
    w.models.on_loaded({**info, "name": "flux1-dev", "family": "FLUX.1 dev", "suggested_cfg": 3.5,
                        "suggested_steps": None})
    assert w.controls.steps.value() == 20 and w.controls.cfg.isEnabled() and w.controls.cfg.value() == 3.5
    w.controls.steps.setValue(12)
    w.models.on_loaded({**info, "name": "flux1-schnell", "family": "FLUX.1 schnell", "suggested_cfg": 1.0,
                        "suggested_steps": 4})
    assert w.controls.steps.value() == 12  # the designer's own count stays


def test_an_inpaint_keeps_its_mask_so_another_seed_re_rolls_it(qtbot, make_window):
    from PySide6.QtCore import QPointF

    from studio.recipe.request import image_hash

    w = make_window()
    w.controls.seed.set_seed(3)
    w.controls.seed.lock.setChecked(True)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000):
        w.generation.generate()
    w.canvas.set_brush_size(8)
    start, end = (w.canvas.map_from_image(QPointF(x, 16)).toPoint() for x in (8, 24))
    qtbot.mousePress(w.canvas, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(w.canvas, end)
    qtbot.mouseRelease(w.canvas, Qt.MouseButton.LeftButton, pos=end)
    painted = w.canvas.mask()
    assert w.canvas.has_mask()
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as first:
        w.generation.generate()
    assert first.args[0].results[0].recipe["mode"] == "inpaint"
    assert w.canvas.has_mask() and w.canvas.mask().tobytes() == painted.tobytes()  # still there
    w.controls.seed.set_seed(4)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as again:
        w.generation.generate()
    recipe = again.args[0].results[0].recipe
    assert (recipe["mode"], recipe["seed"], recipe["mask_hash"]) == ("inpaint", 4, image_hash(painted))
    steps = w.canvas.undo_stack.count()
    w.canvas.clear_mask()  # the designer clears it when done, and that undoes too
    assert not w.canvas.has_mask() and w.canvas.undo_stack.count() == steps + 1
    w.canvas.undo_stack.undo()
    assert w.canvas.mask().tobytes() == painted.tobytes()


def test_an_outpaint_made_in_the_window_is_recorded_and_replays_as_one(qtbot, make_window, tmp_path, capsys):
    """Dragging an edge with the Extend tool and generating is an outpaint of the picture, as the CLI
    makes it: `Mode: outpaint` with its extents, and `generate --from` gives the same pixels back."""
    import numpy as np
    from PySide6.QtCore import QPoint

    from studio.cli import main

    w = make_window()
    w.controls.seed.set_seed(21)
    w.controls.seed.lock.setChecked(True)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as first:
        w.generation.generate()
    origin = first.args[0].results[0]
    qtbot.keyClick(w.canvas, Qt.Key.Key_X)
    assert w.canvas.tool() == "extend"
    right, middle = int(w.canvas.image_rect().right()), int(w.canvas.image_rect().center().y())
    beyond = QPoint(right + int(14 * w.canvas.zoom()), middle)
    qtbot.mousePress(w.canvas, Qt.MouseButton.LeftButton, pos=QPoint(right - 2, middle))
    qtbot.mouseMove(w.canvas, beyond)
    qtbot.mouseRelease(w.canvas, Qt.MouseButton.LeftButton, pos=beyond)
    assert w.canvas.image().size == (48, 32)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as grown:
        w.generation.generate()
    child = grown.args[0].results[0]
    assert child.recipe["mode"] == "outpaint" and child.recipe["outpaint"] == [0, 0, 16, 0]
    record = w.gallery.get(child.gallery_id)
    assert record.mode == "outpaint" and record.parent_id == origin.gallery_id and child.image.size == (48, 32)
    replay = tmp_path / "replay.png"
    code = main(["generate", "--from", str(child.gallery_id), "--init", str(w.gallery.get(origin.gallery_id).file),
                 "--device", "cpu", "--no-gallery", "--out", str(replay)])
    assert code == 0, capsys.readouterr().err
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(replay).convert("RGB")), np.asarray(child.image.convert("RGB")))
    w.canvas.undo_stack.undo()  # back to the extension; a stroke on it makes an inpaint of what is there
    qtbot.keyClick(w.canvas, Qt.Key.Key_B)
    centre = w.canvas.image_rect().center().toPoint()
    qtbot.mousePress(w.canvas, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseRelease(w.canvas, Qt.MouseButton.LeftButton, pos=centre)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as painted:
        w.generation.generate()
    assert painted.args[0].results[0].recipe["mode"] == "inpaint"


def test_regenerate_runs_the_whole_recipe_not_the_controls_and_the_canvas(qtbot, make_window):
    """An inpaint regenerated from the gallery: the same mask and init image (kept by the gallery), steps and
    inpaint settings, whatever the controls and the canvas hold now; identical pixels."""
    import numpy as np
    from PySide6.QtCore import QPointF

    w = make_window()
    w.controls.seed.set_seed(5)
    w.controls.seed.lock.setChecked(True)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000):
        w.generation.generate()
    start, end = (w.canvas.map_from_image(QPointF(x, 12)).toPoint() for x in (6, 26))
    qtbot.mousePress(w.canvas, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(w.canvas, end)
    qtbot.mouseRelease(w.canvas, Qt.MouseButton.LeftButton, pos=end)
    w.controls.mask_feather.setValue(3)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as made:
        w.generation.generate()
    first = made.args[0].results[0]
    assert first.recipe["mode"] == "inpaint" and first.gallery_id is not None
    recipe = w.gallery.get(first.gallery_id).recipe()
    w.canvas.clear_mask()
    w.controls.steps.setValue(7)
    w.controls.mask_feather.setValue(0)
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as again:
        w.generation.regenerate(recipe)
    second = again.args[0].results[0]
    assert (second.recipe["mode"], second.recipe["steps"], second.recipe["mask_feather"]) == ("inpaint", 3, 3)
    assert second.recipe["mask_hash"] == first.recipe["mask_hash"]
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert w.controls.steps.value() == 3  # the controls show what ran
