"""Jobs on the ComfyUI servers, side by side: each on a thread of its own, as many at once as the servers
have slots (the sum of their images in flight); the rest wait, in order, still queued (Clear queue drops
them). Inside a running job the server pool hands out its images, first come first served, so two jobs on
two free servers run at the same time and a job never waits behind another for a server that is idle.
No Qt here: the jobs report through the job queue, whose signals are queued to the GUI thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from studio.recipe.request import GenerationRequest

if TYPE_CHECKING:
    from studio.ui.jobs import Job, JobQueue

RunRemote = Callable[["Job", Any, GenerationRequest], None]  # (job, its server pool, its request): runs it


class RemoteLane:
    """Starts each waiting job on its own thread once its servers have a slot for it."""

    def __init__(self, jobs: JobQueue, run: RunRemote) -> None:
        self._jobs, self._run = jobs, run
        self._lock = threading.Lock()
        self._waiting: deque[tuple[Job, Any, GenerationRequest]] = deque()
        self._running: dict[threading.Thread, Any] = {}  # each job's thread: its pool
        self._threads: list[threading.Thread] = []  # every thread started and not yet joined
        self._closed = False

    def add(self, job: Job, pool: Any, request: GenerationRequest) -> None:
        with self._lock:
            self._waiting.append((job, pool, request))
        self._start_ready()

    def _start_ready(self) -> None:
        """Start waiting jobs, oldest first, while the first one's servers have room for another job."""
        with self._lock:
            while self._waiting and not self._closed:
                job, pool, request = self._waiting[0]
                if sum(p is pool for p in self._running.values()) >= pool.capacity():
                    return
                self._waiting.popleft()
                if not self._jobs.take(job):
                    continue  # cleared or cancelled while it waited
                thread = threading.Thread(target=self._thread, args=(job, pool, request),
                                          name=f"studio-remote-{job.id}")
                self._running[thread] = pool
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
                thread.start()

    def _thread(self, job: Job, pool: Any, request: GenerationRequest) -> None:
        try:
            self._run(job, pool, request)
        finally:
            with self._lock:
                del self._running[threading.current_thread()]
            self._start_ready()  # its slot is free: the next job may go

    def close(self) -> None:
        """No job starts any more (the caller clears the queue and cancels the running ones)."""
        with self._lock:
            self._closed = True
            self._waiting.clear()

    def join(self, deadline: float | None) -> bool:
        """Wait for every job thread to end, until `deadline` (time.monotonic(); None: for good); True if all did."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)
