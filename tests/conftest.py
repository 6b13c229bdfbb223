"""Test setup shared by every test: offscreen Qt, no network, a fresh data folder."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty Studio data folder, also set as STUDIO_HOME for code that reads it."""
    d = tmp_path / "studio-home"
    d.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(d))
    return d
