"""The backend threads: the GUI talks to them with jobs and signals.

Submitted jobs are taken in order by a dispatcher thread, which sends each where it runs. Jobs for the
ComfyUI servers go to the remote lane (`remote_lane.py`): each runs on a thread of its own, side by side,
as many at once as the servers have slots. Everything else (model loads, local generations, upscales,
comparison grids) goes to the one long-lived engine thread, which owns the engine and runs them one at a
time (one model in memory). So a queued job on the servers starts while a local one runs, and the other
way round.

Each job can be cancelled (a local one stops within one denoising step, through the engine's step
callback; a remote one within a tenth of a second) and the queue can be cleared. Previews are throttled
on the worker, so a fast model never floods the GUI's event loop (progress still arrives every step).
torch and diffusers are imported on the engine thread, after the window is on screen.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtGui import QImage

from studio.engine.memory import MemoryPreset
from studio.recipe.request import GenerationRequest, GenerationResult, StepInfo
from studio.ui.jobs import Job, JobKind, JobQueue, JobState, Progress
from studio.ui.remote_lane import RemoteLane

PREVIEW_INTERVAL = 0.05  # seconds: at most ~20 previews a second are made and reach the GUI

StepReport = Callable[[StepInfo], None]
Work = Callable[[StepReport, Callable[[], bool]], list[Any]]  # (on_step, should_stop) -> results


def numpy_to_qimage(array: Any) -> QImage:
    """uint8 HxWx3 -> a QImage that owns its pixels (the array may be freed afterwards)."""
    h, w, _ = array.shape
    return QImage(array.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class Backend(JobQueue):
    """The job queue with the threads that run it: submit jobs, cancel, and receive signals (on the GUI thread)."""

    stopped = Signal()  # every thread has ended (after shutdown)
    _all_ended = Signal()  # from the thread that saw the last one end; queued on to `stopped`

    def __init__(self, data_dir: Path | None, device: str = "auto", use_gallery: bool = True,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self.use_gallery = use_gallery
        self._local: queue.Queue[tuple[Job, GenerationRequest | None] | None] = queue.Queue()
        self._engine_thread = _EngineThread(self, device)
        self._remote = RemoteLane(self, self._run_remote)
        # Daemon: it only routes jobs and holds nothing; shutdown joins it all the same.
        self._dispatcher = threading.Thread(target=self._dispatch, name="studio-dispatch", daemon=True)
        self._stop_watch: threading.Thread | None = None
        self._all_ended.connect(self.stopped, Qt.ConnectionType.QueuedConnection)

    def start(self) -> None:
        self._dispatcher.start()
        self._engine_thread.start()

    def load_model(self, model: str, memory: str | None = None) -> Job:
        return self.submit(Job(JobKind.LOAD_MODEL, model=model, memory=memory))

    def generate(self, request: GenerationRequest, save: bool = True, sequential: bool = False,
                 preview_all: bool = False) -> Job:
        return self.submit(Job(JobKind.GENERATE, request=request, save=save, sequential=sequential,
                               preview_all=preview_all))

    def run_task(self, task: Any, first_is_parent: bool = False) -> Job:
        """Engine work other than a generation (Upscale, a comparison grid): see Job.task."""
        return self.submit(Job(JobKind.TASK, task=task, first_is_parent=first_is_parent))

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and join the threads; True when they all ended in time (`stopped` follows
        either way, once they have)."""
        self.clear_queue()
        self._remote.close()
        self.cancel_running()
        self.stop_worker()
        deadline = time.monotonic() + timeout_ms / 1000
        ended = self._engine_thread.wait(max(0, int((deadline - time.monotonic()) * 1000)))
        if self._dispatcher.ident is not None:
            self._dispatcher.join(max(0.0, deadline - time.monotonic()))
            ended = ended and not self._dispatcher.is_alive()
        ended = self._remote.join(deadline) and ended
        if self._stop_watch is None and self._dispatcher.ident is not None:
            self._stop_watch = threading.Thread(target=self._watch_stop, name="studio-stop-watch", daemon=True)
            self._stop_watch.start()
        return ended

    def _watch_stop(self) -> None:
        self._engine_thread.wait()
        self._dispatcher.join()
        self._remote.join(None)
        self._all_ended.emit()

    # ------------------------------------------------------------------ the dispatcher thread

    def _dispatch(self) -> None:
        """Each submitted job, in order, to the lane it runs in; a job that cannot run anywhere fails here."""
        from studio.recipe.errors import describe

        while (job := self.next_submitted()) is not None:
            try:
                backend, request = self._route(job)
            except Exception as exc:  # noqa: BLE001 - no server list, a bad servers.json: the job says why
                if self.take(job):
                    job.error = describe(exc)
                    self.report_end(job, JobState.FAILED)
                continue
            if backend is None or request is None:
                self._local.put((job, request))
            else:
                self._remote.add(job, backend, request)
        self._local.put(None)

    def _route(self, job: Job) -> tuple[Any, GenerationRequest | None]:
        """(the server pool, the request as the servers run it) for a job on the servers; (None, request) else."""
        if job.kind is not JobKind.GENERATE or job.task is not None or job.request is None:
            return None, job.request
        from studio.backends.base import BackendKind
        from studio.backends.choose import backend_for

        backend, request = backend_for(job.request, None, self.data_dir)  # the engine only matters for local
        return (backend if backend.kind is BackendKind.COMFYUI else None), request

    # ------------------------------------------------------------------ running a job (any worker thread)

    def _run_remote(self, job: Job, pool: Any, request: GenerationRequest) -> None:
        """A job on the servers, on its own thread, with its own gallery connection."""
        keeper = Keeper(self, job)
        try:
            self.run_job(job, keeper, lambda on_step, should_stop: pool.generate(
                request, on_step=on_step, should_stop=should_stop, on_notice=self.notice.emit))
        finally:
            keeper.close()

    def run_job(self, job: Job, keeper: Keeper, work: Work) -> None:
        """Run `work` for `job`, keep its results and report how it ended."""
        from studio.backends.pool import JobIncomplete
        from studio.engine import Cancelled
        from studio.recipe.errors import describe

        def on_step(info: StepInfo) -> None:
            self.report_step(job, Progress(info.step + info.item * info.total, info.total * info.items,
                                           info.elapsed, [numpy_to_qimage(p) for p in info.previews],
                                           info.region, info.item))

        try:
            job.results = [keeper.keep(r) for r in work(on_step, job.should_stop)]
        except Cancelled:
            self.report_end(job, JobState.CANCELLED)
            return
        except Exception as exc:  # noqa: BLE001 - reported to the GUI; the worker keeps serving
            job.error = describe(exc)
            if isinstance(exc, JobIncomplete):  # every server dropped out: what they made is kept all the same
                try:
                    job.results = [keeper.keep(r) for r in exc.results]
                except Exception as keep_failed:  # noqa: BLE001
                    job.error += f"; the images made could not be kept either: {describe(keep_failed)}"
            self.report_end(job, JobState.FAILED)
            return
        self.report_end(job, JobState.FINISHED)


