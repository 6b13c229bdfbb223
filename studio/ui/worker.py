"""The backend thread: one long-lived QThread owns the engine; the GUI talks to it with jobs and signals.

Jobs run FIFO. The running job can be cancelled (it stops within one denoising step, through the
engine's step callback) and the queue can be cleared. Previews are throttled here, on the worker, so
a fast model never floods the GUI's event loop (progress still arrives every step). torch and diffusers
are imported on this thread, after the window is on screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from studio.engine.memory import MemoryPreset
from studio.recipe.request import GenerationRequest, GenerationResult, StepInfo
from studio.ui.jobs import Job, JobKind, JobQueue, JobState, Progress

PREVIEW_INTERVAL = 0.05  # seconds: at most ~20 previews a second are made and reach the GUI


def numpy_to_qimage(array: Any) -> QImage:
    """uint8 HxWx3 -> a QImage that owns its pixels (the array may be freed afterwards)."""
    h, w, _ = array.shape
    return QImage(array.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class Backend(JobQueue):
    """The job queue with the thread that runs it: submit jobs, cancel, and receive signals (on the GUI thread)."""

    stopped = Signal()  # the thread has ended (after shutdown)

    def __init__(self, data_dir: Path | None, device: str = "auto", use_gallery: bool = True,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self._thread = _BackendThread(self, data_dir, device, use_gallery)
        self._thread.finished.connect(self.stopped)

    def start(self) -> None:
        self._thread.start()

    def load_model(self, model: str, memory: str | None = None) -> Job:
        return self.submit(Job(JobKind.LOAD_MODEL, model=model, memory=memory))

    def generate(self, request: GenerationRequest, save: bool = True, sequential: bool = False,
                 preview_all: bool = False) -> Job:
        return self.submit(Job(JobKind.GENERATE, request=request, save=save, sequential=sequential,
                               preview_all=preview_all))

    def run_task(self, task: Any) -> Job:
        """Engine work other than a generation (Upscale, a comparison grid): see Job.task."""
        return self.submit(Job(JobKind.TASK, task=task))

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and join the thread; True when it ended in time."""
        self.clear_queue()
        self.cancel_current()
        self.stop_worker()
        return self._thread.wait(timeout_ms)


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
        while (job := self.backend.next_job()) is not None:
            if job.kind is JobKind.LOAD_MODEL:
                self._load(job)
            else:
                self._generate(job)
        if self.gallery is not None:
            self.gallery.close()

    def _load(self, job: Job) -> None:
        from studio.engine import Cancelled
        from studio.recipe.errors import describe

        b = self.backend
        try:
            preset = MemoryPreset(job.memory) if job.memory is not None else self.engine.memory
            changed, self.engine.memory = preset != self.engine.memory, preset
            model = self.engine.load(job.model, on_progress=b.model_loading.emit, should_stop=b.should_stop,
                                     reload=changed)
        except Cancelled:
            b.report_end(job, JobState.CANCELLED)
            return
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, the thread lives on
            job.error = describe(exc)
            b.report_end(job, JobState.FAILED)
            return
        rgb_map = self.engine.rgb_map
        job.model_info = {"ref": job.model, "name": model.entry.name, "path": str(model.entry.path),
                          "kind": model.entry.kind, "family": model.label, "memory": model.memory.describe(),
                          "device": model.device.type, "dtype": str(model.dtype).replace("torch.", ""),
                          "native_size": model.native_size, "suggested_cfg": model.suggested_cfg(),
                          "suggested_steps": model.suggested_steps(),
                          "preview_psnr": rgb_map.psnr if rgb_map is not None else None}
        b.report_end(job, JobState.FINISHED)

    def _generate(self, job: Job) -> None:
        from studio.engine import Cancelled
        from studio.recipe.errors import describe

        b = self.backend

        def on_step(info: StepInfo) -> None:
            b.report_step(job, Progress(info.step + info.item * info.total, info.total * info.items, info.elapsed,
                                        [numpy_to_qimage(p) for p in info.previews], info.region, info.item))

        try:
            if job.task is not None:
                results = job.task(self.engine, on_step, b.should_stop)
            else:
                from studio.backends.choose import backend_for

                assert job.request is not None
                backend, request = backend_for(job.request, self.engine, self.data_dir)
                results = backend.generate(request, on_step=on_step, should_stop=b.should_stop,
                                           on_notice=b.notice.emit, sequential=job.sequential,
                                           preview_all=job.preview_all, preview_interval=PREVIEW_INTERVAL)
            job.results = [self._keep(job, r) for r in results]
        except Cancelled:
            b.report_end(job, JobState.CANCELLED)
            return
        except Exception as exc:  # noqa: BLE001 - reported to the GUI; the worker keeps serving
            job.error = describe(exc)
            b.report_end(job, JobState.FAILED)
            return
        b.report_end(job, JobState.FINISHED)

    def _keep(self, job: Job, result: GenerationResult) -> GenerationResult:
        """The result, kept in the gallery when the job says so (then it knows its id and file)."""
        if job.save and self.use_gallery and self.data_dir is not None:
            if self.gallery is None:
                from studio.gallery import Gallery

                self.gallery = Gallery(self.data_dir)  # this thread's own connection
            request = job.request
            parent = request.parent_id if request is not None else result.recipe.get("parent_id")
            inputs = (request.init_image, request.mask) if request is not None else ()
            result.gallery_id = self.gallery.save(result.image, result.recipe, parent_id=parent, inputs=inputs)
            result.path = str(self.gallery.get(result.gallery_id).file)
        return result
