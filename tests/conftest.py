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
