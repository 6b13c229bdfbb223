"""Upscalers: ESRGAN-family files through spandrel, tiled so any size fits, and Lanczos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.engine import upscale
from studio.recipe.errors import ModelError


def _tiny_esrgan(path, seed: int = 0):
    """A random 4x ESRGAN built through spandrel's own architecture class (1 block, 8 features),
    saved as a state dict in the original ESRGAN key layout (model.0.weight, model.1.sub.0.RDB1...)."""
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    net = ESRGAN(num_filters=8, num_blocks=1, scale=4)
    state = net.state_dict()
    assert "model.1.sub.0.RDB1.conv1.0.weight" in state  # the original layout, not BasicSR's
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def _picture(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(1)
    noise = Image.fromarray((rng.random((height // 4, width // 4, 3)) * 255).astype(np.uint8))
    return noise.resize((width, height), Image.Resampling.BICUBIC)  # smooth shapes, like a picture


@pytest.fixture(scope="module")
def tiny_upscaler(tmp_path_factory):
    return upscale.load_model(_tiny_esrgan(tmp_path_factory.mktemp("esrgan") / "4x-tiny.pth"))


def test_a_file_loads_through_spandrel_as_a_4x_esrgan(tiny_upscaler):
    assert tiny_upscaler.scale == 4
    assert tiny_upscaler.descriptor.architecture.name == "ESRGAN"
    assert tiny_upscaler.name == "4x-tiny"


def test_tiled_and_untiled_give_the_same_pixels_within_one_level(tiny_upscaler):
    picture = _picture(120, 88)
    whole = np.asarray(upscale.run_tiled(picture, tiny_upscaler, tile=1024)).astype(int)
    ticks: list[tuple[int, int]] = []
    tiled = np.asarray(upscale.run_tiled(picture, tiny_upscaler, tile=64, overlap=16,
                                         on_progress=lambda d, n: ticks.append((d, n)))).astype(int)
    assert whole.shape == tiled.shape == (88 * 4, 120 * 4, 3)
    # Tolerance: one level of 255, where the cross-fade mixes two tiles' float results.
    assert np.abs(whole - tiled).max() <= 1
    assert ticks[-1] == (len(ticks), len(ticks)) and len(ticks) == 6  # 3 x 2 tiles, each reported
    # The comparison can fail: tiles butted together without overlap show their seams.
    seamed = np.asarray(upscale.run_tiled(picture, tiny_upscaler, tile=64, overlap=0)).astype(int)
    assert np.abs(whole - seamed).max() > 3


def test_safetensors_file_gives_the_same_picture_as_the_pth(tiny_upscaler, tmp_path):
    other = upscale.load_model(_tiny_esrgan(tmp_path / "4x-tiny.safetensors"))
    picture = _picture(32, 24)
    assert np.array_equal(np.asarray(upscale.run_tiled(picture, other)),
                          np.asarray(upscale.run_tiled(picture, tiny_upscaler)))


def test_upscale_reaches_any_size_with_the_model_then_lanczos(tiny_upscaler):
    picture = _picture(40, 24)
    out = upscale.upscale(picture, (100, 60), tiny_upscaler)
    assert out.size == (100, 60)
    lanczos = upscale.upscale(picture, (100, 60))
    assert lanczos.size == (100, 60)
    assert np.abs(np.asarray(out).astype(int) - np.asarray(lanczos).astype(int)).mean() > 1  # the model ran


def test_cancel_stops_between_tiles(tiny_upscaler):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(upscale.UpscaleCancelled):
        upscale.run_tiled(_picture(200, 64), tiny_upscaler, tile=64, overlap=16, should_stop=stop)
    assert len(calls) == 3


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_pickle_that_needs_code_is_refused_with_the_reason(tmp_path, capsys):
    import torch

    path = tmp_path / "4x-evil.pth"
    torch.save({"model.0.weight": torch.zeros(1), "hook": _Payload()}, path)
    with pytest.raises(ModelError, match="loading it would run code"):
        upscale.load_model(path)
    assert "code ran" not in capsys.readouterr().out


def test_weights_of_no_known_architecture_are_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "not-an-upscaler.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelError, match="not an upscaler architecture"):
        upscale.load_model(path)


def test_auto_tile_shrinks_with_memory_and_stays_in_bounds(tiny_upscaler):
    big = upscale.auto_tile(tiny_upscaler, free_bytes=64 << 30)
    small = upscale.auto_tile(tiny_upscaler, free_bytes=256 << 20)
    assert big == upscale.MAX_TILE and upscale.MIN_TILE <= small < big and small % 32 == 0
    assert upscale.auto_tile(tiny_upscaler, free_bytes=0) == upscale.MIN_TILE


@pytest.mark.parametrize(("length", "max_tile", "overlap"), [(1024, 512, 32), (300, 128, 32), (4096, 480, 32),
                                                             (129, 128, 32), (88, 64, 16)])
def test_tile_layout_covers_the_side_with_the_overlap_and_few_pixels_twice(length, max_tile, overlap):
    tile, starts = upscale.tile_layout(length, max_tile, overlap)
    assert tile <= max_tile and starts[0] == 0 and starts[-1] + tile == length
    assert all(overlap <= a + tile - b for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap
    assert len(starts) * tile <= length + len(starts) * (overlap + 1)  # no tile larger than it needs be
    assert upscale.tile_layout(100, 128, 32) == (100, [0])


def test_the_new_engine_modules_import_no_qt():
    import subprocess
    import sys

    code = ("import sys, studio.engine.upscale, studio.engine.enlarge, studio.engine.hires, studio.engine.grid; "
            "print('PySide6' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_upscale_bench_reports_tiled_and_whole_figures(capsys):
    import json

    from studio.bench import upscale as bench

    assert bench.main(["--size", "96", "--blocks", "1", "--budget-gb", "0.01", "--device", "cpu", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rows["output_px"] == 384 and rows["tile_px"] == upscale.MIN_TILE
    for key in ("tiled_s", "whole_s", "tiled_peak_bytes", "whole_peak_bytes"):
        assert rows[key] > 0, key
