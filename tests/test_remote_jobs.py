"""Jobs on ComfyUI servers run side by side: two stand-in servers (tests/fake_comfy.py) hold each prompt
until the test releases it, so "the second job starts before the first ends" is seen, not timed."""

from __future__ import annotations

import threading

import pytest

from studio.recipe.request import GenerationRequest
from tests.fake_comfy import FakeComfy

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


def held_seeds(*fakes: FakeComfy) -> list[list[int]]:
    return [[p.seed for p in fake.held()] for fake in fakes]


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
