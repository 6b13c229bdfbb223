"""The backend thread with pytest-qt: load, generate with previews, cancel, clear the queue, shut down."""

from __future__ import annotations

import pytest

from studio.engine import GenerationRequest
from studio.ui.worker import Backend


@pytest.fixture
def backend(qtbot, tiny_model, data_dir):
    b = Backend(data_dir, device="cpu")
    b.start()
    with qtbot.waitSignal(b.model_loaded, timeout=120_000) as loaded:
        b.load_model(str(tiny_model))
    assert loaded.args[0]["native_size"] == 32 and loaded.args[0]["device"] == "cpu"
    yield b
    assert b.shutdown()


TINY = ""  # the tiny model's folder, which every request here names


@pytest.fixture(autouse=True)
def _tiny_ref(tiny_model):
    global TINY
    TINY = str(tiny_model)


def req(**kw) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a red circle", "steps": 3, "seed": 11, "model": TINY, **kw})


def test_generate_emits_steps_with_previews_then_results_saved_to_the_gallery(qtbot, backend):
    steps, started = [], []
    backend.step.connect(lambda *args: steps.append(args))
    backend.started.connect(started.append)
    with qtbot.waitSignal(backend.finished, timeout=60_000) as finished:
        job = backend.generate(req())
    assert started == [job] and finished.args[0] == job
    results = finished.args[0].results
    assert len(results) == 1 and results[0].seed == 11 and results[0].gallery_id is not None
    assert results[0].image.size == (32, 32)
    last = steps[-1][1]
    assert steps and last.step == last.total == 3  # the final step always reaches the GUI
    assert not last.previews[0].isNull() and last.previews[0].width() == 16


def test_cancel_mid_run_reports_cancelled_and_no_result(qtbot, backend):
    finished = []
    backend.finished.connect(lambda *a: finished.append(a))
    backend.step.connect(lambda *a: backend.cancel_running())
    with qtbot.waitSignal(backend.cancelled, timeout=60_000) as cancelled:
        job = backend.generate(req(steps=150, width=256, height=256))  # long enough to be cancelled
    assert cancelled.args == [job]
    qtbot.waitUntil(lambda: not backend.busy(), timeout=10_000)
    assert finished == []


def test_clear_queue_drops_waiting_jobs(qtbot, backend):
    cancelled, finished = [], []
    backend.cancelled.connect(cancelled.append)
    backend.finished.connect(finished.append)
    with qtbot.waitSignal(backend.started, timeout=60_000):
        first = backend.generate(req(steps=6))
    waiting = [backend.generate(req(seed=s)) for s in (1, 2)]
    backend.clear_queue()
    assert cancelled == waiting
    qtbot.waitUntil(lambda: not backend.busy(), timeout=60_000)
    assert finished == [first]


def test_failures_are_reported_and_the_worker_lives_on(qtbot, backend):
    from PIL import Image

    bad = req(init_image=Image.new("RGB", (32, 32)), mask=Image.new("L", (32, 32), 0))  # empty mask
    with qtbot.waitSignal(backend.failed, timeout=60_000) as failed:
        backend.generate(bad)
    assert "mask" in failed.args[0].error.lower()
    with qtbot.waitSignal(backend.model_failed, timeout=60_000) as model_failed:
        backend.load_model("/no/such/model")
    assert "no model named or at" in model_failed.args[0]
    with qtbot.waitSignal(backend.finished, timeout=60_000):
        backend.generate(req())


def test_shutdown_during_a_run_cancels_and_joins(qtbot, tiny_model, data_dir):
    b = Backend(data_dir, device="cpu")
    b.start()
    b.load_model(str(tiny_model))
    with qtbot.waitSignal(b.step, timeout=120_000):
        b.generate(req(steps=100))
    assert b.shutdown(timeout_ms=30_000)
    assert b._engine_thread.isFinished()


def test_each_job_goes_through_its_states_in_order_and_the_signals_carry_it(qtbot, backend):
    from PIL import Image

    from studio.ui.jobs import JobKind, JobState

    seen = []  # (signal, the job, its state as that signal's slot sees it)
    for name in ("started", "finished", "failed", "cancelled"):
        getattr(backend, name).connect(lambda job, name=name: seen.append((name, job, job.state)))
    backend.step.connect(lambda job, progress: seen.append(("step", job, job.state)))
    made = backend.generate(req())
    broken = backend.generate(req(init_image=Image.new("RGB", (32, 32)), mask=Image.new("L", (32, 32), 0)))
    stopped = backend.generate(req(steps=150, width=256, height=256))
    dropped = backend.generate(req(seed=3))
    assert {made.state, broken.state, stopped.state, dropped.state} == {JobState.QUEUED}
    assert made.kind is JobKind.GENERATE and backend.queued() == 4
    backend.started.connect(lambda job: job is stopped and backend.clear_queue())  # `dropped` never runs
    backend.step.connect(lambda job, progress: job is stopped and backend.cancel_running())
    with qtbot.waitSignal(backend.idle, timeout=60_000):
        pass

    def story(job):
        return [(name, state) for name, j, state in seen if j is job and name != "step"]

    assert story(made) == [("started", JobState.RUNNING), ("finished", JobState.FINISHED)]
    steps = [state for name, j, state in seen if j is made and name == "step"]
    assert steps and set(steps) == {JobState.RUNNING}
    assert len(made.results) == 1 and made.results[0].gallery_id is not None and made.error == ""
    assert story(broken) == [("started", JobState.RUNNING), ("failed", JobState.FAILED)]
    assert "mask" in broken.error.lower() and broken.results == []
    assert story(stopped) == [("started", JobState.RUNNING), ("cancelled", JobState.CANCELLED)]
    assert stopped.results == [] and stopped.started_at is not None
    assert story(dropped) == [("cancelled", JobState.CANCELLED)] and dropped.started_at is None
    assert backend.running() == [] and backend.queued() == 0
