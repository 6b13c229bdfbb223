"""The backend thread: one long-lived QThread owns the engine; the GUI talks to it with jobs and signals.

Jobs run FIFO. The running job can be cancelled (it stops within one denoising step, through the
engine's step callback) and the queue can be cleared. Previews are throttled here, on the worker, so
a fast model never floods the GUI's event loop (progress still arrives every step). torch and diffusers are imported on this thread,
after the window is on screen.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from studio.engine.memory import MemoryPreset
from studio.recipe.request import GenerationRequest, StepInfo

PREVIEW_INTERVAL = 0.05  # seconds: at most ~20 previews a second are made and reach the GUI


@dataclass
class Job:
    """One unit of work for the backend: a generation, or a model load."""

    kind: str  # "generate", "load" or "task"
    request: GenerationRequest | None = None
    model: str = ""
    memory: str | None = None  # the memory preset to load under (a change reloads even the current model)
    save: bool = True
    sequential: bool = False
    preview_all: bool = False  # a preview for every batch item (the variation grid)
    # A "task" runs task(engine, on_step, should_stop) -> results on the worker (Upscale, grids);
    # each result is saved with the parent its recipe names.
    task: Callable[[Any, Callable[[StepInfo], None], Callable[[], bool]], list[Any]] | None = None
    id: int = field(default_factory=itertools.count(1).__next__)


@dataclass
class JobResult:
    """A finished image as the GUI receives it."""

    image: Any  # PIL.Image
    seed: int
    recipe: dict[str, Any]
    seconds: float
    gallery_id: int | None = None
    path: str | None = None


def numpy_to_qimage(array: Any) -> QImage:
    """uint8 HxWx3 -> a QImage that owns its pixels (the array may be freed afterwards)."""
    h, w, _ = array.shape
    return QImage(array.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class Backend(QObject):
    """The GUI-side handle: submit jobs, cancel, and receive signals (delivered on the GUI thread)."""

    model_loading = Signal(str)
    model_loaded = Signal(dict)  # ref (as asked for), name, path, device, dtype, native_size, suggested_cfg, preview_psnr
    model_failed = Signal(str)
    started = Signal(int)
    # job id, step, total, elapsed, previews (list[QImage]), region (x0, y0, x1, y1) of the image or None
    step = Signal(int, int, int, float, list, object)
    finished = Signal(int, list)  # job id, list[JobResult]
    failed = Signal(int, str)
    cancelled = Signal(int)
    queue_changed = Signal(int)  # jobs waiting (not counting the running one)
    notice = Signal(str)  # something to tell the user that is not a failure (a server dropped out)
    idle = Signal()
    stopped = Signal()  # the thread has ended (after shutdown)

    def __init__(self, data_dir: Path | None, device: str = "auto", use_gallery: bool = True,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._pending: list[Job] = []
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.current: Job | None = None
        self.data_dir = data_dir
        self._thread = _BackendThread(self, data_dir, device, use_gallery)
        self._thread.finished.connect(self.stopped)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> int:
        with self._lock:
            self._pending.append(job)
        self._jobs.put(job)
        self.queue_changed.emit(len(self._pending))
        return job.id

    def load_model(self, model: str, memory: str | None = None) -> int:
        return self.submit(Job("load", model=model, memory=memory))

    def generate(self, request: GenerationRequest, save: bool = True, sequential: bool = False,
                 preview_all: bool = False) -> int:
        return self.submit(Job("generate", request=request, save=save, sequential=sequential,
                               preview_all=preview_all))

    def run_task(self, task: Callable[[Any, Callable[[StepInfo], None], Callable[[], bool]], list[Any]]) -> int:
        return self.submit(Job("task", task=task))

    def cancel_current(self) -> None:
        self._cancel.set()

    def clear_queue(self) -> None:
        with self._lock:
            dropped, self._pending = self._pending, []
        for job in dropped:
            self.cancelled.emit(job.id)
        self.queue_changed.emit(0)

    def busy(self) -> bool:
        return self.current is not None or bool(self._pending)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and join the thread; True when it ended in time."""
        self.clear_queue()
        self.cancel_current()
        self._jobs.put(None)
        return self._thread.wait(timeout_ms)

    # called from the backend thread
    def _take(self, job: Job) -> bool:
        with self._lock:
            if job not in self._pending:
                return False  # cleared while it waited
            self._pending.remove(job)
            self.current = job
        self._cancel.clear()
        self.queue_changed.emit(len(self._pending))
        return True

    def _done(self) -> None:
        with self._lock:
            self.current = None
            empty = not self._pending
        if empty:
            self.idle.emit()


