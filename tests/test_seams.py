"""`python -m studio.bench seams`: a smoke run on the tiny pipeline, and the bench's overlap emulation."""

from __future__ import annotations

import json
import math

from studio.bench import seams

TINY_GRID = ["--images", "1", "--steps", "2", "--device", "cpu", "--fills", "edge", "--overlaps", "8,16",
             "--strengths", "1.0", "--paddings", "8", "--feathers", "0,4"]


def test_json_output_has_the_figures_and_finite_ratios(tiny_model, tmp_path, capsys) -> None:
    out = tmp_path / "strips"
    assert seams.main(["--model", str(tiny_model), "--json", "--out", str(out), *TINY_GRID]) == 0
    figures = json.loads(capsys.readouterr().out)
    for key in ("model", "steps", "images", "outpaint", "inpaint", "best_outpaint", "worst_outpaint",
                "best_inpaint", "seconds"):
        assert key in figures, key
    assert figures["images"] == 1 and figures["steps"] == 2
    assert [(r["fill"], r["overlap"], r["strength"]) for r in figures["outpaint"]] == [("edge", 8, 1.0),
                                                                                      ("edge", 16, 1.0)]
    assert [(r["padding"], r["feather"]) for r in figures["inpaint"]] == [(8, 0), (8, 4)]
    for row in figures["outpaint"]:
        for key in ("median_ratio", "mean_ratio", "left_right_median_ratio", "top_bottom_median_ratio",
                    "prefill_median_ratio", "repaint"):
            assert math.isfinite(row[key]) and row[key] >= 0, (row["setting"], key)
        assert row["n"] == 2  # one scene, two directions
    for row in figures["inpaint"]:
        for key in ("mask_median_ratio", "crop_median_ratio", "source_mask_median_ratio", "repaint"):
            assert math.isfinite(row[key]) and row[key] >= 0, (row["setting"], key)
    names = sorted(p.name for p in out.iterdir())
    assert "outpaint-best-left_right.png" in names and "inpaint-best.png" in names and "seams.json" in names


def test_table_marks_the_best_setting(tiny_model, capsys) -> None:
    grid = [*TINY_GRID]
    grid[grid.index("--overlaps") + 1] = "8"
    assert seams.main(["--model", str(tiny_model), *grid]) == 0
    text = capsys.readouterr().out
    assert "median seam ratio" in text
    assert sum(line.startswith("* ") for line in text.splitlines()) == 2  # one outpaint, one inpaint


def test_missing_model_exits_2_with_a_reason(tmp_path, capsys) -> None:
    assert seams.main(["--model", str(tmp_path / "nowhere"), "--device", "cpu"]) == 2
    assert "cannot load model" in capsys.readouterr().err
