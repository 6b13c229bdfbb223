"""Test setup shared by every test: offscreen Qt, no network, a fresh data folder."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty Studio data folder, also set as STUDIO_HOME for code that reads it."""
    d = tmp_path / "studio-home"
    d.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(d))
    return d


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Folder of a tiny random pipeline (32x32 native size), built once per test session."""
    from tests.tiny_pipeline import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model, tmp_path_factory):
    """An Engine with the tiny model loaded (shared: loading is the slow part)."""
    from studio.engine import Engine

    engine = Engine(device="cpu", data_dir=tmp_path_factory.mktemp("engine-home"))
    engine.load(str(tiny_model))
    return engine


@pytest.fixture(scope="session")
def comfyui_servers(tmp_path_factory):
    """Two real ComfyUI servers on 127.0.0.1 (CPU), shared by the whole session: their URLs and processes.

    The first use builds ComfyUI's venv and test checkpoint in ~/.cache/studio-tests/comfyui (a minute or
    two); later sessions reuse them and only start the servers (seconds)."""
    from studio.bench import comfyui_server as cs

    try:
        servers = [cs.start(tmp_path_factory.mktemp(f"comfyui-{k}")) for k in range(2)]
        servers = [cs.wait_ready(s) for s in servers]
    except cs.Unavailable as exc:
        pytest.skip(f"no test ComfyUI on this machine: {exc}")
    yield servers
    for server in servers:
        server.stop()
