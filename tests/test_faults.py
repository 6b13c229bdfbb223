"""Faults in the middle of work: the device running out of memory inside a step, and a hundred random
cancels and window closes during loads and runs (tiny model, seeded randomness)."""

from __future__ import annotations

import random
import threading
import weakref
from pathlib import Path

import pytest
import torch
from PIL import Image

from studio.engine import GenerationRequest
from studio.engine.memory import MemoryPlan, MemoryPreset, OutOfMemory, out_of_memory_message


def _request(model: Path, **kw) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a red circle", "steps": 4, "seed": 7, "model": str(model), **kw})


class _OutOfMemoryAtStep:
    """A UNet forward that raises the device's out-of-memory error on its `at`-th call, holding a
    tensor of its own in that frame (as a real failed step holds its activations)."""

    def __init__(self, unet: torch.nn.Module, at: int) -> None:
        self.unet, self.at, self.calls = unet, at, 0
        self.real = unet.forward
        self.held: weakref.ref | None = None

    def __call__(self, *args, **kwargs):  # noqa: ANN204
        self.calls += 1
        if self.calls == self.at:
            activations = torch.ones(256, 1024)  # what the failed step had allocated
            self.held = weakref.ref(activations)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.real(*args, **kwargs)


def test_out_of_memory_inside_a_step_says_what_to_do_frees_the_memory_and_the_next_run_works(
        tiny_engine, tiny_model, monkeypatch):
    unet = tiny_engine.model.pipe.unet
    failing = _OutOfMemoryAtStep(unet, at=3)  # step 2 of 4 (the UNet runs once per step here)
    monkeypatch.setattr(unet, "forward", failing)
    with pytest.raises(OutOfMemory) as caught:
        tiny_engine.generate(_request(tiny_model, width=64, height=48))
    assert failing.calls == 3
    message = str(caught.value)
    assert "ran out of memory" in message and "64x48" in message and "smaller size" in message
    assert failing.held is not None and failing.held() is None  # the failed step's tensors are gone
    monkeypatch.setattr(unet, "forward", failing.real)
    (result,) = tiny_engine.generate(_request(tiny_model))
    assert result.image.size == (32, 32)


def test_out_of_memory_in_a_batch_falls_back_to_one_by_one_then_reports(tiny_engine, tiny_model, monkeypatch):
    """The batched pass fails, the sequential one too: the message names the batch."""
    unet = tiny_engine.model.pipe.unet
    real = unet.forward

    def always(*args, **kwargs):  # noqa: ANN202
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(unet, "forward", always)
    with pytest.raises(OutOfMemory, match="batch of 3"):
        tiny_engine.generate(_request(tiny_model, batch_size=3))
    monkeypatch.setattr(unet, "forward", real)
    assert len(tiny_engine.generate(_request(tiny_model, batch_size=3))) == 3


@pytest.mark.parametrize("preset, advice", [
    (MemoryPreset.HIGH, "choose the low memory preset (Model > Memory > Low in the window, --memory low"),
    (MemoryPreset.LOW, "choose the lowest memory preset (Model > Memory > Lowest in the window, --memory lowest"),
    (MemoryPreset.LOWEST, "even with the lowest memory preset: try a smaller size or batch"),
])
def test_on_a_gpu_the_message_suggests_the_next_lower_memory_preset(preset, advice):
    message = out_of_memory_message(MemoryPlan(preset, chosen_by_auto=True), "cuda", 1024, 1024, 1)
    assert advice in message and "1024x1024" in message


def test_the_worker_reports_out_of_memory_and_serves_the_next_job(qtbot, tiny_model, data_dir, monkeypatch):
    from studio.ui.worker import Backend

    backend = Backend(data_dir, device="cpu")
    backend.start()
    with qtbot.waitSignal(backend.model_loaded, timeout=120_000):
        backend.load_model(str(tiny_model))
    unet = backend._engine_thread.engine.model.pipe.unet
    failing = _OutOfMemoryAtStep(unet, at=2)
    monkeypatch.setattr(unet, "forward", failing)
    with qtbot.waitSignal(backend.failed, timeout=60_000) as failed:
        backend.generate(_request(tiny_model))
    assert "ran out of memory" in failed.args[0].error and "Error" not in failed.args[0].error
    monkeypatch.setattr(unet, "forward", failing.real)
    with qtbot.waitSignal(backend.finished, timeout=60_000) as finished:
        backend.generate(_request(tiny_model))
    assert Path(finished.args[0].results[0].path).is_file()
    assert backend.shutdown()


# ----------------------------------------------------------------------------------- chaos

ACTIONS = int(__import__("os").environ.get("CHAOS_ACTIONS", "100"))