class _BackendThread(QThread):
    def __init__(self, backend: Backend, data_dir: Path | None, device: str, use_gallery: bool) -> None:
        super().__init__()
        self.backend = backend
        self.data_dir = data_dir
        self.device = device
        self.use_gallery = use_gallery
        self.engine: Any = None
        self.gallery: Any = None

    def run(self) -> None:
        from studio.engine import Engine

        self.engine = Engine(device=self.device, data_dir=self.data_dir)
        while (job := self.backend._jobs.get()) is not None:
            if not self.backend._take(job):
                continue
            try:
                if job.kind == "load":
                    self._load(job)
                else:
                    self._generate(job)
            finally:
                self.backend._done()
        if self.gallery is not None:
            self.gallery.close()

    def _stop(self) -> bool:
        return self.backend._cancel.is_set()

    def _load(self, job: Job) -> None:
        from studio.engine import Cancelled
        from studio.recipe.errors import describe

        b = self.backend
        try:
            preset = MemoryPreset(job.memory) if job.memory is not None else self.engine.memory
            changed, self.engine.memory = preset != self.engine.memory, preset
            model = self.engine.load(job.model, on_progress=b.model_loading.emit, should_stop=self._stop,
                                     reload=changed)
        except Cancelled:
            b.cancelled.emit(job.id)
            b.model_failed.emit("model load cancelled")
            return
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, the thread lives on
            b.model_failed.emit(describe(exc))
            return
        rgb_map = self.engine.rgb_map
        b.model_loaded.emit({"ref": job.model, "name": model.entry.name, "path": str(model.entry.path),
                             "kind": model.entry.kind, "family": model.label, "memory": model.memory.describe(),
                             "device": model.device.type, "dtype": str(model.dtype).replace("torch.", ""),
                             "native_size": model.native_size, "suggested_cfg": model.suggested_cfg(),
                             "suggested_steps": model.suggested_steps(),
                             "preview_psnr": rgb_map.psnr if rgb_map is not None else None})

    def _generate(self, job: Job) -> None:
        from studio.engine import Cancelled
        from studio.recipe.errors import describe

        b = self.backend
        b.started.emit(job.id)

        def on_step(info: StepInfo) -> None:
            images = [numpy_to_qimage(p) for p in info.previews]
            b.step.emit(job.id, info.step + info.item * info.total, info.total * info.items, info.elapsed, images,
                        info.region)

        try:
            if job.task is not None:
                results = job.task(self.engine, on_step, self._stop)
            else:
                from studio.backends.choose import backend_for

                assert job.request is not None
                backend, request = backend_for(job.request, self.engine, self.data_dir)
                results = backend.generate(request, on_step=on_step, should_stop=self._stop, on_notice=b.notice.emit,
                                           sequential=job.sequential, preview_all=job.preview_all,
                                           preview_interval=PREVIEW_INTERVAL)
            out = [self._keep(job, r) for r in results]
        except Cancelled:
            b.cancelled.emit(job.id)
            return
        except Exception as exc:  # noqa: BLE001 - reported to the GUI; the worker keeps serving
            b.failed.emit(job.id, describe(exc))
            return
        b.finished.emit(job.id, out)

    def _keep(self, job: Job, result: Any) -> JobResult:
        kept = JobResult(result.image, result.seed, result.recipe, result.seconds)
        if job.save and self.use_gallery and self.data_dir is not None:
            if self.gallery is None:
                from studio.gallery import Gallery

                self.gallery = Gallery(self.data_dir)  # this thread's own connection
            parent = job.request.parent_id if job.request is not None else result.recipe.get("parent_id")
            inputs = (job.request.init_image, job.request.mask) if job.request is not None else ()
            kept.gallery_id = self.gallery.save(result.image, result.recipe, parent_id=parent, inputs=inputs)
            kept.path = str(self.gallery.get(kept.gallery_id).file)
        return kept
