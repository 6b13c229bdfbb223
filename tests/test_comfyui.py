"""The ComfyUI backend against real ComfyUI servers started on 127.0.0.1 (CPU), and against broken ones."""

from __future__ import annotations

import json
import ssl
import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.backends.base import ServerError
from studio.backends.comfy_client import ServerConfig
from studio.backends.pool import ServerPool
from studio.cli import main
from studio.engine.generate import Cancelled
from studio.recipe.metadata import read_recipe
from studio.recipe.request import GenerationRequest, RequestError
from tests.fake_comfy import FakeComfy, colour

MODEL = "studio-tiny-sd15"


def request(**changes) -> GenerationRequest:
    values = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 11, "model": MODEL}
    return GenerationRequest(**{**values, **changes})


def pool(*servers, in_flight: int = 1, **options) -> ServerPool:
    return ServerPool([ServerConfig(s.url, in_flight) for s in servers], **options)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def picture(size=(64, 64)) -> Image.Image:
    image = Image.new("RGB", size, (30, 90, 200))
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=(220, 40, 30))
    return image


# ---------------------------------------------------------------------- a real server
# Marked slow: starting two servers and denoising on a 2-core CPU takes minutes (CI's second step runs them).

@pytest.mark.slow
def test_batch_items_are_their_own_seed_and_match_a_single_run(comfyui_servers):
    server = comfyui_servers[0]
    seen = []
    batch = pool(server).generate(request(batch_size=2), on_step=seen.append)
    assert [r.seed for r in batch] == [11, 12]
    assert [r.image.size for r in batch] == [(64, 64)] * 2
    assert {r.recipe["backend"]["server"] for r in batch} == {server.url}
    assert batch[0].recipe["backend"]["kind"] == "comfyui"
    assert np.abs(pixels(batch[0].image) - pixels(batch[1].image)).max() > 0  # two seeds, two pictures
    alone = pool(server).generate(request(seed=12))[0]
    assert np.array_equal(pixels(alone.image), pixels(batch[1].image))
    assert {(s.item, s.total) for s in seen} >= {(0, 2), (1, 2)}
    assert any(s.preview is not None and s.preview.ndim == 3 for s in seen)  # binary preview frames arrived


