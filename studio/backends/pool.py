"""Several ComfyUI servers behind one backend: a job's images go to whichever server has room.

Each server takes at most `max_in_flight` images at once (its ComfyUI queue does the rest). A server that
drops out mid-job (refused, reset, closed) is marked down, the user is told, and its images go back on
the job's queue for the others; only one attempt at an image is ever live, and each image is kept once,
so nothing is made twice and nothing is lost. The pool is shared: jobs run from several threads at once
share the same slots, first come first served (a job's images go out before those of a job that started
after it), so the first job's pictures are done as soon as they can be. A server marked down is asked
again at the start of the next job.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from studio.backends.base import BackendKind, NoticeCallback, ServerError, ServerGone, StepCallback, StopCheck
from studio.backends.comfy_client import ComfyClient, ServerConfig
from studio.backends.comfy_run import IDLE_TIMEOUT, POLL, ServerInfo, check_request, read_server_info, run_item
from studio.engine.generate import Cancelled
from studio.recipe.request import GenerationRequest, GenerationResult, StepInfo


class JobIncomplete(ServerError):
    """Every server dropped out before the job was done; `results` holds the images that were made."""

    def __init__(self, message: str, results: list[GenerationResult]) -> None:
        super().__init__(message)
        self.results = results


@dataclass
class _Server:
    client: ComfyClient
    info: ServerInfo | None = None
    in_flight: int = 0
    down: bool = False

    @property
    def url(self) -> str:
        return self.client.url

    def has_room(self) -> bool:
        return not self.down and self.info is not None and self.in_flight < self.client.config.max_in_flight


class ServerPool:
    """The ComfyUI backend: one or more servers."""

    kind = BackendKind.COMFYUI

    def __init__(self, configs: list[ServerConfig], idle_timeout: float = IDLE_TIMEOUT) -> None:
        if not configs:
            raise ServerError("no ComfyUI server given: add one (Servers dialog, `studio servers add URL`)")
        self.servers = [_Server(ComfyClient(c)) for c in configs]
        self.idle_timeout = idle_timeout
        self._cond = threading.Condition()
        self._jobs: list[_Job] = []  # the jobs running, oldest first: who gets the next free slot

    def describe(self) -> str:
        return "ComfyUI at " + ", ".join(s.url for s in self.servers)

    def capacity(self) -> int:
        """How many images the servers not marked down run at once (at least 1: a job asks the down ones again)."""
        with self._cond:
            return max(1, sum(s.client.config.max_in_flight for s in self.servers if not s.down))

    def refresh(self, on_notice: NoticeCallback | None = None) -> list[str]:
        """Ask every server what it has (a down one too: it may be back); why each that did not answer is down."""
        say, reasons = on_notice or (lambda _text: None), []
        for server in self.servers:
            try:
                info = read_server_info(server.client)
            except ServerError as exc:
                reasons.append(str(exc))
                with self._cond:
                    server.down = True
                continue
            with self._cond:
                server.info, server.down = info, False
        if len(reasons) < len(self.servers):
            for reason in reasons:
                say(f"skipping a server: {reason}")
        return reasons

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None, on_notice: NoticeCallback | None = None,
                 **options: Any) -> list[GenerationResult]:
        request.validate()
        check_request(request)
        reasons = self.refresh(on_notice)
        if len(reasons) == len(self.servers):
            raise ServerError("; ".join(reasons))
        return _Job(self, request, on_step, should_stop, on_notice).run()


class _Job:
    """One generate() call: hands its images to servers with room until all are made."""

    def __init__(self, pool: ServerPool, request: GenerationRequest, on_step: StepCallback | None,
                 should_stop: StopCheck | None, on_notice: NoticeCallback | None) -> None:
        self.pool, self.request = pool, request
        self.count = request.batch_size
        self.pending: deque[int] = deque(range(self.count))
        self.results: dict[int, GenerationResult] = {}
        self.failure: BaseException | None = None
        self.dropped: list[str] = []  # why servers dropped out, in order
        self.stop = threading.Event()
        self._should_stop = should_stop or (lambda: False)
        self._on_step, self._notice = on_step, on_notice or (lambda _text: None)
        self._report_lock = threading.Lock()

    def stopping(self) -> bool:
        return self.stop.is_set() or self._should_stop()

    def wants_slot(self) -> bool:
        return bool(self.pending) and self.failure is None and not self.stopping()

    def run(self) -> list[GenerationResult]:
        cond, threads = self.pool._cond, list[threading.Thread]()
        with cond:
            self.pool._jobs.append(self)
        try:
            self._hand_out(threads)
        finally:
            self.stop.set()  # the loop ended: whatever is still running stops (a failure or a cancel)
            for thread in threads:
                thread.join()
            with cond:
                self.pool._jobs.remove(self)
                cond.notify_all()  # a later job may have been waiting for this one's turn
        if self.failure is not None:
            raise self.failure
        if len(self.results) < self.count:
            raise Cancelled()
        return [self.results[k] for k in range(self.count)]

    def _hand_out(self, threads: list[threading.Thread]) -> None:
        """Start each pending image on a server with room, in turn with the other jobs, until all are made."""
        cond = self.pool._cond
        while True:
            with cond:
                if self.failure is not None or len(self.results) == self.count or self.stopping():
                    break
                server = self._free_server() if self.pending and self._my_turn() else None
                if server is None:
                    if self.pending and all(s.down for s in self.pool.servers):
                        made = len(self.results)
                        self.failure = JobIncomplete(
                            f"every server dropped out ({self.dropped[-1] if self.dropped else 'no answer'}): "
                            f"{made} of {self.count} image(s) were made",
                            [self.results[k] for k in sorted(self.results)])
                        break
                    cond.wait(POLL)
                    continue
                k = self.pending.popleft()
                server.in_flight += 1
            thread = threading.Thread(target=self._work, args=(server, k), daemon=True, name=f"comfyui-{k}")
            thread.start()
            threads.append(thread)

    def _my_turn(self) -> bool:
        """No job that started before this one still wants a slot (called holding the pool's lock)."""
        for job in self.pool._jobs:
            if job is self:
                return True
            if job.wants_slot():
                return False
        return True

    def _free_server(self) -> _Server | None:
        free = [s for s in self.pool.servers if s.has_room()]
        return min(free, key=lambda s: s.in_flight / s.client.config.max_in_flight) if free else None

    def _work(self, server: _Server, k: int) -> None:
        cond = self.pool._cond
        try:
            assert server.info is not None
            result = run_item(server.client, server.info, self.request.item(k), k, self.count, self._report,
                              self.stopping, self.pool.idle_timeout)
        except ServerGone as exc:
            with cond:
                first = not server.down
                server.down = True
                self.pending.appendleft(k)
                self.dropped.append(str(exc))
            if first:
                self._notice(f"{exc}; its images go to the other servers")
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            with cond:
                self.failure = self.failure or exc
        else:
            with cond:
                self.results[k] = result
        finally:
            with cond:
                server.in_flight -= 1
                cond.notify_all()

    def _report(self, info: StepInfo) -> None:
        if self._on_step is not None:
            with self._report_lock:  # items on several servers report from several threads
                self._on_step(info)
