"""The window's Upscale, comparison grid, Hires fix group and before/after view (pytest-qt, real clicks)."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt

from tests.test_main_window import make_window  # noqa: F401 - the shared window fixture


def _colour_at(widget, x: int, y: int) -> tuple[int, int, int]:
    colour = widget.grab().toImage().pixelColor(x, y)
    return colour.red(), colour.green(), colour.blue()


def _near(a, b, tol: int = 12) -> bool:
    return all(abs(p - q) <= tol for p, q in zip(a, b))


@pytest.fixture
def compare_panel(qtbot, data_dir):
    """A gallery panel with the extras on it, holding a red parent and its green upscaled child."""
    from studio.gallery import Gallery
    from studio.ui.extras import GalleryExtras
    from studio.ui.gallery_view import GalleryPanel

    gallery = Gallery(data_dir)
    parent = gallery.save(Image.new("RGB", (32, 32), (220, 30, 30)), {"prompt": "red", "seed": 1})
    child = gallery.save(Image.new("RGB", (128, 128), (30, 200, 40)), {"prompt": "red", "seed": 1,
                                                                      "upscale": {"upscaler": "Lanczos", "scale": 4.0}},
                         parent_id=parent)
    panel = GalleryPanel(gallery, reconcile=False)
    qtbot.addWidget(panel)
    extras = GalleryExtras(window=None, panel=panel)
    panel.resize(900, 700)
    panel.show()
    assert panel.select_image(child)
    return panel, extras, (parent, child)


def test_compare_shows_the_parent_left_of_the_split_and_the_child_right(qtbot, compare_panel):
    panel, extras, _ids = compare_panel
    button = panel.use_bar.widgetForAction(panel.actions_by_name["compare"])
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert extras.stack.currentWidget() is extras.compare
    view = extras.compare.view
    qtbot.waitUntil(lambda: view.isVisible() and view.width() > 100)
    rect = view.image_rect()
    y = int(rect.center().y())
    left, right = int(rect.left() + rect.width() * 0.25), int(rect.left() + rect.width() * 0.75)
    assert _near(_colour_at(view, left, y), (220, 30, 30))  # before: the parent
    assert _near(_colour_at(view, right, y), (30, 200, 40))  # after: the upscaled child
    # Dragging the split to the far right shows the parent across the picture.
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(int(rect.center().x()), y))
    qtbot.mouseMove(view, QPoint(int(rect.right()) - 2, y))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(int(rect.right()) - 2, y))
    assert view.split > 0.95
    assert _near(_colour_at(view, right, y), (220, 30, 30))
    # Difference: |green - red| x 4, clipped.
    qtbot.mouseClick(extras.compare.difference, Qt.MouseButton.LeftButton)
    assert _near(_colour_at(view, right, y), (255, 255, 40))
    assert "#" in extras.compare.caption.text()


def test_compare_of_an_image_without_a_parent_says_why(qtbot, compare_panel):
    panel, extras, (parent, _child) = compare_panel
    assert panel.select_image(parent)
    qtbot.mouseClick(panel.use_bar.widgetForAction(panel.actions_by_name["compare"]), Qt.MouseButton.LeftButton)
    assert extras.stack.currentWidget() is panel.image_label
    assert "made from another" in panel.status.text()


def test_the_hires_group_is_off_by_default_and_carries_its_fields(qtbot):
    from studio.ui.controls import GenerationControls

    controls = GenerationControls()
    qtbot.addWidget(controls)
    assert controls.request_fields()["hires_scale"] is None
    controls.apply_recipe({"prompt": "x", "hires_scale": 4.0, "hires_steps": 10, "hires_denoise": 0.3,
                           "hires_upscaler": "4x-UltraSharp"})
    fields = controls.request_fields()
    assert (fields["hires_scale"], fields["hires_steps"], fields["hires_denoise"], fields["hires_upscaler"]) == \
        (4.0, 10, 0.3, "4x-UltraSharp")
    controls.apply_recipe({"prompt": "y"})  # a one-pass picture switches it off again
    assert controls.request_fields()["hires_scale"] is None


def test_upscale_of_a_gallery_image_lands_as_its_child(qtbot, make_window, monkeypatch):  # noqa: F811
    from studio.ui import extras

    w = make_window()
    first = w.gallery.save(Image.new("RGB", (32, 32), (10, 120, 200)), {"prompt": "blue", "seed": 5})
    w.gallery_panel.refresh()
    assert w.gallery_panel.select_image(first)
    monkeypatch.setattr(extras.UpscaleDialog, "exec", lambda self: (self.scale.setValue(2.0), 1)[1])
    with qtbot.waitSignal(w.backend.finished, timeout=60_000) as done:
        qtbot.mouseClick(w.gallery_panel.use_bar.widgetForAction(w.gallery_panel.actions_by_name["upscale"]),
                         Qt.MouseButton.LeftButton)
    [result] = done.args[0].results
    record = w.gallery.get(result.gallery_id)
    assert (record.width, record.height) == (64, 64) and record.parent_id == first
    assert record.recipe()["upscale"]["scale"] == 2.0 and record.recipe()["seed"] == 5


def test_redraw_detail_in_the_upscale_dialog_runs_a_job_whose_tiles_preview_on_the_canvas(qtbot, make_window,  # noqa: F811
                                                                                           monkeypatch):
    import numpy as np

    from studio.ui import extras

    w = make_window(steps=None)
    picture = Image.new("RGB", (32, 32), (20, 60, 200))
    picture.paste((220, 30, 30), (8, 8, 24, 24))
    first = w.gallery.save(picture, {"prompt": "a red square", "seed": 5, "steps": 10})
    w.gallery_panel.refresh()
    assert w.gallery_panel.select_image(first)

    def choose(dialog) -> int:
        dialog.scale.setValue(2.0)
        dialog.redraw.setChecked(True)
        dialog.redraw.denoise.setValue(0.3)
        return 1

    monkeypatch.setattr(extras.UpscaleDialog, "exec", choose)
    shown = []

    def on_step(_job, progress) -> None:  # after the window's own slot: what the canvas shows now
        if not progress.previews or progress.region is None:
            return
        x0, y0, x1, y1 = progress.region
        shot = w.canvas.grab().toImage()
        a, b = w.canvas.map_from_image(QPointF(x0 + 1, y0 + 1)), w.canvas.map_from_image(QPointF(x1 - 1, y1 - 1))
        drawn = np.array([[shot.pixelColor(int(x), int(y)).getRgb()[:3] for x in np.linspace(a.x(), b.x(), 6)]
                          for y in np.linspace(a.y(), b.y(), 6)], dtype=float)
        tile = progress.previews[0]
        made = np.array([[tile.pixelColor(int(x), int(y)).getRgb()[:3] for x in np.linspace(0, tile.width() - 1, 6)]
                         for y in np.linspace(0, tile.height() - 1, 6)], dtype=float)
        under = np.asarray(picture.crop(progress.region), dtype=float)
        seen = drawn.mean(axis=(0, 1))
        shown.append((progress.region, float(np.abs(seen - made.mean(axis=(0, 1))).max()),
                      float(np.abs(seen - under.mean(axis=(0, 1))).max())))

    w.backend.step.connect(on_step)
    with qtbot.waitSignal(w.backend.finished, timeout=120_000) as done:
        qtbot.mouseClick(w.gallery_panel.use_bar.widgetForAction(w.gallery_panel.actions_by_name["upscale"]),
                         Qt.MouseButton.LeftButton)
    [result] = done.args[0].results
    record = w.gallery.get(result.gallery_id)
    recipe = record.recipe()
    assert (record.width, record.height) == (64, 64) and record.parent_id == first
    assert recipe["mode"] == "redraw" and recipe["redraw_denoise"] == 0.3 and recipe["seed"] == 5
    assert w.gallery.input_image(recipe["init_image_hash"]) is not None  # kept, so Regenerate replays it
    assert w.canvas.image().tobytes() == result.image.tobytes() and w.canvas.source_id() == result.gallery_id
    # Each tile's preview was drawn on the canvas over that tile (16 px of the 32 px picture, 8 px apart).
    assert {region for region, _, _ in shown} == {(x, y, x + 16, y + 16) for x in (0, 8, 16) for y in (0, 8, 16)}
    assert all(to_preview < to_picture for _, to_preview, to_picture in shown), shown


def test_a_hires_batch_previews_each_picture_in_its_own_tile(qtbot, make_window):  # noqa: F811
    w = make_window(steps=2)
    w.controls.hires.setChecked(True)
    w.controls.hires.steps.setValue(2)
    w.controls.prompt.setPlainText("a red circle")
    seen = []

    def on_step(_job, progress) -> None:  # after the window's own slot: what the grid shows now
        tile0 = w.grid.image(0)
        seen.append((progress.step / progress.total, tile0.cacheKey() if tile0 is not None else None,
                     w.grid.image(1) is not None))

    w.backend.step.connect(on_step)
    with qtbot.waitSignal(w.backend.finished, timeout=120_000):
        w.generation.generate_batch(2)  # the two pictures run one after the other, both passes each
    second = [s for s in seen if s[0] > 0.5]  # the second picture's steps
    assert second and all(has_preview for _, _, has_preview in second)  # it previews in its own tile...
    assert len({key for _, key, _ in second}) == 1  # ...and the first tile keeps the first picture's last preview


def test_the_grid_dialog_runs_one_job_with_a_tile_per_cell_and_a_click_keeps_one(qtbot, make_window):  # noqa: F811
    from studio.ui.extras import open_grid_dialog

    w = make_window(steps=2)
    w.controls.prompt.setPlainText("a red circle")
    with qtbot.waitSignal(w.backend.finished, timeout=120_000):  # a picture kept before: not the grid's parent
        w.generation.generate_batch(1)
    dialog = open_grid_dialog(w)
    dialog.rows[0][0].setCurrentText("cfg")
    dialog.rows[0][1].setText("2, 5")
    dialog.rows[1][0].setCurrentText("seed")
    dialog.rows[1][1].setText("3..4")
    before = w.gallery.count()
    with qtbot.waitSignal(w.backend.finished, timeout=120_000) as done:
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    results = done.args[0].results
    assert len(results) == 5 and w.gallery.count() == before + 5  # the grid image and its 4 cells
    assert dialog.tiles.count() == 4 and dialog.tiles.columns == 2
    qtbot.waitUntil(lambda: all(dialog.tiles.image(k) is not None for k in range(4)))
    assert [r.recipe["cfg"] for r in results[1:]] == [2.0, 5.0, 2.0, 5.0]
    assert [r.recipe["seed"] for r in results[1:]] == [3, 3, 4, 4]
    grid_id = results[0].gallery_id  # each cell is kept as made from the grid image, as `studio grid` keeps them
    assert w.gallery.get(grid_id).parent_id is None
    assert [w.gallery.get(r.gallery_id).parent_id for r in results[1:]] == [grid_id] * 4
    qtbot.mouseClick(dialog.tiles, Qt.MouseButton.LeftButton, pos=dialog.tiles.tile_rect(3).center().toPoint())
    assert w.canvas.image().tobytes() == results[4].image.tobytes()
    assert w.canvas.source_id() == results[4].gallery_id
    dialog.close()
