"""Smoke tests of the benchmarks (`python -m studio.bench engine|ui|gpu`) on the tiny pipeline.

They check that each benchmark runs and reports what it promises, not the figures themselves.
"""

from __future__ import annotations

import json

import pytest

ENGINE_TIMES = ("raw_s", "engine_preview_off_s", "engine_preview_on_s", "step_s", "preview_per_step_s", "batch_s",
                "sequential_s", "batch_per_image_s", "seconds_per_image_20_steps")
ENGINE_RATIOS = ("engine_vs_raw_preview_off", "engine_vs_raw_preview_on", "preview_share_of_step",
                 "batch_vs_sequential", "engine_vs_raw_preview_on_ci_low", "engine_vs_raw_preview_on_ci_high")


def test_engine_bench_prints_one_json_object_of_positive_figures(tiny_model, capsys):
    from studio.bench import engine

    rc = engine.main(["--model", str(tiny_model), "--steps", "2", "--repeats", "1", "--batch", "2",
                      "--device", "cpu", "--pairs", "2", "--json"])
    assert rc == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    rows = json.loads(lines[0])
    for key in (*ENGINE_TIMES, *ENGINE_RATIOS, "preview_psnr_db"):
        assert isinstance(rows[key], (int, float)) and rows[key] > 0, key
    assert all(k == k.lower() and " " not in k for k in rows)
    assert rows["engine_raw_max_pixel_difference"] == 0  # same pipeline, scheduler and latents: same image
    assert rows["steps"] == 2 and rows["batch"] == 2 and rows["width"] == 32 and rows["pairs"] == 2
    assert rows["engine_vs_raw_preview_on_ci_low"] <= rows["engine_vs_raw_preview_on"] <= \
        rows["engine_vs_raw_preview_on_ci_high"]


def test_the_median_interval_brackets_the_median_and_narrows_with_more_pairs():
    from studio.bench.engine import median_interval

    wide = median_interval([1.0, 1.2, 0.9, 1.1, 1.05])
    values = [1.0 + 0.01 * ((k * 7) % 11 - 5) for k in range(41)]
    narrow = median_interval(values)
    assert wide[1] <= wide[0] <= wide[2] and narrow[1] <= narrow[0] <= narrow[2]
    assert narrow[2] - narrow[1] < wide[2] - wide[1]
    assert (wide[1], wide[2]) == (0.9, 1.2)  # 5 pairs: only the extremes bracket the median at 95 %


def test_engine_bench_without_the_builtin_model_says_so_and_exits_2(tmp_path, monkeypatch, capsys):
    from studio.bench import engine
    from studio.engine import models

    monkeypatch.setattr(models, "BUILTIN_MODEL", tmp_path / "not-installed")
    monkeypatch.delenv("STUDIO_HOME", raising=False)
    assert engine.main(["--json"]) == 2
    captured = capsys.readouterr()
    assert "built-in model is not installed" in captured.err and captured.out == ""


def test_ui_bench_pure_helpers():
    from studio.bench import ui

    ticks = [0.0, 0.005, 0.010, 0.040, 0.045, 0.050]
    assert ui.gaps(ticks) == pytest.approx([0.005, 0.005, 0.030, 0.005, 0.005])
    assert ui.longest_gap(ticks) == pytest.approx(0.030)
    assert ui.longest_gap(ticks, start=0.041) == pytest.approx(0.005)  # only gaps ending after the start
    assert ui.longest_gap(ticks, end=0.009) == pytest.approx(0.005)
    assert ui.gap_containing(ticks, 0.02) == pytest.approx(0.030)
    assert ui.gap_containing(ticks, 1.0) == 0.0
    assert ui.percentile([1, 2, 3, 4, 5], 50) == 3 and ui.percentile([], 99) == 0.0
    assert ui.seconds_per_step([(1, 0.5), (5, 0.9)]) == pytest.approx(0.1)  # setup in step 1 left out
    assert ui.seconds_per_step([(2, 0.4)]) == pytest.approx(0.2)
    assert ui.seconds_per_step([]) is None


