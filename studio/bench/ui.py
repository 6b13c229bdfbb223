"""`python -m studio.bench ui [--model builtin|PATH] [--steps 20] [--cancels 3] [--json]`

How the real window feels, run offscreen (QT_QPA_PLATFORM=offscreen unless set):

- cold start to a visible window, in fresh interpreters (timed from the first line of the program,
  and from the parent's launch, which adds the interpreter's own start), and whether torch or
  diffusers had been imported by then (they must not have been). Goal: <= 1.0 s.
- the GUI event loop's longest stall while a full generation runs: a precise QTimer probe records
  every tick; the longest gap between ticks is the stall. Goal: <= 16 ms.
- click to first preview: from `window.generation.generate()` to the first step signal that carries a preview
  reaching the GUI.
- cancel to idle: from `window.generation.cancel()` to the backend's `cancelled` signal, in seconds and in steps
  (the worker checks for a cancel once a step). Goal: within one step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from studio.bench import report

PROMPT = "a large red circle in the center, blue background"
SEED = 1234
HEAVY = ("torch", "diffusers", "transformers")

# Run in a fresh interpreter: argv[1] is an empty data folder. Prints one JSON line once the window is exposed.
COLD_START = r"""
import time
t0 = time.perf_counter()
import json, os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from pathlib import Path
from PySide6.QtWidgets import QApplication
from studio.ui import app as studio_app
qapp = QApplication([sys.argv[0]])
qapp.setApplicationName("Studio")
studio_app.apply_look(qapp)
window = studio_app.create_window(Path(sys.argv[1]))
window.show()
deadline = time.perf_counter() + 60
def shown():
    handle = window.windowHandle()
    return window.isVisible() and handle is not None and handle.isExposed()
while not shown() and time.perf_counter() < deadline:
    qapp.processEvents()
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "exposed": shown(),
                  "heavy": sorted(m for m in HEAVY_MODULES if m in sys.modules)}), flush=True)
window.close()
""".replace("HEAVY_MODULES", repr(HEAVY))


# ---------------------------------------------------------------------- pure helpers

def gaps(ticks: Sequence[float]) -> list[float]:
    """Intervals between consecutive timestamps."""
    return [b - a for a, b in zip(ticks, ticks[1:])]


def longest_gap(ticks: Sequence[float], start: float | None = None, end: float | None = None) -> float:
    """The longest interval between consecutive ticks, counting only gaps that end after `start` and
    begin before `end` (so a gap that straddles a boundary counts)."""
    found = 0.0
    for a, b in zip(ticks, ticks[1:]):
        if (start is None or b > start) and (end is None or a < end):
            found = max(found, b - a)
    return found


def gap_containing(ticks: Sequence[float], moment: float) -> float:
    """The interval between the ticks either side of `moment` (0 when no tick precedes and follows it)."""
    for a, b in zip(ticks, ticks[1:]):
        if a <= moment <= b:
            return b - a
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def seconds_per_step(steps: Sequence[tuple[int, float]]) -> float | None:
    """From (step, elapsed) pairs as the step signals report them: the pace of the denoising loop.

    The first pair's elapsed time also holds text encoding and setup, so the pace is taken between the
    first and the last signal when there are two; with one, it is elapsed / step.
    """
    if not steps:
        return None
    (s0, e0), (s1, e1) = steps[0], steps[-1]
    if s1 > s0:
        return (e1 - e0) / (s1 - s0)
    return e0 / max(s0, 1)


def cold_start(runs: int = 3, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Launch `runs` fresh interpreters that open the window; each gives seconds (in-process and from
    the launch), whether the window was exposed, and which heavy modules were imported by then."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="studio-bench-ui-") as home:
            launched = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", COLD_START, home], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=root, env=env)
            try:
                line = proc.stdout.readline() if proc.stdout else ""
                seen = time.perf_counter()
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise RuntimeError("the window did not open in a fresh interpreter (timed out)") from None
            if not line.strip():
                raise RuntimeError(f"the window did not open in a fresh interpreter: {err.strip()[-500:]}")
            figures = json.loads(line)
            figures["process_seconds"] = seen - launched
            out.append(figures)
    return out


# ---------------------------------------------------------------------- the live window

class StallProbe:
    """A precise QTimer on the GUI thread that timestamps each of its ticks."""

    def __init__(self, interval_ms: int = 5) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval_ms = interval_ms
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.ticks

    def longest(self, start: float | None = None, end: float | None = None) -> float:
        return longest_gap(self.ticks, start, end)


def run_loop(until: Callable[[], bool], timeout: float) -> bool:
    """Spin the GUI event loop (sleeping in it, as app.exec does) until `until()` or the timeout."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    check = QTimer()
    check.setInterval(2)
    check.timeout.connect(lambda: until() and loop.quit())
    deadline = QTimer()
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    check.start()
    deadline.start(int(timeout * 1000))
    if not until():
        loop.exec()
    check.stop()
    deadline.stop()
    return until()


