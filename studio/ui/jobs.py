"""The backend's jobs as the GUI sees them: what each is, what it is for, where it stands, what it made.

One `Job` record carries a unit of work from submission to its end, as krita-ai-diffusion's `JobQueue`
does: its kind, its request, what the window wants done with it (grid or canvas, the tiles' seeds and
labels, the fields to put back afterwards), its state and its results. `JobQueue` holds the jobs and
announces each change of state with a signal that carries the job itself.

Several jobs can run at once (jobs on ComfyUI servers run side by side, beside the one local job), so
each job has its own cancel flag: `cancel(job)` stops one, `cancel_running()` every running one (the
window's Cancel, as krita-ai-diffusion's "cancel active"), `clear_queue()` drops those still waiting.

States change on the GUI thread only, in the order the worker threads reported them: a worker thread
takes a job with `take()` and reports with `report_step()` / `report_end()`, which reach the queue as
queued signals. A slot therefore always sees `job.state` as the signal it handles describes it, and one
job's signals arrive in the order its thread sent them.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage

from studio.recipe.request import GenerationRequest, GenerationResult, StepInfo


class JobKind(Enum):
    GENERATE = "generate"
    LOAD_MODEL = "load model"
    TASK = "task"  # any other engine work that makes pictures (Upscale, comparison grids)


class JobState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Target(Enum):
    """Where a generation's previews and results show."""

    CANVAS = "canvas"  # an inpaint or image-to-image of the picture on the canvas, over the region it repaints
    GRID = "grid"  # text-to-image and batches: a tile per picture


@dataclass(eq=False)  # a job is itself, not its fields: the queue finds it by identity
class Job:
    """One unit of work for the backend, from submission to its end."""

    kind: JobKind
    request: GenerationRequest | None = None
    model: str = ""  # LOAD_MODEL: the model as asked for (a name, a path, "builtin")
    memory: str | None = None  # the memory preset to load under (a change reloads even the current model)
    save: bool = True
    sequential: bool = False
    preview_all: bool = False  # a preview for every batch item (the variation grid)
    # TASK: task(engine, on_step, should_stop) -> results, run on the worker; each result is saved with the
    # parent its recipe names, or, with `first_is_parent`, as made from the first result (a comparison grid's
    # cells from the grid image, as `studio grid` keeps them).
    task: Callable[[Any, Callable[[StepInfo], None], Callable[[], bool]], list[Any]] | None = None
    first_is_parent: bool = False
    # What the window wants done with it
    target: Target = Target.CANVAS
    seeds: list[int] = field(default_factory=list)  # each picture's seed, and its tile label
    labels: list[str] = field(default_factory=list)
    aspect: float = 1.0  # width / height of the pictures: the grid sizes its tiles before any preview
    restore: list[tuple[Any, float, float]] = field(default_factory=list)  # (widget, value before, value set)
    # Where it stands and what it made
    state: JobState = JobState.QUEUED
    started_at: float | None = None  # time.perf_counter() when it began running
    results: list[GenerationResult] = field(default_factory=list)
    error: str = ""  # FAILED: what went wrong, in words for the user
    model_info: dict[str, Any] = field(default_factory=dict)  # LOAD_MODEL, FINISHED: what loaded
    id: int = field(default_factory=itertools.count(1).__next__)
    # Set (from any thread) to cancel it: the thread running it checks between steps.
    stop_requested: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def ended(self) -> bool:
        return self.state in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)

    def should_stop(self) -> bool:
        return self.stop_requested.is_set()


@dataclass(frozen=True)
class Progress:
    """One step of a running job, over the whole batch: previews are QImages made on the worker thread."""

    step: int
    total: int
    elapsed: float
    previews: list[QImage] = field(default_factory=list)
    region: tuple[int, int, int, int] | None = None  # where on the input image the previews belong
    item: int = 0  # the batch item previews[0] belongs to (a run one item at a time reports each its own)


