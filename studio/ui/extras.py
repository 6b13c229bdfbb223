"""Upscale, comparison grids and before/after, wired into the window from outside its own modules
(one call from MainWindow): menu and gallery actions, the compare view in the gallery's detail pane,
and the library's upscalers offered to the Hires fix group."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PIL import Image
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QStackedWidget

from studio.engine.library import ItemKind
from studio.recipe.request import RequestError
from studio.ui.compare_view import CompareView
from studio.ui.upscale_dialog import UpscaleDialog, upscale_task


def install(window: Any) -> None:
    window.library_panel.changed.connect(lambda: window.controls.hires.set_upscalers(_upscalers(window)))
    menu = _menu(window, "&Generate")
    if menu is not None:
        menu.addSeparator()
        window.grid_action = window._action(menu, "Comparison &grid…", QKeySequence("Ctrl+Shift+G"),
                                            lambda: open_grid_dialog(window),
                                            "Vary seed, CFG, steps, sampler, prompt, model, LoRA weight or denoise "
                                            "along up to three axes")
        window.upscale_canvas_action = window._action(menu, "&Upscale canvas…", QKeySequence("Ctrl+Shift+U"),
                                                      lambda: upscale_canvas(window))
    window.gallery_extras = GalleryExtras(window, window.gallery_panel) if window.gallery_panel is not None else None


def _menu(window: Any, title: str) -> QMenu | None:
    for action in window.menuBar().actions():
        if action.text() == title and action.menu() is not None:
            return action.menu()
    return None


def _upscalers(window: Any) -> list[str]:
    return [item.name for item in window.library_panel.items if item.kind is ItemKind.UPSCALER]


def open_grid_dialog(window: Any) -> Any:
    from studio.ui.grid_dialog import GridDialog

    dialog = getattr(window, "grid_dialog", None)
    if dialog is None:
        dialog = window.grid_dialog = GridDialog(window)
    dialog.show()
    dialog.raise_()
    return dialog


def upscale_canvas(window: Any) -> None:
    image = window.canvas.image()
    if image is None:
        window.statusBar().showMessage("Nothing on the canvas to upscale", 4000)
        return
    dialog = UpscaleDialog(_upscalers(window), image.size, window)
    if dialog.exec() != UpscaleDialog.DialogCode.Accepted:
        return
    scale, upscaler = dialog.choice()
    parent_id = window.canvas.source_id()
    redraw = dialog.redraw_fields()
    if redraw is not None:
        start_redraw(window, image, parent_id, None, redraw)
        return
    recipe: dict[str, Any] = {}
    if parent_id is not None and window.gallery is not None:
        try:
            recipe = window.gallery.get(parent_id).recipe()
        except Exception:  # noqa: BLE001 - a deleted parent: upscale without its recipe
            parent_id = None
    window.backend.run_task(upscale_task(scale, upscaler, recipe, parent_id, image=image))
    window.set_busy(True)


def start_redraw(window: Any, picture: Image.Image, parent_id: int | None, recipe: dict[str, Any] | None,
                 fields: dict[str, Any]) -> Any:
    """Queue a tiled redraw of `picture` as a generation: its tiles preview on the canvas as they form, and the
    result lands on the canvas and in the gallery (the picture kept as its input, so Regenerate replays it).
    The prompt, model, sampler, steps, CFG and seed are `recipe`'s (a gallery image's), else the Generate
    panel's. Returns the job, or None with the reason in the status bar."""
    from studio.engine.tiled_redraw import redraw_request, settings_of

    try:
        if recipe is None:
            settings = window.generation.build_request(init_image=picture, mask=None, outpaint=None, hires_scale=None,
                                                       batch_size=1, variation_seed=None, variation_strength=0.0)
        else:
            settings = settings_of(recipe)
            named = recipe.get("model") if isinstance(recipe.get("model"), dict) else {}
            if not (named.get("name") or named.get("path")):  # a picture from elsewhere: the model in use
                settings = replace(settings, model=window.models.wanted())
        request = redraw_request(settings, picture, parent_id, **fields)
    except (RequestError, TypeError, ValueError) as exc:
        window.statusBar().showMessage(f"Cannot redraw this picture: {exc}", 10000)
        return None
    return window.generation.submit(request)


class GalleryExtras:
    """Upscale and Compare on the gallery panel: toolbar and right-click actions, and the compare view
    stacked over the detail picture."""

    def __init__(self, window: Any, panel: Any) -> None:
        self.window, self.panel = window, panel
        self.compare = CompareView()
        self.compare.closed.connect(self.close_compare)
        self.stack = QStackedWidget()
        panel.detail_splitter.replaceWidget(0, self.stack)
        self.stack.addWidget(panel.image_label)
        self.stack.addWidget(self.compare)
        panel.view.selectionModel().currentChanged.connect(lambda *_: self.close_compare())
        for name, text, key, tip, slot in (
                ("upscale", "Upscale…", "U", "A larger copy of this image, kept in the gallery", self.upscale),
                ("compare", "Compare", "D", "Before/after: this image against the one it was made from, or the two "
                 "selected images", self.open_compare)):
            action = QAction(text, panel)
            action.setShortcut(QKeySequence(key))
            action.setShortcutContext(panel.actions_by_name["reuse_settings"].shortcutContext())
            action.setToolTip(f"{tip} ({key})")
            action.triggered.connect(slot)
            panel.addAction(action)
            panel.view.addAction(action)
            panel.use_bar.addAction(action)
            panel.actions_by_name[name] = action
            action.setEnabled(panel.current_record() is not None)

    def upscale(self) -> None:
        record = self.panel.current_record()
        if record is None or not record.file.is_file():
            return
        dialog = UpscaleDialog(_upscalers(self.window), (record.width, record.height), self.window)
        if dialog.exec() != UpscaleDialog.DialogCode.Accepted:
            return
        scale, upscaler = dialog.choice()
        redraw = dialog.redraw_fields()
        if redraw is not None:  # on the canvas, where its tiles' previews show as they form
            if self.window.open_image(str(record.file), record.id):
                start_redraw(self.window, self.window.canvas.image(), record.id, record.recipe(), redraw)
            return
        self.window.backend.run_task(upscale_task(scale, upscaler, record.recipe(), record.id, path=record.file))
        self.window.set_busy(True)

    def pair(self) -> tuple[Any, Any] | None:
        """(before, after): the two selected images (older first), else the current one and its parent."""
        gallery = self.panel.gallery
        ids = self.panel.selected_ids()
        if len(ids) == 2:
            first, second = sorted(ids)
            return gallery.get(first), gallery.get(second)
        record = self.panel.current_record()
        if record is None or record.parent_id is None:
            return None
        try:
            return gallery.get(record.parent_id), record
        except Exception:  # noqa: BLE001 - the parent was deleted for good
            return None

    def open_compare(self) -> bool:
        pair = self.pair()
        if pair is None:
            self.panel.status.setText("Compare needs an image made from another (an upscale, an inpaint, a "
                                      "variation) or two selected images")
            return False
        before, after = pair
        try:
            with Image.open(before.file) as a, Image.open(after.file) as b:
                self.compare.set_images(a.convert("RGB"), b.convert("RGB"), f"#{before.id}", f"#{after.id}")
        except OSError as exc:
            self.panel.status.setText(f"Cannot open the images to compare: {exc}")
            return False
        self.stack.setCurrentWidget(self.compare)
        return True

    def close_compare(self) -> None:
        self.stack.setCurrentWidget(self.panel.image_label)