class _Chaos:
    """Random work on windows (each with its own backend thread): runs, loads, cancels, closes."""

    def __init__(self, qtbot, home: Path, model: Path, seed: int) -> None:
        self.qtbot, self.home, self.model = qtbot, home, model
        self.rng = random.Random(seed)
        self.saved: dict[int, str] = {}  # what the gallery said it saved: id -> file
        self.window = None
        self.windows = 0

    def open(self) -> None:
        from studio.ui.app import create_window

        window = create_window(self.home, device="cpu", model=str(self.model))
        self.qtbot.addWidget(window)
        window.backend.finished.connect(self._finished)
        window.backend.start()
        window.models.load(str(self.model))
        self.window, self.windows = window, self.windows + 1

    def _finished(self, job) -> None:  # noqa: ANN001 - a studio.ui.jobs.Job
        for result in job.results:
            if result.gallery_id is not None:
                self.saved[result.gallery_id] = result.path

    def _idle(self) -> None:
        self.qtbot.waitUntil(lambda: not self.window.backend.busy(), timeout=60_000)

    def _cancel_at_step(self, step: int) -> None:
        backend = self.window.backend

        def maybe(_job, progress) -> None:  # noqa: ANN001
            if progress.step >= step:
                backend.cancel_running()
                backend.step.disconnect(maybe)

        backend.step.connect(maybe)

    def act_run(self) -> None:
        self.window.backend.generate(_request(self.model))
        self._idle()

    def act(self) -> str:
        kind = self.rng.choices(["run", "cancel-run", "cancel-load", "clear-queue", "close"], [3, 4, 2, 1, 2])[0]
        backend, steps = self.window.backend, self.rng.randint(2, 6)
        request = _request(self.model, steps=steps, seed=self.rng.randint(0, 2**32 - 1),
                           batch_size=self.rng.choice([1, 1, 2]))
        if kind == "run":
            backend.generate(request)
            self._idle()
        elif kind == "cancel-run":
            step = self.rng.randint(0, steps)
            if step:
                self._cancel_at_step(step)
            backend.generate(request)
            if not step:
                backend.cancel_running()  # before it even started: it runs, or is cancelled at once
            self._idle()
        elif kind == "cancel-load":
            memory = "low" if self.window.settings.get("memory") != "low" else "high"  # a change really reloads
            self.window.settings.set("memory", memory)
            self.window.models.load(str(self.model))
            if self.rng.random() < 0.5:
                backend.cancel_running()
            else:
                self.qtbot.waitSignal(backend.model_loading, timeout=60_000, raising=False).wait()
                backend.cancel_running()
            self._idle()
        elif kind == "clear-queue":
            for _ in range(3):
                backend.generate(request)
            backend.clear_queue()
            backend.cancel_running()
            self._idle()
        else:
            self._close(request)
        return kind

    def _close(self, request: GenerationRequest) -> None:
        window, backend = self.window, self.window.backend
        when = self.rng.choice(["idle", "queued", "mid-run"])
        if when != "idle":
            backend.generate(request)
        if when == "mid-run":
            self.qtbot.waitSignal(backend.step, timeout=60_000, raising=False).wait()
        with self.qtbot.waitSignal(backend.stopped, timeout=60_000):
            window.close()
        assert backend._engine_thread.isFinished()
        self.open()

    def finish(self) -> None:
        with self.qtbot.waitSignal(self.window.backend.stopped, timeout=60_000):
            self.window.close()


def _threads() -> tuple[int, int]:
    """(operating-system threads of this process, Python threads it started). A QThread that ran
    Python code stays in `threading.enumerate()` as a dummy entry after it ends (Python cannot see
    it end), so the OS's own count (Linux: /proc) is what shows a leaked thread."""
    tasks = Path("/proc/self/task")
    python = sum(not isinstance(t, threading._DummyThread) for t in threading.enumerate())
    return (len(list(tasks.iterdir())) if tasks.is_dir() else threading.active_count()), python


@pytest.mark.slow
def test_a_hundred_random_cancels_and_closes_hang_nothing_leak_nothing_lose_nothing(qtbot, tiny_model, data_dir):
    from PySide6.QtCore import QThreadPool

    from studio.gallery import Gallery
    from studio.gallery.files import TEMP_PREFIX

    pool = QThreadPool.globalInstance()
    chaos = _Chaos(qtbot, data_dir, tiny_model, seed=18)
    chaos.open()  # a first window, run and close start what lives as long as the process (torch's pools)
    chaos.act_run()
    chaos.finish()
    qtbot.waitUntil(lambda: pool.activeThreadCount() == 0, timeout=30_000)
    before = _threads()
    chaos.open()
    done = [chaos.act() for _ in range(ACTIONS)]
    chaos.finish()
    assert {"run", "cancel-run", "cancel-load", "clear-queue", "close"} <= set(done)
    assert chaos.windows > 10 and len(chaos.saved) > 20
    qtbot.waitUntil(lambda: pool.activeThreadCount() == 0, timeout=30_000)
    qtbot.waitUntil(lambda: _threads() <= before, timeout=30_000)  # the OS has reaped every thread
    with Gallery(data_dir) as gallery:
        for image_id, path in chaos.saved.items():
            record = gallery.get(image_id)
            assert str(record.file) == path
            with Image.open(path) as image:
                image.load()  # whole, not half-written
        assert gallery.count() >= len(chaos.saved)
    assert not [p for p in (data_dir / "images").rglob(f"{TEMP_PREFIX}*")]
