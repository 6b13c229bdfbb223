"""The gallery panel: a lazy thumbnail grid over the gallery store, search, details and actions.

The grid's model, thumbnail loading and painting live in `studio.ui.thumbnails`; this module is
the widget: filters, the detail pane, the actions and their shortcuts, drag out and drop in.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QAction,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QPalette,
    QPixmap,
    QResizeEvent,
    QUndoCommand,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.gallery import DEFAULT_TEMPLATE, Gallery, GalleryError, ImageRecord, Query
from studio.gallery.files import IMAGE_SUFFIXES
from studio.gallery.records import SEARCH_SYNTAX, parse_time
from studio.ui.thumbnails import CELL, GRID_SIZE, PAGE, GalleryModel, ThumbnailDelegate, ThumbnailLoader

DETAIL_SIZE = 768  # the detail pane's image
SIDE_BY_SIDE_MIN = 480  # px: below this a tall panel stacks the picture over its settings (each half would be too thin)


def columns_for(width: int) -> int:
    """How many thumbnail columns a grid `width` pixels wide shows."""
    return max(1, round(width / CELL))


class _Grid(QListView):
    """The thumbnail grid: cells stretch so that whole columns fill the width (no ragged gap)."""

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        width = self.viewport().width()
        # The column count nearest to CELL-sized cells, so a narrow dock still shows two columns.
        # One pixel spare: Qt wraps a row that exactly fills the width, which left a lone column.
        cell = (width - 1) // columns_for(width)
        delegate = self.itemDelegate()
        if isinstance(delegate, ThumbnailDelegate) and cell != delegate.cell:
            delegate.cell = cell
            self.setGridSize(QSize(cell, cell))


class _FittedImage(QLabel):
    """The detail image: scaled to fit whatever room the splitter gives it, kept sharp on resize."""

    def __init__(self) -> None:
        super().__init__(alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self._source: QPixmap | None = None
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)

    def set_source(self, pixmap: QPixmap | None) -> None:
        self._source = pixmap
        if pixmap is None or pixmap.isNull():
            self.clear()
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._source is None or self._source.isNull():
            return  # keep whatever message was set in place of an image
        ratio = self.devicePixelRatioF()
        scaled = self._source.scaled(self.size() * ratio, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation)
        scaled.setDevicePixelRatio(ratio)
        self.setPixmap(scaled)


class _DeleteCommand(QUndoCommand):
    """Soft delete, undone by undelete: the file and row stay until the gallery purges them."""

    def __init__(self, panel: GalleryPanel, ids: list[int]) -> None:
        super().__init__(f"Delete {len(ids)} image{'s' if len(ids) != 1 else ''}")
        self.panel, self.ids = panel, ids

    def redo(self) -> None:
        # Exceptions cannot cross Qt's call into redo/undo: report here, and an obsolete command
        # is dropped from the stack instead of offering an undo of nothing.
        row = self.panel.view.currentIndex().row()
        try:
            self.panel.gallery.delete(self.ids)
        except GalleryError as exc:
            self.panel.status.setText(str(exc))
            self.setObsolete(True)
            return
        self.panel.refresh()
        rows = self.panel.model.rowCount()
        if row >= 0 and rows:  # the image that moved into the deleted one's place, as in a file browser
            self.panel.make_current(min(row, rows - 1))

    def undo(self) -> None:
        try:
            self.panel.gallery.undelete(self.ids)
        except GalleryError as exc:
            self.panel.status.setText(str(exc))
            return
        self.panel.refresh()
        self.panel.select_image(self.ids[0])
        self.panel.status.setText(f"Restored {len(self.ids)} image{'s' if len(self.ids) != 1 else ''}")


class _Reconcile(QRunnable):
    def __init__(self, gallery: Gallery) -> None:
        super().__init__()
        # The relay has no Qt parent and lives as long as this job: the panel may be gone by the
        # time reconcile ends, and its connection then simply goes nowhere.
        self.gallery, self.relay = gallery, _ReconcileRelay()

    def run(self) -> None:
        try:
            report = self.gallery.reconcile()
            changed = report.imported or report.missing
            message = f"{report.imported} imported, {report.missing} missing" if changed else ""
        except Exception as exc:  # noqa: BLE001 - a thread boundary: report, never lose it in a pool thread
            message = f"could not check the gallery: {exc}"
        self.relay.done.emit(message)


class _ReconcileRelay(QObject):
    done = Signal(str)


class ExportDialog(QDialog):
    """Folder, format, metadata and file name template for an export."""

    def __init__(self, count: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Export {count} image{'s' if count != 1 else ''}")
        self.folder = QLineEdit(str(Path.home()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.format = QComboBox()
        self.format.addItems(["png", "jpeg", "webp"])
        self.strip = QCheckBox("Remove prompt and settings from the files")
        self.template = QLineEdit(DEFAULT_TEMPLATE)
        self.template.setToolTip("Fields: {id} {date} {seed} {prompt} {model} {steps} {cfg} {width} {height}")
        form = QFormLayout(self)
        form.addRow("Folder", row)
        form.addRow("Format", self.format)
        form.addRow("File names", self.template)
        form.addRow("", self.strip)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Export to", self.folder.text())
        if chosen:
            self.folder.setText(chosen)


class GalleryPanel(QWidget):
    """Browse, search and act on saved images. The main window connects the signals below."""

    reuse_settings = Signal(dict)   # the full recipe
    reuse_seed = Signal(int)
    send_to_canvas = Signal(str, int)    # file path, gallery id (the canvas picture's parent-to-be)
    regenerate = Signal(dict)
    make_variations = Signal(dict)

    def __init__(self, gallery: Gallery, parent: QWidget | None = None, *, reconcile: bool = True) -> None:
        super().__init__(parent)
        self.gallery = gallery
        self.setAcceptDrops(True)
        self.undo_stack = QUndoStack(self)
        self.loader = ThumbnailLoader(gallery, parent=self)
        self.model = GalleryModel(gallery, self.loader, self)
        self._current: ImageRecord | None = None
        self._split_done = False
        self._search_timer = QTimer(self, singleShot=True, interval=150)
        self._search_timer.timeout.connect(self._apply_filters)
        self._build()
        self._build_actions()
        self.loader.ready.connect(self._detail_image_ready)
        self.model.modelReset.connect(self._update_count)
        self.model.reload()
        self._show_first()
        if reconcile:
            self._reconcile_in_background()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.search = QLineEdit(placeholderText="Search prompts…", clearButtonEnabled=True)
        self.search.setToolTip(f"Full-text search over prompts and negative prompts: {SEARCH_SYNTAX}")
        self.search.textChanged.connect(lambda _: self._search_timer.start())
        self.favorites_only = QToolButton(text="★", checkable=True, toolTip="Show favourites only")
        self.favorites_only.toggled.connect(self._apply_filters)
        self.sort = QComboBox(toolTip="Sort order")
        self.sort.addItem("Newest first", "newest")
        self.sort.addItem("Oldest first", "oldest")
        self.sort.currentIndexChanged.connect(self._apply_filters)
        self.count_label = QLabel()
        self.count_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.hidden_bar = self._build_hidden_bar()
        filters = QHBoxLayout()
        filters.setContentsMargins(0, 0, 0, 0)
        filters.addWidget(self.search, 1)
        filters.addWidget(self.favorites_only)
        filters.addWidget(self.sort)

        self.view = self._build_grid()
        self.detail = self._build_detail()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)

        # Two toolbars: "use this image" and "manage it"; side by side when wide, stacked in a dock.
        self.use_bar, self.manage_bar = QToolBar(), QToolBar()
        self.bars = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        self.bars.setContentsMargins(0, 0, 0, 0)
        for bar in (self.use_bar, self.manage_bar):
            bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            self.bars.addWidget(bar)
        self.bars.addStretch(1)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addLayout(filters)
        layout.addWidget(self.count_label)
        layout.addWidget(self.hidden_bar)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(self.bars)
        layout.addWidget(self.status)

    def _build_hidden_bar(self) -> QWidget:
        """"3 new images hidden by the filter [Clear filter]": shown when a run's images do not match."""
        self._hidden_count, self._hidden_run = 0, []
        self.hidden_label = QLabel(wordWrap=True)
        self.clear_filter_button = QPushButton("Clear filter")
        self.clear_filter_button.setToolTip("Clear the search and the favourites filter, and show the new images")
        self.clear_filter_button.clicked.connect(self.clear_filters)
        bar = QWidget()
        row = QHBoxLayout(bar)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.hidden_label, 1)
        row.addWidget(self.clear_filter_button)
        bar.setVisible(False)
        return bar

    def clear_filters(self) -> None:
        """Show everything again, the last run's images in view."""
        shown = self._hidden_run
        self.search.blockSignals(True)  # no debounced search afterwards: the query changes here, once
        self.search.clear()
        self.search.blockSignals(False)
        self.favorites_only.blockSignals(True)
        self.favorites_only.setChecked(False)
        self.favorites_only.blockSignals(False)
        self._apply_filters()
        self.show_new(shown)

    def _note_hidden(self, image_ids: list[int]) -> None:
        """Count a run's images the filter keeps out of the grid, and say so beside it."""
        query = self.model.query
        if not image_ids or not (query.search or query.favorites):
            return
        shown = self.gallery.count(replace(query, ids=tuple(image_ids)))
        if shown == len(image_ids):
            return
        self._hidden_count += len(image_ids) - shown
        self._hidden_run = image_ids
        n = self._hidden_count
        self.hidden_label.setText(f"{n} new image{'s' if n != 1 else ''} hidden by the "
                                  f"{'search' if query.search and not query.favorites else 'filter'}")
        self.hidden_bar.setVisible(True)

    def _build_grid(self) -> QListView:
        view = _Grid()
        view.setViewMode(QListView.ViewMode.IconMode)
        view.setMovement(QListView.Movement.Static)
        view.setResizeMode(QListView.ResizeMode.Adjust)
        view.setUniformItemSizes(True)  # layout of a page is O(1) per item: no per-item size query
        view.setLayoutMode(QListView.LayoutMode.Batched)
        view.setBatchSize(PAGE)
        view.setSpacing(0)
        view.setGridSize(QSize(CELL, CELL))
        view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        view.setDragEnabled(True)
        view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        view.setMouseTracking(True)  # hover highlight
        view.setModel(self.model)
        view.setItemDelegate(ThumbnailDelegate(self.loader, CELL, view))
        view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)  # no relayout ping-pong
        view.selectionModel().currentChanged.connect(self._current_changed)
        view.activated.connect(lambda _: self._send_to_canvas())
        return view

    def _build_detail(self) -> QWidget:
        self.image_label = _FittedImage()
        self.image_label.setBackgroundRole(QPalette.ColorRole.Base)
        self.image_label.setAutoFillBackground(True)
        self.recipe_label = QLabel(wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.recipe_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.recipe_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.recipe_label.linkActivated.connect(self._follow_link)
        self.recipe_label.setContentsMargins(10, 6, 10, 6)
        self.recipe_scroll = text_scroll = QScrollArea(widgetResizable=True)
        text_scroll.setWidget(self.recipe_label)
        text_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.detail_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.detail_splitter.addWidget(self.image_label)
        self.detail_splitter.addWidget(text_scroll)
        self.detail_splitter.setStretchFactor(0, 1)
        self.detail_splitter.setStretchFactor(1, 1)
        return self.detail_splitter

    def _build_actions(self) -> None:
        self.actions_by_name: dict[str, QAction] = {}
        specs = [
            ("reuse_settings", "Reuse settings", "A", "Put every setting of this image back in the controls",
             lambda: self._emit_recipe(self.reuse_settings)),
            ("reuse_seed", "Reuse seed", "S", "Use this image's seed", self._reuse_seed),
            ("send_to_canvas", "To canvas", "C", "Open this image on the canvas (also Enter or double-click)",
             self._send_to_canvas),
            ("regenerate", "Regenerate", "G", "Run this image's recipe again",
             lambda: self._emit_recipe(self.regenerate)),
            ("variations", "Variations", "V", "Make variations of this image",
             lambda: self._emit_recipe(self.make_variations)),
            ("favorite", "Favourite", "F", "Mark or unmark as favourite", self.toggle_favorite),
            ("delete", "Delete", QKeySequence.StandardKey.Delete, "Move to the trash (undo with Ctrl+Z)",
             self.delete_selected),
            ("undo", "Undo", QKeySequence.StandardKey.Undo, "Undo the last delete", self.undo_stack.undo),
            ("export", "Export…", "Ctrl+E", "Export the selected images", self.export_selected),
            ("copy", "Copy image", QKeySequence.StandardKey.Copy, "Copy the image to the clipboard", self.copy_image),
            ("show_file", "Show file", "Ctrl+Shift+O", "Show the file in its folder", self.show_in_folder),
        ]
        for name, text, key, tip, slot in specs:
            action = QAction(text, self)
            action.setShortcut(QKeySequence(key))
            # Only while the panel has focus: the prompt box and the canvas keep their own keys.
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shown = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            action.setToolTip(f"{tip} ({shown})")
            action.triggered.connect(slot)
            self.addAction(action)
            self.actions_by_name[name] = action
        self.undo_stack.canUndoChanged.connect(self.actions_by_name["undo"].setEnabled)
        self.actions_by_name["undo"].setEnabled(False)
        for name in ("reuse_settings", "reuse_seed", "send_to_canvas", "regenerate", "variations"):
            self.use_bar.addAction(self.actions_by_name[name])
        for name in ("favorite", "delete", "export", "copy", "show_file"):
            self.manage_bar.addAction(self.actions_by_name[name])
        # Right-click on the grid offers everything (Undo included).
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.view.addActions(list(self.actions_by_name.values()))
        self._set_actions_enabled(False)

    def _set_actions_enabled(self, enabled: bool) -> None:
        for name, action in self.actions_by_name.items():
            if name != "undo":
                action.setEnabled(enabled)

    def resizeEvent(self, event: QResizeEvent) -> None:
        # A wide panel puts the details beside the grid; a tall dock puts them below it, the picture
        # beside its settings, or above them where the dock is too narrow for two readable columns.
        super().resizeEvent(event)
        width, height = event.size().width(), event.size().height()
        wide = width > height * 1.3
        self.bars.setDirection(QBoxLayout.Direction.LeftToRight if width > 820
                               else QBoxLayout.Direction.TopToBottom)
        vertical, horizontal = Qt.Orientation.Vertical, Qt.Orientation.Horizontal
        outer = horizontal if wide else vertical
        inner = vertical if wide or width < SIDE_BY_SIDE_MIN else horizontal
        if (outer, inner) != (self.splitter.orientation(), self.detail_splitter.orientation()) or not self._split_done:
            self._split_done = True
            self.splitter.setOrientation(outer)
            self.detail_splitter.setOrientation(inner)
            along = width if wide else height
            grid_share = 0.5 if inner == outer else 0.64  # a stacked detail pane needs more of the height
            self.splitter.setSizes([int(along * grid_share), int(along * (1 - grid_share))])
            self.detail_splitter.setSizes([600, 400] if wide else [500, 500])

    # ------------------------------------------------------------------ querying

    def refresh(self) -> None:
        """Reload the grid (call after the worker saved an image); keeps the current image selected,
        or shows the newest when there was none (the first image of an empty gallery) or it is gone."""
        current = self._current.id if self._current else None
        self.model.reload(keep_loaded=True)
        if current is None or not self.select_image(current):
            self._show_first()

    def _apply_filters(self) -> None:
        query = Query(search=self.search.text().strip(), favorites=self.favorites_only.isChecked(),
                      sort=self.sort.currentData() or "newest")
        if query != self.model.query:
            self._hidden_count, self._hidden_run = 0, []
            self.hidden_bar.setVisible(False)
            self.model.set_query(query)
            self._show_first()

    def _show_first(self) -> None:
        """Make the newest loaded image current, or tell the detail pane there is none."""
        if self.model.rowCount():
            self.make_current(0)
        else:
            self._show(None)

    def make_current(self, row: int) -> None:
        """Select row `row` alone and show it. Not view.setCurrentIndex: that reads the keyboard, and Ctrl
        still down from Ctrl+Z added the image to the selection (two tiles selected, both deleted next)."""
        self.view.selectionModel().setCurrentIndex(self.model.index(row),
                                                   QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def _empty_message(self) -> str:
        """What the detail pane says when there is no image to show, and what to do about it."""
        if self.model.rowCount():
            return "Select an image to see it with its settings"
        if self.model.query.search or self.model.query.favorites:
            return "No image matches the search or filter"
        return "No images yet: generate one (Ctrl+Enter) and it is kept here"

    def _update_count(self) -> None:
        total = self.model.total
        self.count_label.setText(f"{total:,} image{'s' if total != 1 else ''}")

    def select_image(self, image_id: int) -> bool:
        """Make `image_id` current if it is in the loaded rows; return whether it was."""
        row = self.model.row_of(image_id)
        if row is None:
            return False
        self.make_current(row)
        self.view.scrollTo(self.model.index(row))
        return True

    def show_new(self, image_ids: list[int]) -> None:
        """Make the first of a run's new images current, with the whole run in view where it fits:
        newest first puts the run's first image below the others, and scrolling to it alone cut the
        top row off."""
        rows = [row for row in map(self.model.row_of, image_ids) if row is not None]
        if rows:
            self.view.scrollTo(self.model.index(min(rows)))
            self.select_image(image_ids[0])
        self._note_hidden(image_ids)

    def current_record(self) -> ImageRecord | None:
        return self._current

    def selected_ids(self) -> list[int]:
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        ids = [r.id for r in (self.model.record(row) for row in rows) if r is not None]
        if not ids and self._current is not None:
            ids = [self._current.id]
        return ids

    # ------------------------------------------------------------------ details

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._show(self.model.record(current.row()) if current.isValid() else None)

    def _show(self, record: ImageRecord | None) -> None:
        self._current = record
        self._set_actions_enabled(record is not None)
        self.recipe_scroll.setVisible(record is not None)  # a message alone spans the whole pane
        if record is None:
            self.image_label.set_source(None)
            self.image_label.setText(self._empty_message())
            self.recipe_label.setText("")
            return
        self.actions_by_name["favorite"].setText("Unfavourite" if record.favorite else "Favourite")
        self.recipe_label.setText(self._recipe_html(record))
        self._detail_image_ready(record.id, DETAIL_SIZE)

    def _detail_image_ready(self, image_id: int, size: int) -> None:
        record = self._current
        if record is None or record.id != image_id or size != DETAIL_SIZE:
            return
        pixmap = self.loader.pixmap(record.id, record.file, DETAIL_SIZE)
        if pixmap is None:  # on its way: show the grid's smaller one meanwhile, if there is one
            grid = self.loader.pixmap(record.id, record.file, GRID_SIZE, CELL * 2)
            self.image_label.set_source(grid)
            if grid is None and (record.missing or self.loader.failed(record.id, DETAIL_SIZE)):
                self.image_label.setText("File missing")
            return
        self.image_label.set_source(pixmap)

    def _recipe_html(self, record: ImageRecord) -> str:
        recipe = record.recipe()
        created = parse_time(record.created_at)
        created = created.astimezone() if created else None  # stored in UTC, shown in local time
        rows: list[tuple[str, Any]] = [
            ("Negative", recipe.get("negative_prompt") or record.negative_prompt or None),
            ("Model", record.model_name), ("Seed", record.seed), ("Steps", record.steps),
            ("CFG", f"{record.cfg:g}" if record.cfg is not None else None), ("Sampler", record.scheduler),
            ("Size", f"{record.width} × {record.height}"), ("Mode", record.mode),
            ("Strength", f"{record.strength:g}" if record.strength is not None else None),
            ("Variation", f"{recipe['variation_seed']} @ {recipe.get('variation_strength', 0):g}"
             if recipe.get("variation_seed") is not None else None),
            ("Device", " / ".join(str(recipe[k]) for k in ("device", "dtype") if recipe.get(k)) or None),
            ("Time", f"{recipe['seconds']:.1f} s" if isinstance(recipe.get("seconds"), (int, float)) else None),
            ("Created", f"{created:%Y-%m-%d %H:%M:%S}" if created else record.created_at),
            ("Source", recipe.get("source")),
        ]
        table = "".join(f"<tr><td style='padding-right:10px'><b>{name}</b></td><td>{html.escape(str(value))}</td></tr>"
                        for name, value in rows if value not in (None, ""))
        prompt = html.escape(record.prompt) if record.prompt else "<i>no prompt recorded</i>"
        links = self._lineage_html(record)
        return (f"<p style='font-size:large; margin-bottom:8px'>{prompt}</p>"
                f"<table cellspacing='0' cellpadding='1'>{table}</table>{links}")

    def _lineage_html(self, record: ImageRecord) -> str:
        parts = []
        if record.parent_id is not None:
            parts.append(f"Made from <a href='image:{record.parent_id}'>#{record.parent_id}</a>")
        children = self.gallery.children(record.id)
        if children:
            shown = ", ".join(f"<a href='image:{c.id}'>#{c.id}</a>" for c in children[:20])
            more = f" and {len(children) - 20} more" if len(children) > 20 else ""
            parts.append(f"Used for {shown}{more}")
        return "<p>" + "<br>".join(parts) + "</p>" if parts else ""

    def _follow_link(self, link: str) -> None:
        if not link.startswith("image:"):
            return
        image_id = int(link.split(":", 1)[1])
        if not self.select_image(image_id):
            try:
                self._show(self.gallery.get(image_id))  # not in the loaded pages (or filtered out)
            except GalleryError as exc:
                self.status.setText(str(exc))

    # ------------------------------------------------------------------ actions

    def _emit_recipe(self, signal: Any) -> None:
        if self._current is not None:
            signal.emit(self._current.recipe())

    def _reuse_seed(self) -> None:
        if self._current is not None and self._current.seed is not None:
            self.reuse_seed.emit(self._current.seed)

    def _send_to_canvas(self) -> None:
        if self._current is not None and self._current.file.is_file():
            self.send_to_canvas.emit(str(self._current.file), self._current.id)

    def toggle_favorite(self) -> None:
        if self._current is None:
            return
        record = self._current
        try:
            self.gallery.set_favorite(record.id, not record.favorite)
            updated = self.gallery.get(record.id)
        except GalleryError as exc:
            self.status.setText(str(exc))
            return
        if self.model.query.favorites and not updated.favorite:
            self.refresh()
        else:
            self.model.replace(updated)
            self._show(updated)

    def delete_selected(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.undo_stack.push(_DeleteCommand(self, ids))
            if self.undo_stack.count() == 0 or self.undo_stack.command(self.undo_stack.index() - 1).isObsolete():
                return
            self.status.setText(f"Deleted {len(ids)} image{'s' if len(ids) != 1 else ''}. Ctrl+Z brings "
                                f"{'them' if len(ids) != 1 else 'it'} back.")

    def export_selected(self) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        dialog = ExportDialog(len(ids), self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        try:
            written = self.gallery.export(ids, Path(dialog.folder.text()), dialog.format.currentText(),
                                          dialog.strip.isChecked(), dialog.template.text() or DEFAULT_TEMPLATE)
        except GalleryError as exc:
            QMessageBox.warning(self, "Export failed", str(exc))
            return
        self.status.setText(f"Exported {len(written)} file{'s' if len(written) != 1 else ''} to {dialog.folder.text()}")

    def copy_image(self) -> None:
        if self._current is not None:
            image = QImage(str(self._current.file))
            if not image.isNull():
                QGuiApplication.clipboard().setImage(image)

    def show_in_folder(self) -> None:
        if self._current is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._current.file.parent)))

    # ------------------------------------------------------------------ drop in: import

    def _dropped_files(self, event: QDragEnterEvent | QDropEvent) -> list[Path]:
        if event.source() is self.view or not event.mimeData().hasUrls():
            return []  # a drag from our own grid is not an import
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        return [p for p in paths if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_files(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = self._dropped_files(event)
        if paths:
            event.acceptProposedAction()
            self.import_files(paths)

    def import_files(self, paths: list[Path]) -> list[int]:
        try:
            result = self.gallery.import_paths(paths)
        except GalleryError as exc:
            self.status.setText(str(exc))
            return []
        problems = [f"{p.name}: {m}" for p, m in result.errors + result.warnings]
        summary = result.summary()
        self.status.setText(summary[0].upper() + summary[1:] + (". " + "; ".join(problems[:3]) if problems else ""))
        self.refresh()
        if result:
            self.select_image(result[0])
        return list(result)

    # ------------------------------------------------------------------ lifecycle

    def _reconcile_in_background(self) -> None:
        job = _Reconcile(self.gallery)
        job.relay.done.connect(self._reconciled)
        QThreadPool.globalInstance().start(job)

    def _reconciled(self, message: str) -> None:
        if message:
            self.status.setText(f"Gallery checked: {message}")
            try:
                self.refresh()
            except GalleryError as exc:  # closed meanwhile (the window is shutting down)
                self.status.setText(str(exc))

    def shutdown(self) -> None:
        """Stop thumbnail decoding (call before closing the gallery)."""
        self.loader.shutdown()