class WindowBench:
    """The real main window with its backend and the model loaded, in a temporary data folder."""

    def __init__(self, model: str, device: str = "auto", timeout: float = 600.0) -> None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtWidgets import QApplication

        from studio.ui.app import apply_look, create_window

        existing = QApplication.instance()
        if existing is not None and not isinstance(existing, QApplication):
            raise RuntimeError("a QCoreApplication without widgets is running; the window needs a QApplication")
        self.app = existing or QApplication([sys.argv[0]])
        if existing is None:  # dressed as run_app dresses it; an application we did not make is left alone
            self.app.setApplicationName("Studio")
            apply_look(self.app)
        self.timeout = timeout
        self._home = tempfile.TemporaryDirectory(prefix="studio-bench-ui-")
        self.window = create_window(Path(self._home.name), device, model)
        self.backend = self.window.backend
        self.window.show()
        self.loaded: dict[str, Any] | None = None
        self.failed: str | None = None
        self.backend.model_loaded.connect(self._on_loaded)
        self.backend.model_failed.connect(self._on_failed)
        self.backend.start()
        self.backend.load_model(model)
        if not run_loop(lambda: self.loaded is not None or self.failed is not None, timeout) or self.failed:
            message = self.failed or "timed out"
            self.close()
            raise RuntimeError(f"the model did not load: {message}")

    def _on_loaded(self, info: dict[str, Any]) -> None:
        self.loaded = info

    def _on_failed(self, message: str) -> None:
        self.failed = message

    def set_up(self, steps: int) -> None:
        c = self.window.controls
        c.prompt.setPlainText(PROMPT)
        c.negative.setPlainText("")
        c.steps.setValue(steps)
        c.seed.set_seed(SEED)
        c.seed.lock.setChecked(True)
        c.batch.setValue(1)
        c.variation.setValue(0)
        c.set_size(None, None)  # the model's native size

    def generation(self, steps: int, probe_ms: int = 5, cancel_after: float | None = None) -> dict[str, Any]:
        """One generation from `window.generation.generate()`, with the stall probe running throughout.

        With `cancel_after` (seconds), the window's cancel is called that long after the first preview
        reached the GUI, and the run ends at the backend's `cancelled` signal.
        """
        from PySide6.QtCore import QTimer

        self.set_up(steps)
        b = self.backend
        marks: dict[str, float] = {}
        signals: list[tuple[int, float]] = []

        def on_step(_job: Any, progress: Any) -> None:
            signals.append((progress.step, progress.elapsed))
            if progress.previews and "first_preview" not in marks:
                marks["first_preview"] = time.perf_counter()
                if cancel_after is not None:
                    QTimer.singleShot(max(0, round(cancel_after * 1000)), cancel)

        def cancel() -> None:
            marks["cancel"] = time.perf_counter()
            self.window.generation.cancel()

        def on_end(*_args: Any) -> None:
            marks.setdefault("end", time.perf_counter())  # after the window's own handler has run

        def click() -> None:
            marks["click"] = time.perf_counter()
            self.window.generation.generate()

        connections = [(b.step, on_step), (b.finished, on_end), (b.cancelled, on_end), (b.failed, on_end)]
        for signal, slot in connections:
            signal.connect(slot)
        probe = StallProbe(probe_ms)
        probe.start()
        QTimer.singleShot(0, click)
        try:
            ended = run_loop(lambda: "end" in marks, self.timeout)
            if ended:  # one more tick, so the gap holding the end handler is complete
                count = len(probe.ticks)
                run_loop(lambda: len(probe.ticks) > count + 1, 1.0)
            idle = run_loop(lambda: not b.busy(), self.timeout)
        finally:
            ticks = probe.stop()
            for signal, slot in connections:
                signal.disconnect(slot)
        if not ended or not idle:
            raise RuntimeError("the generation did not end in time")
        if "click" not in marks or "first_preview" not in marks:
            raise RuntimeError("no preview reached the window")
        return {"marks": marks, "ticks": ticks, "signals": signals, "cancelled": "cancel" in marks}

    def close(self) -> None:
        self.window.close()  # saves settings, cancels and joins the backend thread
        gallery = getattr(self.window, "gallery", None)
        if gallery is not None and hasattr(gallery, "close"):
            gallery.close()
        self.window.deleteLater()
        self.app.processEvents()
        self._home.cleanup()


