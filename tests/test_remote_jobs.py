"""Jobs on ComfyUI servers run side by side: two stand-in servers (tests/fake_comfy.py) hold each prompt
until the test releases it, so "the second job starts before the first ends" is seen, not timed."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from studio.backends import settings as server_settings
from studio.recipe.request import GenerationRequest
from studio.ui.jobs import JobState
from studio.ui.worker import Backend
from tests.fake_comfy import FakeComfy, colour

WAIT = 20_000  # ms: generous bounds for a loaded 2-core machine; nothing here waits on a clock


def request(seed: int, batch: int = 1) -> GenerationRequest:
    return GenerationRequest("a red circle", steps=2, width=64, height=64, seed=seed, batch_size=batch,
                             model="model.safetensors")


@pytest.fixture
def servers():
    fakes = [FakeComfy("ok", hold=True) for _ in range(2)]
    yield fakes
    for fake in fakes:
        fake.release()
        fake.close()


@pytest.fixture
def make_backend(qtbot, data_dir):
    made = []

    def make(*fakes: FakeComfy) -> Backend:
        for fake in fakes:
            server_settings.add(data_dir, fake.url, make_default=True)
        backend = Backend(data_dir, device="cpu")
        backend.start()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        assert backend.shutdown()


def held_seeds(*fakes: FakeComfy) -> list[list[int]]:
    return [[p.seed for p in fake.held()] for fake in fakes]


def record(backend: Backend) -> list[tuple[str, int]]:
    """(signal, job id) as each start and end reaches the GUI thread."""
    seen: list[tuple[str, int]] = []
    for name in ("started", "finished", "failed", "cancelled"):
        getattr(backend, name).connect(lambda job, name=name: seen.append((name, job.id)))
    return seen


def solid(image, rgb) -> bool:
    return bool((np.asarray(image.convert("RGB")) == rgb).all())


def test_two_queued_jobs_run_at_once_on_two_servers_and_each_keeps_its_own_picture(qtbot, make_backend,
                                                                                   servers, data_dir):
    backend = make_backend(*servers)
    seen = record(backend)
    first, second = backend.generate(request(1)), backend.generate(request(2))
    qtbot.waitUntil(lambda: sorted(sum(held_seeds(*servers), [])) == [1, 2], timeout=WAIT)
    qtbot.waitUntil(lambda: backend.running() == [first, second], timeout=WAIT)
    assert seen == [("started", first.id), ("started", second.id)]  # the second began before the first ended
    with qtbot.waitSignal(backend.idle, timeout=WAIT):
        for fake in servers:
            fake.release()
    assert seen[2:] in ([("finished", first.id), ("finished", second.id)],
                        [("finished", second.id), ("finished", first.id)])
    from studio.gallery import Gallery

    gallery = Gallery(data_dir)
    for job, seed in ((first, 1), (second, 2)):
        [result] = job.results
        assert result.seed == seed and solid(result.image, colour(seed))
        kept = gallery.get(result.gallery_id)
        assert kept.recipe()["seed"] == seed and solid(Image.open(kept.file), colour(seed))
    assert {first.results[0].recipe["backend"]["server"], second.results[0].recipe["backend"]["server"]} == \
        {fake.url for fake in servers}
    assert gallery.count() == 2  # each picture kept once
    gallery.close()


def test_a_local_job_queued_behind_runs_at_once_and_alone_on_the_engine_thread(qtbot, make_backend, servers):
    backend = make_backend(*servers)
    seen = record(backend)
    engines, go_on = [], threading.Event()

    def local_task(engine, on_step, should_stop):
        engines.append(engine)
        go_on.wait(WAIT / 1000)
        return []

    remote = [backend.generate(request(seed)) for seed in (1, 2)]
    local = [backend.run_task(local_task), backend.run_task(local_task)]
    qtbot.waitUntil(lambda: sorted(sum(held_seeds(*servers), [])) == [1, 2], timeout=WAIT)
    # Both servers are busy, and the first local job runs beside them rather than waiting behind them ...
    qtbot.waitUntil(lambda: local[0].state is JobState.RUNNING, timeout=WAIT)
    assert [job.state for job in remote] == [JobState.RUNNING] * 2
    # ... alone: the second local job waits for the first (one model in memory).
    assert local[1].state is JobState.QUEUED and len(engines) == 1
    assert engines[0] is backend._engine_thread.engine
    with qtbot.waitSignal(backend.finished, timeout=WAIT, check_params_cb=lambda job: job is local[1]):
        go_on.set()
    local_story = [event for event in seen if event[1] in (local[0].id, local[1].id)]
    assert local_story == [("started", local[0].id), ("finished", local[0].id),
                           ("started", local[1].id), ("finished", local[1].id)]
    assert [job.state for job in remote] == [JobState.RUNNING] * 2  # still on the servers
    with qtbot.waitSignal(backend.idle, timeout=WAIT):
        for fake in servers:
            fake.release()
    assert [job.state for job in remote] == [JobState.FINISHED] * 2


def test_cancelling_one_running_remote_job_leaves_the_other_to_finish(qtbot, make_backend, servers, data_dir):
    backend = make_backend(*servers)
    seen = record(backend)
    stopped, kept = backend.generate(request(1)), backend.generate(request(2))
    qtbot.waitUntil(lambda: sorted(sum(held_seeds(*servers), [])) == [1, 2], timeout=WAIT)
    qtbot.waitUntil(lambda: len(backend.running()) == 2, timeout=WAIT)
    with qtbot.waitSignal(backend.cancelled, timeout=WAIT):
        backend.cancel(stopped)
    [server] = [fake for fake in servers if [p.seed for p in fake.prompts] == [1]]
    assert any(call.startswith("/interrupt") for call in server.cancelled)  # the server was told to stop it
    assert backend.running() == [kept] and kept.state is JobState.RUNNING
    with qtbot.waitSignal(backend.idle, timeout=WAIT):
        for fake in servers:
            fake.release()
    assert seen[2:] == [("cancelled", stopped.id), ("finished", kept.id)]  # both outcomes reported
    assert stopped.results == [] and [r.seed for r in kept.results] == [2]
    from studio.gallery import Gallery

    gallery = Gallery(data_dir)
    assert gallery.count() == 1 and gallery.get(kept.results[0].gallery_id).recipe()["seed"] == 2
    gallery.close()


def test_jobs_beyond_the_servers_slots_wait_queued_and_clear_queue_drops_them(qtbot, make_backend, servers):
    backend = make_backend(*servers)
    counts = []
    backend.queue_changed.connect(lambda running, waiting: counts.append((running, waiting)))
    jobs = [backend.generate(request(seed)) for seed in (1, 2, 3, 4)]
    qtbot.waitUntil(lambda: sorted(sum(held_seeds(*servers), [])) == [1, 2], timeout=WAIT)
    qtbot.waitUntil(lambda: len(backend.running()) == 2, timeout=WAIT)
    assert [job.state for job in jobs[2:]] == [JobState.QUEUED] * 2 and counts[-1] == (2, 2)
    # A freed slot goes to the next job in the queue.
    for fake in servers:
        fake.release(seed=1)
    qtbot.waitUntil(lambda: jobs[0].state is JobState.FINISHED and jobs[2].state is JobState.RUNNING, timeout=WAIT)
    qtbot.waitUntil(lambda: 3 in sum(held_seeds(*servers), []), timeout=WAIT)
    assert jobs[3].state is JobState.QUEUED
    with qtbot.waitSignal(backend.cancelled, timeout=WAIT) as dropped:
        backend.clear_queue()
    assert dropped.args == [jobs[3]] and jobs[3].started_at is None
    with qtbot.waitSignal(backend.idle, timeout=WAIT):
        for fake in servers:
            fake.release()
    assert [job.state for job in jobs] == [JobState.FINISHED] * 3 + [JobState.CANCELLED]
    assert 4 not in [p.seed for fake in servers for p in fake.prompts]  # it never reached a server
    assert counts[-1] == (0, 0)


def test_shutdown_while_two_remote_jobs_run_cancels_both_and_joins_every_thread(qtbot, data_dir, servers):
    for fake in servers:
        server_settings.add(data_dir, fake.url, make_default=True)
    backend = Backend(data_dir, device="cpu")
    backend.start()
    cancelled = []
    backend.cancelled.connect(cancelled.append)
    jobs = [backend.generate(request(seed)) for seed in (1, 2)]
    qtbot.waitUntil(lambda: sorted(sum(held_seeds(*servers), [])) == [1, 2], timeout=WAIT)
    with qtbot.waitSignal(backend.stopped, timeout=WAIT):
        assert backend.shutdown(timeout_ms=WAIT)
    qtbot.waitUntil(lambda: not backend.busy(), timeout=WAIT)
    assert sorted(cancelled, key=lambda job: job.id) == jobs
    assert all(any(c.startswith("/interrupt") for c in fake.cancelled) for fake in servers)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("studio-remote", "studio-dispatch"))]
    assert backend._engine_thread.isFinished()


def test_images_made_before_every_server_dropped_out_are_kept(qtbot, make_backend, servers, data_dir):
    server = servers[0]
    backend = make_backend(server)
    notices = []
    backend.notice.connect(notices.append)
    job = backend.generate(request(5, batch=2))
    qtbot.waitUntil(lambda: held_seeds(server) == [[5]], timeout=WAIT)
    server.release(seed=5)
    qtbot.waitUntil(lambda: held_seeds(server) == [[6]], timeout=WAIT)
    with qtbot.waitSignal(backend.failed, timeout=WAIT):
        server.close()  # gone mid-job, with no other server to take the second image
    assert "1 of 2 image(s) were made" in job.error
    [made] = job.results
    from studio.gallery import Gallery

    gallery = Gallery(data_dir)
    assert made.seed == 5 and gallery.get(made.gallery_id).recipe()["seed"] == 5 and gallery.count() == 1
    gallery.close()
    assert any(server.url in text for text in notices)


def test_the_server_pool_serves_jobs_first_come_first_served(qtbot, servers):
    from studio.backends.comfy_client import ServerConfig
    from studio.backends.pool import ServerPool

    server = servers[0]
    pool = ServerPool([ServerConfig(server.url)])  # one image at a time
    made: dict[int, list[int]] = {}

    def run(job: GenerationRequest, asking: threading.Event) -> None:
        made[job.seed] = [r.seed for r in pool.generate(job, should_stop=lambda: asking.set() or False)]

    threads = []
    for job in (request(1, batch=3), request(10), request(20)):  # each waits in the pool before the next
        asking = threading.Event()
        threads.append(threading.Thread(target=run, args=(job, asking)))
        threads[-1].start()
        qtbot.waitUntil(asking.is_set, timeout=WAIT)
    for seed in (1, 2):  # each freed slot goes to the first job while it has images left
        qtbot.waitUntil(lambda: len(server.held()) == 1, timeout=WAIT)
        assert held_seeds(server) == [[seed]]
        server.release(seed=seed)
    qtbot.waitUntil(lambda: len(server.held()) == 1, timeout=WAIT)
    assert held_seeds(server) == [[3]]
    server.hold = False  # the rest go through
    server.release()
    for thread in threads:
        thread.join(WAIT / 1000)
    assert made == {1: [1, 2, 3], 10: [10], 20: [20]}


# ---------------------------------------------------------------------- in the window

@pytest.fixture
def window(qtbot, data_dir, servers):
    from studio.gallery import Gallery
    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings

    for fake in servers:
        server_settings.add(data_dir, fake.url, make_default=True)
    configured = server_settings.load(data_dir)
    configured.model = "model.safetensors"
    server_settings.save(data_dir, configured)
    w = MainWindow(Backend(data_dir, device="cpu"), Settings(data_dir / "settings.ini"), Gallery(data_dir))
    qtbot.addWidget(w)
    w.show()
    w.backend.start()
    w.controls.set_size(64, 64)
    w.controls.steps.setValue(2)
    w.controls.seed.lock.setChecked(True)
    yield w
    for fake in servers:
        fake.release()
    w.close()


def pixel(image, x=0, y=0) -> tuple[int, int, int]:
    c = image.pixelColor(x, y)
    return c.red(), c.green(), c.blue()


def test_the_window_shows_each_running_job_in_its_own_tiles_and_cancel_stops_every_running_one(qtbot, window,
                                                                                                 servers):
    w = window
    jobs = []
    for seed in (10, 20, 30):
        w.controls.seed.set_seed(seed)
        jobs.append(w.generation.generate_batch(1))
    qtbot.waitUntil(lambda: sorted(sum(held_seeds(*servers), [])) == [10, 20], timeout=WAIT)
    # Each job's preview frame (its seed's colour) is in its own tile.
    qtbot.waitUntil(lambda: w.grid.count() == 2 and all(w.grid.image(k) is not None for k in (0, 1)), timeout=WAIT)
    assert [pixel(w.grid.image(k)) for k in (0, 1)] == [colour(10), colour(20)]
    assert w.queue_label.text() == "2 running · 1 queued"
    assert w.progress.format().startswith("2 jobs · step 2/4")
    # The first one finishes: its tile shows its picture, the grid stays in view for the one still running,
    # and the queued job takes the free server with a tile of its own.
    for fake in servers:
        fake.release(seed=10)
    qtbot.waitUntil(lambda: jobs[2].state is JobState.RUNNING and w.grid.count() == 3, timeout=WAIT)
    assert jobs[0].state is JobState.FINISHED and w.grid.label(0) == "seed 10"
    assert w.grid.image(0).width() == 64 and pixel(w.grid.image(0), 40, 40) == colour(10)
    assert w.center.currentWidget() is w.grid and w.grid.label(1).endswith("…")
    qtbot.waitUntil(lambda: w.grid.image(2) is not None, timeout=WAIT)
    assert pixel(w.grid.image(2)) == colour(30)
    # Cancel (the button, as krita-ai-diffusion's "cancel active") stops every running job.
    qtbot.mouseClick(w.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.backend.busy(), timeout=WAIT)
    assert [job.state for job in jobs] == [JobState.FINISHED, JobState.CANCELLED, JobState.CANCELLED]
    assert [w.grid.label(k) for k in (1, 2)] == ["seed 20 · cancelled", "seed 30 · cancelled"]
    assert pixel(w.grid.image(1)) == colour(20)  # the last preview stays
    assert w.progress.format() == "Cancelled" and w.queue_label.text() == ""


def test_tiles_a_job_adds_beside_another_fit_pictures_of_another_shape_without_stretching(qtbot):
    from PySide6.QtGui import QColor, QImage

    from studio.ui.variations import VariationGrid

    grid = VariationGrid()
    qtbot.addWidget(grid)
    grid.resize(400, 400)
    grid.start([1], ["seed 1"], aspect=1.0)  # a square job runs ...
    first = grid.add([2], ["seed 2"])  # ... and a wide one starts beside it
    wide = QImage(64, 32, QImage.Format.Format_RGB888)
    wide.fill(QColor(250, 0, 0))
    grid.set_previews([wide], first)
    shot = grid.grab().toImage()
    tile = grid.tile_rect(first)
    centre, top = tile.center(), tile.top() + tile.height() / 8
    assert pixel(shot, int(centre.x()), int(centre.y())) == (250, 0, 0)
    assert pixel(shot, int(centre.x()), int(top)) != (250, 0, 0)  # letterboxed, not stretched to the square
    assert grid.label(first) == "seed 2 …" and grid.image(0) is None


def test_a_right_click_on_a_running_jobs_tile_cancels_that_job_alone(qtbot, window, servers):
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtWidgets import QApplication

    w = window
    jobs = []
    for seed in (10, 20):
        w.controls.seed.set_seed(seed)
        jobs.append(w.generation.generate_batch(1))
    qtbot.waitUntil(lambda: sorted(sum(held_seeds(*servers), [])) == [10, 20], timeout=WAIT)
    qtbot.waitUntil(lambda: w.grid.count() == 2, timeout=WAIT)
    chosen = []

    def pick_cancel() -> None:  # the menu is open (its exec() runs its own loop): take its entry
        menu = QApplication.activePopupWidget()
        chosen.append(menu.actions()[0].text())
        menu.actions()[0].trigger()
        menu.close()

    QTimer.singleShot(100, pick_cancel)
    # The event a right-click makes (the offscreen platform makes none from a synthetic press).
    QApplication.sendEvent(w.grid, QContextMenuEvent(QContextMenuEvent.Reason.Mouse,
                                                      w.grid.tile_rect(1).center().toPoint()))
    qtbot.waitUntil(lambda: jobs[1].state is JobState.CANCELLED, timeout=WAIT)
    assert chosen == ["Cancel this job (seed 20)"] and jobs[0].state is JobState.RUNNING
    assert w.grid.label(1) == "seed 20 · cancelled"
    for fake in servers:
        fake.release(seed=10)
    qtbot.waitUntil(lambda: jobs[0].state is JobState.FINISHED, timeout=WAIT)
    assert w.grid.label(0) == "seed 10"