class JobQueue(QObject):
    """The jobs: submit, cancel one or every running one, clear the queued ones; signals carry the job."""

    started = Signal(Job)
    step = Signal(Job, Progress)
    finished = Signal(Job)  # job.results holds the pictures (with their gallery ids once kept)
    failed = Signal(Job)  # job.error says why (job.results: what was made and kept before it failed)
    cancelled = Signal(Job)
    queue_changed = Signal(int, int)  # jobs running, jobs waiting
    idle = Signal()  # every job has ended
    # A LOAD_MODEL job's progress and outcome, for what only cares about the model.
    model_loading = Signal(str)
    model_loaded = Signal(dict)  # ref (as asked for), name, path, device, dtype, native_size, suggested_cfg, …
    model_failed = Signal(str)
    notice = Signal(str)  # something to tell the user that is not a failure (a server dropped out)
    # From the worker threads; queued to the GUI thread, where the state changes.
    _began = Signal(Job)
    _stepped = Signal(Job, Progress)
    _ended = Signal(Job, object)  # the job, its JobState

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._work: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()  # guards _pending and _taken, which worker threads change too
        self._pending: list[Job] = []  # submitted, not yet taken by a worker thread
        self._taken: list[Job] = []  # taken by a worker thread, its end not yet reported
        self._active: list[Job] = []  # GUI side: queued or running
        self._running: list[Job] = []  # GUI side: running, in the order they started
        queued = Qt.ConnectionType.QueuedConnection
        self._began.connect(self._on_began, queued)
        self._stepped.connect(self._on_stepped, queued)
        self._ended.connect(self._end, queued)

    # ------------------------------------------------------------------ GUI thread

    def submit(self, job: Job) -> Job:
        with self._lock:
            self._pending.append(job)
        self._active.append(job)
        self._work.put(job)
        self._counts_changed()
        return job

    def queued(self) -> int:
        return sum(job.state is JobState.QUEUED for job in self._active)

    def running(self) -> list[Job]:
        """The running jobs, in the order they started."""
        return list(self._running)

    def busy(self) -> bool:
        return bool(self._active)

    def cancel(self, job: Job) -> None:
        """Cancel one job: a waiting one leaves the queue at once, a running one stops at its next step."""
        with self._lock:
            waiting = job in self._pending
            if waiting:
                self._pending.remove(job)
        if waiting:
            self._end(job, JobState.CANCELLED)
            self._counts_changed()
        elif not job.ended:
            job.stop_requested.set()

    def cancel_running(self) -> None:
        """Every job a worker thread has taken stops at its next step (the queued ones stay)."""
        with self._lock:
            for job in self._taken:
                job.stop_requested.set()

    def clear_queue(self) -> None:
        with self._lock:
            dropped, self._pending = self._pending, []
        for job in dropped:
            self._end(job, JobState.CANCELLED)
        self._counts_changed()

    def _counts_changed(self) -> None:
        self.queue_changed.emit(len(self._running), self.queued())

    def _on_began(self, job: Job) -> None:
        job.state, job.started_at = JobState.RUNNING, time.perf_counter()
        self._running.append(job)
        self._counts_changed()
        self.started.emit(job)

    def _on_stepped(self, job: Job, progress: Progress) -> None:
        if job.state is JobState.RUNNING:
            self.step.emit(job, progress)

    def _end(self, job: Job, state: JobState) -> None:
        was_running, job.state = job.state is JobState.RUNNING, state
        self._active.remove(job)
        if was_running:
            self._running.remove(job)
            self._counts_changed()
        {JobState.FINISHED: self.finished, JobState.FAILED: self.failed,
         JobState.CANCELLED: self.cancelled}[state].emit(job)
        if job.kind is JobKind.LOAD_MODEL and state is JobState.FINISHED:
            self.model_loaded.emit(job.model_info)
        elif job.kind is JobKind.LOAD_MODEL and was_running:  # a load cleared from the queue never began
            self.model_failed.emit(job.error or "model load cancelled")
        if not self._active:
            self.idle.emit()

    # ------------------------------------------------------------------ worker threads

    def next_submitted(self) -> Job | None:
        """The next job submitted (blocking), in order, even one cleared since (take() says so); None: stop."""
        return self._work.get()

    def take(self, job: Job) -> bool:
        """Start running `job` on the calling thread; False when it was cleared or cancelled while it waited."""
        with self._lock:
            if job not in self._pending:
                return False
            self._pending.remove(job)
            self._taken.append(job)
        self._began.emit(job)
        return True

    def report_step(self, job: Job, progress: Progress) -> None:
        self._stepped.emit(job, progress)

    def report_end(self, job: Job, state: JobState) -> None:
        """The job ended: fill job.results, job.error or job.model_info first."""
        with self._lock:
            self._taken.remove(job)
        self._ended.emit(job, state)

    def stop_worker(self) -> None:
        """The workers end after the jobs they run (queued jobs are cleared first by the caller)."""
        self._work.put(None)