def test_stall_probe_sees_a_blocked_event_loop(qapp):
    import time

    from PySide6.QtCore import QTimer

    from studio.bench import ui

    probe = ui.StallProbe(1)
    probe.start()
    QTimer.singleShot(20, lambda: time.sleep(0.08))  # the GUI thread is blocked for 80 ms
    done = []
    QTimer.singleShot(150, lambda: done.append(True))
    assert ui.run_loop(lambda: bool(done), 5.0)
    probe.stop()
    assert len(probe.ticks) > 5
    assert probe.longest() >= 0.075


def test_ui_bench_measures_the_live_window_on_the_tiny_model(qapp, tiny_model):
    from studio.bench import ui

    rows = ui.measure_window(str(tiny_model), device="cpu", steps=2, cancels=1, probe_ms=5)
    for key in ("generation_s", "gui_stall_max_s", "gui_stall_p99_s", "click_to_first_preview_s", "step_s"):
        assert isinstance(rows[key], float) and rows[key] > 0, key
    assert rows["gui_stall_max_s"] >= rows["gui_stall_steps_max_s"]
    # a 50-step run cancelled just after its first preview: the cancel lands and is reported
    assert rows["cancel_to_idle_s"] > 0 and rows["cancel_to_idle_steps"] > 0


def test_ui_cold_start_opens_the_window_without_torch():
    from studio.bench import ui

    (start,) = ui.cold_start(1)
    assert start["exposed"] and start["seconds"] > 0 and start["process_seconds"] >= start["seconds"]
    assert "torch" not in start["heavy"] and "diffusers" not in start["heavy"]


def test_gpu_bench_without_cuda_exits_2(monkeypatch, capsys):
    import torch

    from studio.bench import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--json"]) == 2
    assert "no CUDA device: this benchmark needs a GPU" in capsys.readouterr().err


def test_gpu_bench_configs_are_the_published_ones_at_scale_1():
    from studio.bench import gpu

    sd15, sdxl = gpu.configs("sd15"), gpu.configs("sdxl")
    assert sd15["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    assert sd15["unet"]["cross_attention_dim"] == 768 == sd15["text_encoder"]["hidden_size"]
    assert sdxl["unet"]["transformer_layers_per_block"] == [1, 2, 10]
    assert sdxl["unet"]["cross_attention_dim"] == 2048
    assert sdxl["unet"]["addition_embed_type"] == "text_time"
    assert sdxl["unet"]["projection_class_embeddings_input_dim"] == 2816 == (
        6 * sdxl["unet"]["addition_time_embed_dim"] + sdxl["text_encoder_2"]["projection_dim"])
    with pytest.raises(ValueError):
        gpu.configs("sd15", 3)


def test_gpu_bench_builds_scaled_sd15_and_sdxl_pipelines_on_cpu():
    from studio.bench import gpu

    pipes = {arch: gpu.build_pipeline(arch, scale=16, device="cpu") for arch in gpu.ARCHS}
    sd15, sdxl = pipes["sd15"], pipes["sdxl"]
    assert type(sd15).__name__ == "StableDiffusionPipeline"
    assert type(sdxl).__name__ == "StableDiffusionXLPipeline"
    assert list(sd15.unet.config.block_out_channels) == [20, 40, 80, 80]
    assert sd15.unet.config.cross_attention_dim == sd15.text_encoder.config.hidden_size == 48
    assert list(sdxl.unet.config.transformer_layers_per_block) == [1, 2, 10]
    assert sdxl.unet.config.cross_attention_dim == 48 + 80
    assert sdxl.unet.config.projection_class_embeddings_input_dim == 6 * 16 + 80
    assert gpu.optimise(sdxl, channels_last=True)["attention"] == "sdpa"
    # the measurement itself, on the SDXL path (pooled embeddings and time ids); SD 1.5's is the tiny model's
    engine = gpu.engine_for(sdxl, "sdxl", sdxl.device, sdxl.unet.dtype)
    figures = gpu.measure(engine, 64, steps=1, repeats=1, scheduler="Euler")
    assert figures["engine_s"] > 0 and figures["raw_s"] > 0 and figures["engine_vs_raw"] > 0
    assert figures["raw_it_s"] == pytest.approx(1 / figures["raw_s"])