@pytest.mark.slow
def test_cli_generate_on_a_server_and_regenerate_goes_back_to_it(comfyui_servers, data_dir, capsys):
    url = comfyui_servers[0].url
    assert main(["generate", "--prompt", "a cat", "--model", MODEL, "--width", "64", "--height", "64",
                 "--steps", "2", "--seed", "5", "--server", url, "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    recipe = read_recipe(first["path"])
    assert recipe["backend"] == {**recipe["backend"], "kind": "comfyui", "server": url}
    assert recipe["model"]["name"] == MODEL + ".safetensors"
    # Replaying a server's picture with no server configured says what to do rather than running locally.
    assert main(["generate", "--from", str(first["gallery_id"])]) == 1
    assert "--server URL" in capsys.readouterr().err
    assert main(["servers", "add", url]) == 0
    capsys.readouterr()
    assert main(["generate", "--from", str(first["gallery_id"]), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[0])
    assert again["backend"] == "comfyui"
    assert np.array_equal(pixels(Image.open(again["path"])), pixels(Image.open(first["path"])))


@pytest.mark.slow
def test_inpaint_only_masked_keeps_every_pixel_outside_the_mask(comfyui_servers):
    init = picture((96, 64))
    mask = Image.new("L", init.size, 0)
    ImageDraw.Draw(mask).rectangle((40, 16, 64, 40), fill=255)
    result = pool(comfyui_servers[0]).generate(request(init_image=init, mask=mask, inpaint_area="masked",
                                                       mask_feather=4, strength=1.0, width=32, height=32))[0]
    assert result.image.size == init.size
    untouched = np.asarray(canvas_reach(mask, 4)) == 0
    assert np.array_equal(pixels(result.image)[untouched], pixels(init)[untouched])
    assert np.abs(pixels(result.image) - pixels(init))[~untouched].max() > 20  # the server repainted the rest
    assert result.recipe["mode"] == "inpaint"


def canvas_reach(mask, feather):
    """Where the feathered mask reaches (every pixel it can change)."""
    from studio.engine import canvas_ops

    return canvas_ops.grow_and_feather(mask, 0, feather)


@pytest.mark.slow
def test_outpaint_and_img2img(comfyui_servers):
    server = comfyui_servers[1]
    init = picture()
    out = pool(server).generate(request(init_image=init, outpaint=(32, 0, 0, 0), outpaint_overlap=8,
                                        width=None, height=None))[0]
    assert out.image.size == (96, 64)
    assert np.array_equal(pixels(out.image)[:, 32 + 8:], pixels(init)[:, 8:])  # the old image past the overlap
    img2img = pool(server).generate(request(init_image=init, strength=0.6, width=None, height=None))[0]
    assert img2img.image.size == init.size and img2img.recipe["mode"] == "img2img"
    assert np.abs(pixels(img2img.image) - pixels(init)).mean() > 1


@pytest.mark.slow
def test_loras_by_name_and_a_missing_one_named(comfyui_servers):
    server = comfyui_servers[0]
    plain = pool(server).generate(request())[0]
    with_lora = pool(server).generate(request(prompt="a red circle <lora:studio-tiny-lora:1>"))[0]
    assert with_lora.recipe["loras"][0]["name"] == "studio-tiny-lora.safetensors"
    assert np.abs(pixels(with_lora.image) - pixels(plain.image)).max() > 0
    with pytest.raises(RequestError, match="no LoRA called 'nothere'.*studio-tiny-lora"):
        pool(server).generate(request(prompt="x <lora:nothere:1>"))


@pytest.mark.slow
def test_two_servers_share_a_batch(comfyui_servers):
    results = pool(*comfyui_servers).generate(request(batch_size=4, seed=100))
    assert [r.seed for r in results] == [100, 101, 102, 103]
    assert {r.recipe["backend"]["server"] for r in results} == {s.url for s in comfyui_servers}


@pytest.mark.slow
def test_cancel_stops_the_job_and_the_server_interrupts_it(comfyui_servers):
    from studio.backends.comfy_client import ComfyClient

    server = comfyui_servers[1]
    stop = threading.Event()
    with pytest.raises(Cancelled):
        pool(server).generate(request(steps=50, batch_size=2), on_step=lambda _s: stop.set(), should_stop=stop.is_set)
    client = ComfyClient(ServerConfig(server.url))
    running = client.get_json("/queue")["queue_running"]
    assert client.get_json("/queue")["queue_pending"] == []  # the second image was never queued
    if running:  # the interrupt lands at the server's next step: wait for it (50 steps take far longer)
        deadline = time.monotonic() + 60
        while client.history(running[0][1]) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        messages = [m[0] for m in client.history(running[0][1])["status"]["messages"]]
        assert "execution_interrupted" in messages


@pytest.mark.slow
def test_a_server_dropping_out_mid_job_moves_its_images(comfyui_servers, tmp_path):
    from studio.bench import comfyui_server as cs

    victim = cs.wait_ready(cs.start(tmp_path / "victim"))
    good = comfyui_servers[0]
    notices = []

    def kill_victim(_step):
        if victim.process.poll() is None:
            victim.process.kill()

    try:
        results = pool(victim, good).generate(request(batch_size=3, seed=40), on_step=kill_victim,
                                              on_notice=notices.append)
    finally:
        victim.stop()
    assert [r.seed for r in results] == [40, 41, 42]  # each image once, none lost
    assert {r.recipe["backend"]["server"] for r in results} == {good.url}
    assert any(victim.url in text for text in notices)


@pytest.mark.slow
def test_bench_remote_reports_throughput_and_first_preview(comfyui_servers, capsys):
    from studio.bench import remote

    argv = ["--batch", "2", "--jobs-batch", "1", "--steps", "1", "--repeats", "1", "--json"]
    assert remote.main(argv + [a for s in comfyui_servers for a in ("--server", s.url)]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("one_server_items_per_s", "two_servers_items_per_s", "two_vs_one_server", "first_preview_s",
                "two_jobs_in_turn_s", "two_jobs_side_by_side_s", "side_by_side_vs_in_turn"):
        assert rows[key] > 0, key
    assert rows["servers"] == 2 and rows["batch"] == 2


# ---------------------------------------------------------------------- no server needed

def test_variation_seeds_are_refused_before_anything_is_sent():
    with pytest.raises(RequestError, match="this computer only"):
        ServerPool([ServerConfig("127.0.0.1:9")]).generate(request(variation_seed=3, variation_strength=0.5))


def test_a_server_address_is_what_the_user_typed_or_refused():
    assert ServerConfig("gpu-box:8188/").url == "http://gpu-box:8188"
    assert ServerConfig("https://rent.example/comfy/").url == "https://rent.example/comfy"
    for bad in ("file:///etc/passwd", "ftp://host", "http://host/?x=1"):
        with pytest.raises(ServerError):
            ServerConfig(bad)


# ---------------------------------------------------------------------- broken servers

@pytest.fixture
def fake(request):
    server = FakeComfy(request.param)
    yield server
    server.close()


@pytest.mark.parametrize(("fake", "message"), [("bad_json", "not JSON"), ("error_500", "answered 500")],
                         indirect=["fake"])
def test_a_broken_server_gives_a_message(fake, message):
    with pytest.raises(ServerError, match=message):
        ServerPool([ServerConfig(fake.url)]).generate(request(model="model"))


@pytest.mark.parametrize("fake", ["silent"], indirect=True)
def test_a_websocket_that_never_finishes_times_out_and_cancels(fake):
    with pytest.raises(ServerError, match="no word from the server"):
        ServerPool([ServerConfig(fake.url)], idle_timeout=0.5).generate(request(model="model"))
    assert any(c.startswith("/interrupt") for c in fake.cancelled)


@pytest.mark.parametrize("fake", ["silent"], indirect=True)
def test_a_silent_job_is_cancellable(fake):
    stop = threading.Timer(0.3, lambda: None)
    stop.start()
    with pytest.raises(Cancelled):
        ServerPool([ServerConfig(fake.url)]).generate(request(model="model"), should_stop=lambda: not stop.is_alive())
    assert any(c.startswith("/queue") for c in fake.cancelled)


@pytest.mark.parametrize("fake", ["huge"], indirect=True)
def test_an_image_of_the_wrong_size_is_refused_before_decoding(fake, monkeypatch):
    monkeypatch.setenv("STUDIO_SERVER_TOKEN", "s3cret")
    from studio.backends import settings

    config = ServerConfig(fake.url, token=settings.token(fake.url))
    with pytest.raises(ServerError, match="8000x8000 image where 64x64"):
        ServerPool([config]).generate(request(model="model"))
    assert all(h.get("Authorization") == "Bearer s3cret" for h in fake.headers)  # every call, websocket too


@pytest.fixture
def tls_server():
    """A working stand-in behind TLS, its certificate from a CA of the test's own (trustme)."""
    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = FakeComfy("ok", tls=context)
    with ca.cert_pem.tempfile() as ca_file:
        yield server, ca_file
    server.close()


def test_tls_and_a_bearer_token_work_and_an_untrusted_certificate_is_named(tls_server, monkeypatch):
    server, ca_file = tls_server
    monkeypatch.setenv("STUDIO_SERVER_TOKEN", "s3cret")
    from studio.backends import settings

    with pytest.raises(ServerError, match="TLS certificate is not trusted .*SSL_CERT_FILE"):
        ServerPool([ServerConfig(server.url, token=settings.token(server.url))]).generate(request(model="model"))
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # how a private CA is trusted (README)
    [result] = ServerPool([ServerConfig(server.url, token=settings.token(server.url))]).generate(
        request(model="model", seed=9))
    assert server.url.startswith("https://") and result.image.getpixel((0, 0)) == colour(9)
    assert server.headers and all(h.get("Authorization") == "Bearer s3cret" for h in server.headers)


def test_the_comfyui_backend_needs_neither_qt_nor_torch():
    import subprocess
    import sys

    code = ("import sys, studio.backends.pool, studio.backends.choose, studio.backends.status;"
            "print(sorted(m for m in ('PySide6', 'torch', 'diffusers') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


@pytest.mark.slow
def test_the_gui_worker_runs_jobs_on_the_default_servers_and_keeps_them(qtbot, comfyui_servers, data_dir):
    from studio.backends import settings as server_settings
    from studio.ui.worker import Backend

    server_settings.add(data_dir, comfyui_servers[0].url, make_default=True)
    worker = Backend(data_dir, device="cpu")
    worker.start()
    steps = []
    worker.step.connect(lambda *args: steps.append(args))
    try:
        with qtbot.waitSignal(worker.finished, timeout=300_000) as finished:
            worker.generate(request(batch_size=2, seed=7))
        results = finished.args[0].results
        assert [r.seed for r in results] == [7, 8]
        assert all(r.gallery_id is not None and r.recipe["backend"]["kind"] == "comfyui" for r in results)
        assert any(progress.previews for _job, progress in steps)  # preview frames reached the GUI as QImages
        # A replay asks for its own kind of backend: "local" runs here even with the servers as default.
        with qtbot.waitSignal(worker.failed, timeout=60_000) as failed:
            worker.generate(request(backend="local"))
        assert "studio-tiny-sd15" in failed.args[0].error  # the local engine looked for the server's checkpoint
    finally:
        assert worker.shutdown()


@pytest.mark.slow
def test_two_gui_jobs_run_side_by_side_on_two_servers_and_both_land_in_the_gallery(qtbot, comfyui_servers,
                                                                                   data_dir):
    from studio.backends import settings as server_settings
    from studio.gallery import Gallery
    from studio.ui.worker import Backend

    for server in comfyui_servers:
        server_settings.add(data_dir, server.url, make_default=True)
    worker = Backend(data_dir, device="cpu")
    worker.start()
    story = []
    worker.started.connect(lambda job: story.append(("started", job)))
    worker.finished.connect(lambda job: story.append(("finished", job)))
    try:
        with qtbot.waitSignal(worker.idle, timeout=600_000):
            first, second = worker.generate(request(seed=21, steps=4)), worker.generate(request(seed=22, steps=4))
        assert story[:2] == [("started", first), ("started", second)]  # the second began before the first ended
        assert {name for name, _job in story[2:]} == {"finished"}
        gallery = Gallery(data_dir)
        try:
            assert gallery.count() == 2
            for job, seed in ((first, 21), (second, 22)):
                [result] = job.results
                kept = gallery.get(result.gallery_id)
                assert kept.recipe()["seed"] == seed and kept.recipe()["backend"]["kind"] == "comfyui"
                assert np.array_equal(pixels(Image.open(kept.file)), pixels(result.image))
            servers = {job.results[0].recipe["backend"]["server"] for job in (first, second)}
            assert servers == {s.url for s in comfyui_servers}  # one job on each server
            assert np.abs(pixels(first.results[0].image) - pixels(second.results[0].image)).max() > 0
        finally:
            gallery.close()
    finally:
        assert worker.shutdown()