class Keeper:
    """Keeps a job's results in the gallery, through a connection of the calling thread's own (sqlite)."""

    def __init__(self, backend: Backend, job: Job | None = None) -> None:
        self.backend = backend
        self.gallery: Any = None
        self.begin(job)

    def begin(self, job: Job | None) -> None:
        """The job whose results come next (the engine thread keeps one keeper for every job it runs)."""
        self.job = job
        self.first_id: int | None = None  # its first result kept (the parent of the rest, when the job says so)

    def keep(self, result: GenerationResult) -> GenerationResult:
        """The result, kept in the gallery when the job says so (then it knows its id and file)."""
        job, b = self.job, self.backend
        if job is None or not (job.save and b.use_gallery and b.data_dir is not None):
            return result
        if self.gallery is None:
            from studio.gallery import Gallery

            self.gallery = Gallery(b.data_dir)
        request = job.request
        parent = request.parent_id if request is not None else result.recipe.get("parent_id")
        if job.first_is_parent and self.first_id is not None:
            parent = self.first_id
        inputs = (request.init_image, request.mask) if request is not None else ()
        result.gallery_id = self.gallery.save(result.image, result.recipe, parent_id=parent, inputs=inputs)
        self.first_id = result.gallery_id if self.first_id is None else self.first_id
        result.path = str(self.gallery.get(result.gallery_id).file)
        return result

    def close(self) -> None:
        if self.gallery is not None:
            self.gallery.close()
            self.gallery = None


class _EngineThread(QThread):
    """Owns the engine: runs the local jobs, one at a time, in the order they were submitted."""

    def __init__(self, backend: Backend, device: str) -> None:
        super().__init__()
        self.backend = backend
        self.device = device
        self.engine: Any = None

    def run(self) -> None:
        from studio.engine import Engine

        b = self.backend
        self.engine = Engine(device=self.device, data_dir=b.data_dir)
        keeper = Keeper(b)  # one gallery connection for the thread's life
        try:
            while (item := b._local.get()) is not None:
                job, request = item
                if not b.take(job):
                    continue  # cleared while it waited
                keeper.begin(job)
                if job.kind is JobKind.LOAD_MODEL:
                    self._load(job)
                else:
                    b.run_job(job, keeper, self._work(job, request))
        finally:
            keeper.close()

    def _work(self, job: Job, request: GenerationRequest | None) -> Work:
        if job.task is not None:
            task = job.task
            return lambda on_step, should_stop: task(self.engine, on_step, should_stop)
        from studio.backends.local import LocalBackend

        assert request is not None
        local = LocalBackend(self.engine)
        return lambda on_step, should_stop: local.generate(
            request, on_step=on_step, should_stop=should_stop, on_notice=self.backend.notice.emit,
            sequential=job.sequential, preview_all=job.preview_all, preview_interval=PREVIEW_INTERVAL)

    def _load(self, job: Job) -> None:
        from studio.engine import Cancelled
        from studio.recipe.errors import describe

        b = self.backend
        try:
            preset = MemoryPreset(job.memory) if job.memory is not None else self.engine.memory
            changed, self.engine.memory = preset != self.engine.memory, preset
            model = self.engine.load(job.model, on_progress=b.model_loading.emit, should_stop=job.should_stop,
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