def measure_window(model: str, device: str = "auto", steps: int = 20, cancels: int = 3,
                   probe_ms: int = 5) -> dict[str, Any]:
    """Stall, click-to-first-preview and cancel-to-idle figures from the live window."""
    bench = WindowBench(model, device)
    try:
        bench.generation(steps, probe_ms)  # warm-up: first-run allocations, the gallery's first save
        full = bench.generation(steps, probe_ms)
        marks, ticks = full["marks"], full["ticks"]
        step = seconds_per_step(full["signals"])
        if step is None or step <= 0:
            step = (marks["end"] - marks["click"]) / steps
        first_previews = [marks["first_preview"] - marks["click"]]
        cancel_times: list[float] = []
        cancel_steps = max(steps, 50)  # long enough that the cancel lands mid-run
        for k in range(cancels):
            run = bench.generation(cancel_steps, probe_ms, cancel_after=step * k / max(cancels, 1))
            m = run["marks"]
            first_previews.append(m["first_preview"] - m["click"])
            if run["cancelled"] and "cancel" in m:
                cancel_times.append(m["end"] - m["cancel"])
        info = bench.loaded or {}
    finally:
        bench.close()
    end = marks["end"]
    figures: dict[str, Any] = {
        "model": info.get("name"),
        "device": info.get("device"),
        "steps": steps,
        "probe_interval_s": probe_ms / 1000,
        "generation_s": end - marks["click"],
        "gui_stall_max_s": longest_gap(ticks),
        "gui_stall_steps_max_s": max([b - a for a, b in zip(ticks, ticks[1:]) if b < end] or [0.0]),
        "gui_stall_finish_s": gap_containing(ticks, end),
        "gui_stall_p99_s": percentile(gaps(ticks), 99),
        "click_to_first_preview_s": statistics.median(first_previews),
        "step_s": step,
    }
    if cancel_times:
        figures.update({
            "cancel_to_idle_s": statistics.median(cancel_times),
            "cancel_to_idle_max_s": max(cancel_times),
            "cancel_to_idle_steps": statistics.median(cancel_times) / step,
            "cancel_to_idle_max_steps": max(cancel_times) / step,
        })
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench ui", description=__doc__.splitlines()[2])
    parser.add_argument("--model", default="builtin", help="'builtin' (default), a model name or a path")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--steps", type=int, default=20, help="steps of the timed generation")
    parser.add_argument("--cancels", type=int, default=3,
                        help="cancelled runs (each cancels at another phase of a step)")
    parser.add_argument("--cold-starts", type=int, default=3, help="fresh interpreters for the cold start (0: skip)")
    parser.add_argument("--probe-ms", type=int, default=5, help="the stall probe's timer interval")
    parser.add_argument("--json", action="store_true", help="one JSON object, times in seconds")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from studio.engine.models import ModelError, resolve

    try:
        resolve(args.model, Path(os.environ["STUDIO_HOME"]) if os.environ.get("STUDIO_HOME") else None)
    except ModelError as exc:
        print(f"studio.bench ui: {exc}", file=sys.stderr)
        return 2

    rows: dict[str, Any] = {}
    if args.cold_starts > 0:
        starts = cold_start(args.cold_starts)
        seconds = [s["seconds"] for s in starts]
        heavy = sorted({m for s in starts for m in s["heavy"]})
        rows.update({
            "cold_start_s": statistics.median(seconds),
            "cold_start_max_s": max(seconds),
            "cold_start_process_s": statistics.median(s["process_seconds"] for s in starts),
            "torch_imported_at_start": "torch" in heavy,
            "diffusers_imported_at_start": "diffusers" in heavy,
            "heavy_modules_at_start": ",".join(heavy) or "none",
        })
    try:
        rows.update(measure_window(args.model, args.device, args.steps, args.cancels, args.probe_ms))
    except RuntimeError as exc:
        print(f"studio.bench ui: {exc}", file=sys.stderr)
        return 1
    report(f"UI, {rows.get('model')} on {rows.get('device')}, offscreen, {args.steps} steps", rows, args.json)
    if not args.json:
        print("  goals: cold_start <= 1.0 s with no torch/diffusers imported; gui_stall_max <= 16 ms; "
              "cancel_to_idle_max_steps <= 1")
    return 0
