"""The gallery panel: lazy rows, search, favourites, delete and undo, the signals the window uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QPixmap

from studio.bench.gallery import fill_synthetic
from studio.gallery import Gallery
from studio.recipe import metadata
from studio.ui import gallery_view
from studio.ui.gallery_view import GalleryPanel
from studio.ui.thumbnails import MissingRole
from tests.test_gallery_store import recipe, save


@pytest.fixture
def gallery(data_dir: Path):
    with Gallery(data_dir) as opened:
        yield opened


@pytest.fixture
def make_panel(qtbot: Any, gallery: Gallery):
    panels: list[GalleryPanel] = []

    def make(**kwargs: Any) -> GalleryPanel:
        panel = GalleryPanel(gallery, reconcile=kwargs.pop("reconcile", False))
        qtbot.addWidget(panel)
        panel.resize(900, 700)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.shutdown()  # no thumbnail job may outlive the gallery


def fill(gallery: Gallery) -> list[int]:
    ids = [save(gallery, "a red fox in snow", seed=1), save(gallery, "an owl at night", seed=2),
           save(gallery, "a fox and an owl", seed=3), save(gallery, "a lighthouse", seed=4)]
    return ids[::-1]  # newest first, as the grid shows them


def test_panel_shows_rows_and_details(make_panel: Any, gallery: Gallery) -> None:
    ids = fill(gallery)
    panel = make_panel()
    assert panel.model.rowCount() == 4 and panel.count_label.text() == "4 images"
    assert [panel.model.record(r).id for r in range(4)] == ids
    assert panel.current_record().id == ids[0]  # the newest is shown straight away
    assert "a lighthouse" in panel.recipe_label.text() and "Euler a" in panel.recipe_label.text()


def test_the_detail_pane_says_why_it_is_empty(make_panel: Any, gallery: Gallery, qtbot: Any) -> None:
    panel = make_panel()
    assert panel.current_record() is None and "No images yet" in panel.image_label.text()
    assert panel.recipe_scroll.isHidden()  # the message has the pane to itself, not its left half
    ids = fill(gallery)
    panel.refresh()
    assert panel.current_record().id == ids[0] and panel.image_label.text() == ""  # the first image shows
    assert not panel.recipe_scroll.isHidden()
    panel.search.setText("zebra")
    with qtbot.waitSignal(panel.model.modelReset):
        pass  # the search is debounced; the grid reloads when it runs
    assert panel.model.rowCount() == 0 and "No image matches" in panel.image_label.text()
    panel.search.setText("fox")
    qtbot.waitUntil(lambda: panel.current_record() is not None)
    assert panel.image_label.text() == ""  # an image replaces the message


@pytest.mark.parametrize("size,outer,inner", [
    ((1200, 600), Qt.Orientation.Horizontal, Qt.Orientation.Vertical),  # a wide panel: details beside the grid
    ((600, 900), Qt.Orientation.Vertical, Qt.Orientation.Horizontal),  # a tall one: below it, picture | settings
    ((300, 900), Qt.Orientation.Vertical, Qt.Orientation.Vertical),  # a narrow dock: picture over settings
])
def test_the_details_take_the_shape_of_the_panel(make_panel: Any, gallery: Gallery, qtbot: Any,
                                                 size: tuple[int, int], outer: Qt.Orientation,
                                                 inner: Qt.Orientation) -> None:
    fill(gallery)
    panel = make_panel()
    panel.resize(*size)
    panel.show()
    qtbot.waitExposed(panel)
    assert (panel.splitter.orientation(), panel.detail_splitter.orientation()) == (outer, inner)
    # The settings are read, not panned: they never need a horizontal scroll bar.
    assert not panel.recipe_scroll.horizontalScrollBar().isVisible()


@pytest.mark.parametrize("width", [260, 330, 345, 350, 400, 640])
def test_the_grid_fills_its_width_with_whole_columns(make_panel: Any, gallery: Gallery, qtbot: Any, width: int) -> None:
    fill(gallery)
    panel = make_panel()
    panel.resize(width, 860)
    panel.show()
    qtbot.waitExposed(panel)
    view = panel.view
    columns = gallery_view.columns_for(view.viewport().width())
    assert columns >= 2  # even the narrowest dock (GALLERY_DOCK_MIN) shows two columns
    first_row = [row for row in range(panel.model.rowCount()) if view.visualRect(panel.model.index(row, 0)).top() == 0]
    assert len(first_row) == min(columns, panel.model.rowCount())
    assert columns * view.gridSize().width() >= view.viewport().width() - columns  # no ragged gap on the right


def test_a_new_batch_lands_in_view_with_its_first_image_current(make_panel: Any, gallery: Gallery, qtbot: Any) -> None:
    for seed in range(12):
        save(gallery, "an older picture", seed=seed)
    panel = make_panel()
    panel.resize(330, 900)  # two columns, two and a half rows in view
    panel.show()
    qtbot.waitExposed(panel)
    panel.select_image(panel.model.record(11).id)  # the user looks at an old one, far down
    batch = [save(gallery, "a new batch", seed=100 + k) for k in range(4)]  # saved in seed order
    panel.refresh()
    panel.show_new(batch)
    assert panel.current_record().id == batch[0]  # the first seed, like the first tile of the grid
    area = panel.view.viewport().rect()
    rows = [panel.model.row_of(image_id) for image_id in batch]
    assert all(area.contains(panel.view.visualRect(panel.model.index(row))) for row in rows)


def test_rows_are_fetched_a_page_at_a_time(make_panel: Any, gallery: Gallery) -> None:
    fill_synthetic(gallery, 450)
    panel = make_panel()
    model = panel.model
    assert model.rowCount() == gallery_view.PAGE and model.total == 450 and model.canFetchMore()
    model.fetchMore()
    assert model.rowCount() == 2 * gallery_view.PAGE
    model.fetchMore()
    assert model.rowCount() == 450 and not model.canFetchMore()
    assert len({model.record(r).id for r in range(450)}) == 450
    assert panel.count_label.text() == "450 images"


def test_thumbnails_arrive_off_the_gui_thread(qtbot: Any, make_panel: Any, gallery: Gallery) -> None:
    fill(gallery)
    gallery.get(fill(gallery)[0]).file.unlink()  # one file gone: placeholder, marked missing
    panel = make_panel()
    model = panel.model
    for row in range(model.rowCount()):
        model.data(model.index(row), Qt.ItemDataRole.DecorationRole)  # the view asks like this
    qtbot.waitUntil(lambda: isinstance(model.data(model.index(1), Qt.ItemDataRole.DecorationRole), QPixmap))
    qtbot.waitUntil(lambda: model.data(model.index(0), MissingRole) is True)
    assert not model.data(model.index(1), MissingRole)


def test_search_is_debounced_and_filters(qtbot: Any, make_panel: Any, gallery: Gallery) -> None:
    ids = fill(gallery)
    panel = make_panel()
    qtbot.keyClicks(panel.search, "fox")
    assert panel.model.rowCount() == 4  # not yet: the query waits for typing to pause
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2)
    assert [panel.model.record(r).id for r in range(2)] == [ids[1], ids[3]]
    assert panel.count_label.text() == "2 images"
    panel.sort.setCurrentIndex(1)  # oldest first
    assert [panel.model.record(r).id for r in range(2)] == [ids[3], ids[1]]
    panel.search.clear()
    qtbot.waitUntil(lambda: panel.model.rowCount() == 4)


def test_favourite_toggle_and_filter(qtbot: Any, make_panel: Any, gallery: Gallery) -> None:
    ids = fill(gallery)
    panel = make_panel()
    panel.show()
    panel.activateWindow()
    qtbot.waitUntil(panel.isActiveWindow)  # shortcuts only fire in the active window
    panel.select_image(ids[2])
    panel.view.setFocus()
    qtbot.keyClick(panel.view, Qt.Key.Key_F)  # the shortcut, while the panel has focus
    assert gallery.get(ids[2]).favorite and panel.current_record().favorite
    assert panel.actions_by_name["favorite"].text() == "Unfavourite"
    panel.favorites_only.setChecked(True)
    assert [panel.model.record(r).id for r in range(panel.model.rowCount())] == [ids[2]]
    panel.select_image(ids[2])
    panel.actions_by_name["favorite"].trigger()
    assert not gallery.get(ids[2]).favorite and panel.model.rowCount() == 0
    assert "(F)" in panel.actions_by_name["favorite"].toolTip()


def test_delete_and_undo(qtbot: Any, make_panel: Any, gallery: Gallery) -> None:
    ids = fill(gallery)
    panel = make_panel()
    panel.show()
    panel.activateWindow()
    qtbot.waitUntil(panel.isActiveWindow)  # shortcuts only fire in the active window
    panel.select_image(ids[1])
    row = panel.model.row_of(ids[1])
    panel.view.setFocus()
    qtbot.keyClick(panel.view, Qt.Key.Key_Delete)
    assert gallery.count() == 3 and panel.model.row_of(ids[1]) is None
    assert gallery.get(ids[1]).deleted_at is not None and gallery.get(ids[1]).file.exists()  # soft
    assert "Ctrl+Z" in panel.status.text()
    assert panel.current_record().id == panel.model.record(row).id  # the next image took its place
    qtbot.keyClick(panel.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert gallery.count() == 4 and panel.current_record().id == ids[1]
    assert panel.status.text() == "Restored 1 image"
    assert not panel.undo_stack.canUndo()


def test_actions_emit_what_the_window_needs(qtbot: Any, make_panel: Any, gallery: Gallery) -> None:
    ids = fill(gallery)
    panel = make_panel()
    panel.select_image(ids[3])
    record = gallery.get(ids[3])
    expected = record.recipe()
    assert expected["prompt"] == "a red fox in snow" and expected["seed"] == 1
    for action, signal, args in [("reuse_settings", panel.reuse_settings, [expected]),
                                 ("regenerate", panel.regenerate, [expected]),
                                 ("variations", panel.make_variations, [expected]),
                                 ("reuse_seed", panel.reuse_seed, [1]),
                                 ("send_to_canvas", panel.send_to_canvas, [str(record.file), ids[3]])]:
        with qtbot.waitSignal(signal, timeout=1000) as blocker:
            panel.actions_by_name[action].trigger()
        assert blocker.args == args, action
    with qtbot.waitSignal(panel.send_to_canvas, timeout=1000):
        panel.view.activated.emit(panel.model.index(3))  # Enter / double-click


def test_drag_gives_file_urls_and_drop_imports(qtbot: Any, make_panel: Any, gallery: Gallery, tmp_path: Path) -> None:
    ids = fill(gallery)
    panel = make_panel()
    mime = panel.model.mimeData([panel.model.index(0), panel.model.index(1)])
    assert [u.toLocalFile() for u in mime.urls()] == [str(gallery.get(i).file) for i in ids[:2]]

    dropped = tmp_path / "dropped.png"
    dropped.write_bytes(metadata.encode_png(Image.new("RGB", (20, 20), (9, 9, 9)), recipe("a dropped dragon", 99)))
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(dropped))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(event)
    assert event.isAccepted() and gallery.count() == 5
    assert panel.current_record().prompt == "a dropped dragon" and "Imported 1 image" in panel.status.text()
    panel.select_image(ids[0])
    panel.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                               Qt.KeyboardModifier.NoModifier))  # the same file again
    assert gallery.count() == 5 and panel.status.text() == "Imported 0 images, 1 already in the gallery"
    assert panel.current_record().prompt == "a dropped dragon"  # the one already there is shown


def test_refresh_after_a_save_keeps_the_selection(make_panel: Any, gallery: Gallery) -> None:
    ids = fill(gallery)
    panel = make_panel()
    panel.select_image(ids[2])
    new = save(gallery, "made by the worker", seed=7, parent_id=ids[2])
    panel.refresh()
    assert panel.model.rowCount() == 5 and panel.model.record(0).id == new
    assert panel.current_record().id == ids[2]
    assert f"image:{new}" in panel.recipe_label.text()  # children are linked
    panel._follow_link(f"image:{new}")
    assert panel.current_record().id == new and f"image:{ids[2]}" in panel.recipe_label.text()


def test_background_reconcile_marks_missing_files(qtbot: Any, make_panel: Any, gallery: Gallery) -> None:
    ids = fill(gallery)
    gallery.get(ids[0]).file.unlink()
    panel = make_panel(reconcile=True)
    qtbot.waitUntil(lambda: "Gallery checked" in panel.status.text(), timeout=5000)
    assert "1 missing" in panel.status.text() and gallery.get(ids[0]).missing


def test_after_delete_and_undo_one_image_is_selected(qtbot: Any, make_panel: Any, gallery: Gallery) -> None:
    """Ctrl, still down from Ctrl+Z, toggled the restored image in beside the one that took its place:
    two tiles wore the selection ring, and the next Delete removed both."""
    ids = fill(gallery)
    panel = make_panel()
    panel.show()
    panel.activateWindow()
    qtbot.waitUntil(panel.isActiveWindow)
    view = panel.view
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(panel.model.index(1)).center())
    assert panel.selected_ids() == [ids[1]]
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert panel.selected_ids() == [ids[2]]  # the next image took its place, alone
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert gallery.count() == 4 and panel.selected_ids() == [ids[1]] == [panel.current_record().id]
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert gallery.count() == 3  # one image, the one in view


def test_new_images_hidden_by_the_search_are_announced_with_a_way_back(qtbot: Any, make_panel: Any,
                                                                        gallery: Gallery) -> None:
    fill(gallery)
    panel = make_panel()
    panel.show()
    qtbot.keyClicks(panel.search, "fox")
    qtbot.waitUntil(lambda: panel.model.query.search == "fox")
    assert panel.model.rowCount() == 2 and panel.hidden_bar.isHidden()
    run = [save(gallery, "a night owl", seed=s) for s in (8, 9)]  # what the worker saved
    panel.refresh()
    panel.show_new(run)
    assert not panel.hidden_bar.isHidden() and panel.hidden_label.text() == "2 new images hidden by the search"
    assert panel.model.rowCount() == 2  # the search still holds
    panel.show_new([save(gallery, "a fox cub", seed=10)])  # one that matches: nothing more hidden
    assert panel.hidden_label.text() == "2 new images hidden by the search"
    qtbot.mouseClick(panel.clear_filter_button, Qt.MouseButton.LeftButton)
    assert panel.search.text() == "" and panel.hidden_bar.isHidden()
    assert panel.model.rowCount() == 7 and panel.current_record().id == run[0]  # the hidden run, in view
