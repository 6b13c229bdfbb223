"""Comparison grids in the window: pick up to three axes, watch every cell form, click one to keep it.

The grid runs as one job on the backend thread. Its cells report here through a relay whose signals
cross to the GUI thread; each finished cell, and the labelled grid image, lands in the gallery.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.backends.base import BackendKind
from studio.engine.grid import AxisKind, GridSpec, parse_axis
from studio.recipe.request import RequestError
from studio.ui.jobs import Job
from studio.ui.variations import VariationGrid

NONE = "—"
EXAMPLES = {AxisKind.SEED: "1..4", AxisKind.CFG: "2,4,6", AxisKind.STEPS: "10,20,30", AxisKind.SAMPLER:
            "Euler a, DPM++ 2M", AxisKind.PROMPT: "red, blue, green", AxisKind.MODEL: "builtin",
            AxisKind.LORA: "0, 0.5, 1", AxisKind.DENOISE: "0.3, 0.5, 0.7"}


class _Relay(QObject):
    """Emitted on the backend thread, delivered on the GUI thread."""

    preview = Signal(int, QImage)
    done = Signal(int, QImage)


class CellTiles(VariationGrid):
    """The variation grid's tiles, laid out as the grid's columns (x) and rows (y, then z)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.columns = 1
        self.setToolTip("Click a finished cell to keep it on the canvas")

    def _grid(self) -> tuple[int, int]:
        rows = -(-self.count() // self.columns)
        return self.columns, max(1, rows)


class GridDialog(QDialog):
    """Axes in, live tiles out. `window` is the MainWindow (for the request, backend and canvas)."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle("Comparison grid")
        self.resize(720, 640)
        self.job: Job | None = None
        self.results: list[Any] = []
        self.rows: list[tuple[QComboBox, QLineEdit]] = []
        axes = QGridLayout()
        for k, name in enumerate("XYZ"):
            kind, values = QComboBox(), QLineEdit()
            kind.addItems(([] if k == 0 else [NONE]) + [a.value for a in AxisKind])
            kind.currentTextChanged.connect(lambda text, v=values: self._example(text, v))
            axes.addWidget(QLabel(name), k, 0)
            axes.addWidget(kind, k, 1)
            axes.addWidget(values, k, 2)
            self.rows.append((kind, values))
        self.rows[0][0].setCurrentText(AxisKind.CFG.value)
        self.rows[0][1].setText("2, 4, 6")
        self.rows[1][0].setCurrentText(AxisKind.SEED.value)
        self.rows[1][1].setText("1..4")
        self.run_button = QPushButton("Run grid")
        self.run_button.clicked.connect(self.run)
        self.message = QLabel("The other settings come from the Generate panel.")
        self.message.setWordWrap(True)
        bar = QHBoxLayout()
        bar.addWidget(self.message, 1)
        bar.addWidget(self.run_button)
        self.tiles = CellTiles()
        self.tiles.picked.connect(self._keep)  # in the grid a click keeps a cell (the main grid picks on a click)
        layout = QVBoxLayout(self)
        layout.addLayout(axes)
        layout.addLayout(bar)
        layout.addWidget(self.tiles, 1)
        self.relay = _Relay()
        self.relay.preview.connect(self._preview)
        self.relay.done.connect(self.tiles.set_final)
        backend = window.backend
        backend.finished.connect(self._finished)
        backend.failed.connect(lambda job: job is self.job and self.message.setText(f"Failed: {job.error}"))
        backend.cancelled.connect(lambda job: job is self.job and self.tiles.stop())

    @staticmethod
    def _example(text: str, values: QLineEdit) -> None:
        if text in (a.value for a in AxisKind) and not values.text().strip():
            values.setPlaceholderText(EXAMPLES[AxisKind(text)])

    def spec(self) -> GridSpec:
        """The grid the dialog describes, on the Generate panel's current request."""
        axes = [parse_axis(f"{kind.currentText()}={values.text()}") for kind, values in self.rows
                if kind.currentText() != NONE]
        # Grids run on this computer (a task of the local engine), whatever Run on says.
        return GridSpec(self.window_.generation.build_request(batch_size=1, backend=BackendKind.LOCAL.value), axes)

    def run(self) -> None:
        try:
            spec = self.spec()
            cells = spec.cells()
        except RequestError as exc:
            self.message.setText(str(exc))
            return
        nx, ny, nz = spec.shape()
        self.tiles.columns = nx
        xs, ys, zs = spec.labels()
        labels = [" · ".join(t for t in (xs[c.x], ys[c.y] if ny > 1 else "", zs[c.z] if nz > 1 else "") if t)
                  for c in cells]
        request = spec.base
        aspect = (request.width or 1) / (request.height or 1)
        self.tiles.start([c.request.seed for c in cells], labels, aspect)
        self.results = []
        self.message.setText(f"{len(cells)} cells ({nx} × {ny} × {nz}) queued")
        self.job = self.window_.backend.run_task(_grid_task(spec, self.relay), first_is_parent=True)
        self.window_.set_busy(True)

    def _preview(self, index: int, image: QImage) -> None:
        self.tiles.set_previews([image], first=index)

    def _finished(self, job: Job) -> None:
        if job is self.job:
            self.results = job.results[1:]  # results[0] is the labelled grid image
            self.message.setText(f"Done: the grid and its {len(self.results)} cells are in the gallery")

    def _keep(self, index: int) -> None:
        if 0 <= index < len(self.results):
            result = self.results[index]
            self.window_.canvas.apply_result(result.image, f"Keep grid cell (seed {result.seed})",
                                             source_id=result.gallery_id)
            self.window_.center.setCurrentWidget(self.window_.canvas)


def _grid_task(spec: GridSpec, relay: _Relay) -> Any:
    def task(engine: Any, on_step: Any, should_stop: Any) -> list[Any]:
        from studio.engine.grid import run
        from studio.ui.canvas_images import pil_to_qimage
        from studio.ui.worker import PREVIEW_INTERVAL, numpy_to_qimage

        def step(info: Any) -> None:
            on_step(info)
            if info.preview is not None:
                relay.preview.emit(info.item, numpy_to_qimage(info.preview))

        result = run(engine, spec, step, should_stop, on_cell=lambda k, r: relay.done.emit(k, pil_to_qimage(r.image)),
                     preview_interval=PREVIEW_INTERVAL)
        return [result.grid, *result.cells]

    return task
