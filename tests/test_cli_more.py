"""`studio generate --hires-*`, `studio upscale` and `studio grid` on the tiny pipeline."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.test_cli import gen_args, run  # noqa: F401 - the shared fixture


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_generate_with_hires_fix_and_replay_it_from_the_gallery(capsys, gen_args, data_dir):  # noqa: F811
    code, out, err = run(capsys, *gen_args, "--prompt", "a red cat", "--seed", "8", "--hires-scale", "2",
                         "--hires-steps", "2", "--hires-denoise", "0.4", "--json")
    assert code == 0, err
    [first] = _lines(out)
    assert (first["width"], first["height"]) == (64, 64)
    code, out, _ = run(capsys, "info", first["path"])
    assert "Denoising strength: 0.4, Hires upscale: 2, Hires steps: 2, Hires upscaler: Lanczos" in out
    code, out, err = run(capsys, *gen_args, "--from", str(first["gallery_id"]), "--json")
    assert code == 0, err
    [again] = _lines(out)
    assert np.array_equal(np.asarray(Image.open(again["path"])), np.asarray(Image.open(first["path"])))


def test_upscale_a_gallery_image_into_a_linked_child(capsys, gen_args, data_dir):  # noqa: F811
    code, out, err = run(capsys, *gen_args, "--prompt", "a blue dog", "--seed", "3", "--json")
    [parent] = _lines(out)
    code, out, err = run(capsys, "upscale", str(parent["gallery_id"]), "--scale", "3", "--data-dir", str(data_dir),
                         "--json")
    assert code == 0, err
    [child] = _lines(out)
    assert (child["width"], child["height"]) == (96, 96) and child["parent_id"] == parent["gallery_id"]
    code, out, _ = run(capsys, "info", child["path"])
    assert "Postprocess upscale by: 3, Postprocess upscaler: Lanczos" in out and "Seed: 3" in out


def test_upscale_with_redraw_writes_a_linked_child_that_generate_from_replays(capsys, gen_args, data_dir,  # noqa: F811
                                                                              tmp_path):
    steps = ["--steps", "5"]  # a redraw at 0.4 runs 5 x 0.4 = 2 steps a tile
    code, out, err = run(capsys, *gen_args, *steps, "--prompt", "a red circle", "--seed", "4", "--json")
    [parent] = _lines(out)
    out_file = tmp_path / "big.png"
    code, out, err = run(capsys, "upscale", str(parent["gallery_id"]), "--scale", "2", "--redraw", "0.4",
                         "--redraw-overlap", "8", "--out", str(out_file), "--device", "cpu", "--data-dir",
                         str(data_dir), "--json")
    assert code == 0, err
    [child] = _lines(out)
    assert (child["width"], child["height"]) == (64, 64) and child["parent_id"] == parent["gallery_id"]
    assert child["path"] == str(out_file) and child["seed"] == 4 and child["tiles"] == 9  # 32 px tiles
    plain = np.asarray(Image.open(parent["path"]).resize((64, 64), Image.Resampling.LANCZOS), dtype=np.int16)
    made = np.asarray(Image.open(out_file), dtype=np.int16)
    assert np.abs(made - plain).mean() > 1  # repainted, not only resized
    code, out, _ = run(capsys, "info", str(out_file), "--json")
    recipe = json.loads(out)
    assert recipe["mode"] == "redraw" and recipe["redraw_denoise"] == 0.4 and recipe["redraw_overlap"] == 8
    replay = gen_args[:3] + gen_args[5:]  # without the fixture's --steps 2: the recipe's own steps
    assert "--steps" not in replay
    code, out, err = run(capsys, *replay, "--from", str(child["gallery_id"]), "--json")
    assert code == 0, err
    [again] = _lines(out)
    assert np.array_equal(np.asarray(Image.open(again["path"]), dtype=np.int16), made)
    code, out, err = run(capsys, "upscale", str(parent["gallery_id"]), "--redraw", "0.1", "--data-dir", str(data_dir))
    assert code == 1 and "runs no step" in err


def test_upscale_of_a_file_with_an_unknown_upscaler_names_what_there_is(capsys, data_dir, tmp_path):
    picture = tmp_path / "p.png"
    Image.new("RGB", (16, 16), "red").save(picture)
    code, out, err = run(capsys, "upscale", str(picture), "--upscaler", "4x-nothing", "--data-dir", str(data_dir))
    assert code == 1 and "no upscaler named '4x-nothing'" in err and out == ""


def test_grid_prints_the_grid_then_every_cell_made_from_it(capsys, gen_args, data_dir):  # noqa: F811
    grid_args = ["grid", *gen_args[1:]]
    code, out, err = run(capsys, *grid_args, "--prompt", "a red cat", "--x", "cfg=2,5", "--y", "seed=1..2", "--json")
    assert code == 0, err
    grid, *cells = _lines(out)
    assert grid["kind"] == "grid" and len(cells) == 4
    assert all(c["parent_id"] == grid["gallery_id"] and c["kind"] == "cell" for c in cells)
    assert [c["seed"] for c in cells] == [1, 1, 2, 2] and [c["cell"]["x"] for c in cells] == [0, 1, 0, 1]
    code, out, err = run(capsys, *grid_args, "--prompt", "a red cat", "--x", "colour=red")
    assert code == 1 and "unknown grid axis 'colour'" in err
