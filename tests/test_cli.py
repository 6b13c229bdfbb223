"""The `studio` command line on the tiny pipeline: generate, info, gallery, models, and clean failures."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from studio.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def gen_args(tiny_model, data_dir):
    return ["generate", "--model", str(tiny_model), "--steps", "2", "--device", "cpu", "--data-dir", str(data_dir)]


def test_generate_writes_a_png_whose_recipe_info_reads_back(capsys, gen_args, tmp_path):
    out_file = tmp_path / "out" / "cat.png"
    code, out, err = run(capsys, *gen_args, "--prompt", "a red cat", "--negative", "blue", "--seed", "1234",
                         "--cfg", "6.5", "--scheduler", "Euler a", "--out", str(out_file), "--no-gallery", "--json")
    assert code == 0, err
    record = json.loads(out.strip())
    assert record["path"] == str(out_file) and record["seed"] == 1234 and record["gallery_id"] is None
    assert (record["width"], record["height"]) == (32, 32) and record["seconds"] > 0
    assert Image.open(out_file).size == (32, 32)
    code, out, _ = run(capsys, "info", str(out_file), "--json")
    recipe = json.loads(out)
    assert (recipe["prompt"], recipe["negative_prompt"], recipe["seed"], recipe["cfg"]) == \
        ("a red cat", "blue", 1234, 6.5)
    assert recipe["scheduler"] == "Euler a" and recipe["steps"] == 2
    code, out, _ = run(capsys, "info", str(out_file))
    assert "Negative prompt: blue" in out and "Seed: 1234" in out and "Sampler: Euler a" in out


def test_generate_keeps_images_in_the_gallery(capsys, gen_args, data_dir):
    code, out, err = run(capsys, *gen_args, "--prompt", "a green square", "--seed", "5", "--batch", "2", "--json")
    assert code == 0, err
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["seed"] for r in records] == [5, 6]
    # Made together: each image says its share of the run and the run's whole time, named as such.
    assert [(r["batch_size"], r["batch_index"]) for r in records] == [(2, 0), (2, 1)]
    assert records[0]["batch_seconds"] == records[1]["batch_seconds"] > 0
    assert all(abs(2 * r["seconds"] - r["batch_seconds"]) <= 0.002 for r in records)
    assert all(r["gallery_id"] is not None for r in records)
    code, out, _ = run(capsys, "gallery", "list", "--json", "--data-dir", str(data_dir))
    listed = [json.loads(line) for line in out.strip().splitlines()]
    assert {r["id"] for r in listed} == {r["gallery_id"] for r in records}
    assert all(r["prompt"] == "a green square" for r in listed)
    assert {"id", "path", "prompt", "seed", "favorite", "created_at"} <= set(listed[0])
    code, out, _ = run(capsys, "gallery", "list", "--search", "purple", "--json", "--data-dir", str(data_dir))
    assert out.strip() == ""
    code, out, _ = run(capsys, "gallery", "list", "--search", "purple OR green", "--json", "--data-dir", str(data_dir))
    assert len(out.strip().splitlines()) == 2


def test_same_seed_regenerates_identical_pixels(capsys, gen_args, tmp_path):
    for name in ("a.png", "b.png"):
        assert run(capsys, *gen_args, "--prompt", "a blue circle", "--seed", "77", "--no-gallery",
                   "--out", str(tmp_path / name))[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


def test_inpaint_and_outpaint_from_the_command_line(capsys, gen_args, tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(init)
    mask = tmp_path / "mask.png"
    m = Image.new("L", (32, 32), 0)
    m.paste(255, (8, 8, 20, 20))
    m.save(mask)
    code, _, err = run(capsys, *gen_args, "--prompt", "a cat", "--init", str(init), "--mask", str(mask),
                       "--mask-grow", "2", "--mask-feather", "2", "--inpaint-area", "masked", "--padding", "4",
                       "--no-gallery", "--out", str(tmp_path / "inpainted.png"))
    assert code == 0, err
    inpainted = np.asarray(Image.open(tmp_path / "inpainted.png").convert("RGB"))
    assert np.array_equal(inpainted[26:, :], np.asarray(Image.open(init))[26:, :])
    code, _, err = run(capsys, *gen_args, "--prompt", "a cat", "--init", str(init), "--outpaint", "16,0,0,8",
                       "--no-gallery", "--out", str(tmp_path / "outpainted.png"))
    assert code == 0, err
    assert Image.open(tmp_path / "outpainted.png").size == (48, 40)


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "steps must be between 1 and 150"),
    (["--outpaint", "1,2"], "--outpaint takes LEFT,TOP,RIGHT,BOTTOM"),
    (["--init", "missing.png"], "does not exist"),
    (["--model", "/no/such/model"], "no model named or at"),
])
def test_bad_arguments_fail_with_one_line_and_write_nothing(capsys, gen_args, tmp_path, extra, message):
    out_file = tmp_path / "never.png"
    code, out, err = run(capsys, *gen_args, "--prompt", "x", "--no-gallery", "--out", str(out_file), *extra)
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("studio: error:")
    assert not out_file.exists() and list(tmp_path.glob("*.png")) == []


def test_a_corrupt_init_image_is_named(capsys, gen_args, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, _, err = run(capsys, *gen_args, "--prompt", "x", "--no-gallery", "--out", str(tmp_path / "o.png"),
                       "--init", str(bad))
    assert code == 1 and "is not a readable image" in err


def test_no_gallery_without_out_is_refused(capsys, gen_args):
    code, _, err = run(capsys, *gen_args, "--prompt", "x", "--no-gallery")
    assert code == 1 and "nothing would be kept" in err


def test_info_on_an_image_without_metadata(capsys, tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    code, _, err = run(capsys, "info", str(plain))
    assert code == 1 and "carries no generation metadata" in err


def test_models_lists_user_models_in_the_data_folder(capsys, tiny_model, data_dir):
    import shutil

    shutil.copytree(tiny_model, data_dir / "models" / "tiny")
    code, out, _ = run(capsys, "models", "--json", "--data-dir", str(data_dir))
    entries = {e["name"]: e for e in (json.loads(line) for line in out.strip().splitlines())}
    assert entries["tiny"]["path"] == str(data_dir / "models" / "tiny") and entries["tiny"]["kind"] == "diffusers"
    assert entries["studio-shapes"]["native_size"] == 64


def test_global_options_work_before_the_subcommand_and_models_add_a_folder(capsys, tmp_path, data_dir):
    from studio.bench import checkpoint_files as F

    comfy = tmp_path / "ComfyUI" / "models" / "checkpoints"
    comfy.mkdir(parents=True)
    F.write_checkpoint(comfy / "mine.safetensors", "sdxl")
    other = tmp_path / "other-home"
    code, out, err = run(capsys, "--data-dir", str(other), "models", "add", str(comfy.parent))
    assert code == 0, err
    code, out, _ = run(capsys, "--data-dir", str(other), "models", "--kind", "checkpoint", "--json", "--hash")
    (entry,) = [json.loads(line) for line in out.strip().splitlines()]
    assert entry["name"] == "mine" and entry["family"] == "SDXL" and entry["native_size"] == 1024
    assert len(entry["hash"]) == 10
    code, out, _ = run(capsys, "models", "--json")  # the default data folder (STUDIO_HOME) never saw it
    assert "mine" not in out


def test_console_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "studio", "generate", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--outpaint" in result.stdout and "--variation-seed" in result.stdout


def test_without_cfg_generate_uses_the_guidance_the_model_suggests(capsys, tiny_model, data_dir, tmp_path):
    import shutil

    model = tmp_path / "suggesting"
    shutil.copytree(tiny_model, model)
    (model / "studio.json").write_text('{"cfg": 2.5}')
    base = ["generate", "--model", str(model), "--steps", "2", "--device", "cpu", "--data-dir", str(data_dir),
            "--prompt", "a red cat", "--no-gallery"]
    for extra, expected in (([], 2.5), (["--cfg", "6"], 6.0)):
        out_file = tmp_path / f"cfg-{expected}.png"
        code, _, err = run(capsys, *base, *extra, "--out", str(out_file))
        assert code == 0, err
        code, out, _ = run(capsys, "info", str(out_file), "--json")
        assert json.loads(out)["cfg"] == expected


def test_a_closed_pipe_ends_the_listing_quietly(tmp_path):
    """`studio gallery list --json | head -1`: no BrokenPipeError when the reader stops early."""
    from PIL import Image as PILImage

    from studio.gallery import Gallery

    gallery = Gallery(tmp_path)
    for seed in range(40):
        gallery.save(PILImage.new("RGB", (8, 8)), {"schema": 1, "prompt": "x" * 3000, "negative_prompt": "",
                                                  "seed": seed, "steps": 1})
    gallery.close()
    done = subprocess.run(f"{sys.executable} -m studio --data-dir {tmp_path} gallery list --json --limit 40 | head -1",
                          shell=True, capture_output=True, text=True)
    assert done.stdout.count("\n") == 1 and "Error" not in done.stderr, done.stderr


def test_the_window_says_why_it_cannot_open_without_a_display(monkeypatch, capsys):
    from studio.ui import app

    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(app.sys, "platform", "linux")
    assert app.run_app([]) == 2
    assert "no display" in capsys.readouterr().err and "studio generate" in app.display_problem({})


def test_from_replays_a_saved_picture_exactly_and_options_override_it(capsys, tmp_path, tiny_model, data_dir):
    out = tmp_path / "first.png"
    code, printed, err = run(capsys, "generate", "--prompt", "a red circle", "--model", str(tiny_model), "--steps",
                             "3", "--seed", "17", "--cfg", "5", "--out", str(out), "--json")
    assert code == 0, err
    first = json.loads(printed.strip().splitlines()[-1])
    replay = tmp_path / "replay.png"
    code, printed, err = run(capsys, "generate", "--from", str(out), "--out", str(replay), "--no-gallery", "--json")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(replay)))
    other = tmp_path / "other.png"
    code, printed, err = run(capsys, "generate", "--from", str(first["gallery_id"]), "--seed", "18", "--out",
                             str(other), "--no-gallery", "--json")
    assert code == 0, err
    assert json.loads(printed)["seed"] == 18
    assert not np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(other)))
    code, _, err = run(capsys, "generate", "--from", "999999", "--out", str(other))
    assert code != 0 and "Error" not in err
    code, _, err = run(capsys, "generate", "--steps", "3", "--out", str(other))
    assert code == 1 and "give --prompt, or --from" in err


def test_importing_the_same_file_twice_says_it_is_already_in_the_gallery(capsys, tmp_path, data_dir):
    picture = tmp_path / "holiday.png"
    Image.new("RGB", (12, 10), (200, 40, 40)).save(picture)
    code, out, err = run(capsys, "gallery", "import", str(picture), "--data-dir", str(data_dir))
    assert code == 0 and out.strip() == "imported 1 image" and err == ""
    code, out, err = run(capsys, "gallery", "import", str(picture), "--data-dir", str(data_dir))
    assert code == 0 and out.strip() == "imported 0 images, 1 already in the gallery"
    assert "holiday.png is already in the gallery (id 1)" in err
    code, out, _ = run(capsys, "gallery", "list", "--json", "--data-dir", str(data_dir))
    assert len(out.strip().splitlines()) == 1
