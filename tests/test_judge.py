"""The pixel judge reads world renders right, and the built-in evaluation scores generators with it."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from PIL import Image

from studio import eval_builtin
from studio.builtin import judge, world
from studio.builtin.world import LandscapeScene, ShapeObject, ShapeScene

SHAPE_ATTRIBUTES = ("background", "colour", "position", "shape", "size")
PAIR_ATTRIBUTES = ("two_objects", "both_colours", "both_positions", "both_shapes", "both_sizes")


def render(scene: world.Scene, seed: int = 0) -> Image.Image:
    return world.render(scene, random.Random(seed))


def truth_generator(scenes: Sequence[world.Scene]) -> eval_builtin.Generate:
    """A perfect model: the ground-truth render of the prompt's scene (other jitter than the reference)."""
    by_prompt = {s.caption(): s for s in scenes}
    return lambda prompt, seed: render(by_prompt[prompt], seed + 12345)


def blank_generator(prompt: str, seed: int) -> Image.Image:
    return Image.new("RGB", (64, 64), (128, 128, 128))


def test_judge_accuracy_on_ground_truth_renders() -> None:
    rates = judge.accuracy(150, start=50_000)
    # 150 samples cover every kind of scene, so every attribute is measured.
    assert set(rates) == {*SHAPE_ATTRIBUTES, *PAIR_ATTRIBUTES, "time"}
    assert all(rate >= 0.97 for rate in rates.values()), rates


def test_one_object_read_attribute_by_attribute() -> None:
    scene = ShapeScene((ShapeObject("large", "purple", "star", "at the top"),), "yellow")
    found = judge.judge_shapes(render(scene))
    assert found["found"] and len(found["objects"]) == 1
    assert (found["background"], found["colour"], found["shape"], found["position"], found["size"]) == (
        "yellow", "purple", "star", "at the top", "large")
    assert 0.0 < found["confidence"] <= 1.0


@pytest.mark.parametrize("shape", world.SHAPES)
@pytest.mark.parametrize("size", list(world.SIZES))
def test_every_shape_and_size(shape: str, size: str) -> None:
    for seed in range(4):
        scene = ShapeScene((ShapeObject(size, "blue", shape, "in the center"),), "white")
        found = judge.judge_shapes(render(scene, seed))
        assert (found["shape"], found["size"]) == (shape, size), found


def test_two_object_scene_is_two_blobs_bound_to_positions() -> None:
    scene = ShapeScene((ShapeObject("small", "red", "circle", "on the left"),
                        ShapeObject("large", "green", "square", "on the right")), "black")
    found = judge.judge_shapes(render(scene))
    assert len(found["objects"]) == 2
    by_position = {o["position"]: o for o in found["objects"]}
    assert by_position["on the left"]["colour"] == "red" and by_position["on the left"]["shape"] == "circle"
    assert by_position["on the right"]["colour"] == "green" and by_position["on the right"]["shape"] == "square"
    assert all(judge.score(scene, render(scene)).values())


def test_swapped_colours_fail_two_object_binding() -> None:
    top = ShapeObject("large", "orange", "triangle", "at the top")
    bottom = ShapeObject("large", "blue", "triangle", "at the bottom")
    drawn = ShapeScene((top, bottom), "white")
    asked = ShapeScene((ShapeObject("large", "blue", "triangle", "at the top"),
                        ShapeObject("large", "orange", "triangle", "at the bottom")), "white")
    scores = judge.score(asked, render(drawn))
    assert scores["two_objects"] and scores["both_positions"] and scores["both_shapes"]
    assert not scores["both_colours"]


@pytest.mark.parametrize("change", [
    {"background": "green"}, {"colour": "white"}, {"shape": "square"}, {"position": "on the left"},
    {"size": "small"},
])
def test_score_flags_exactly_the_wrong_attribute(change: dict[str, str]) -> None:
    obj = ShapeObject("large", "red", "triangle", "on the right")
    drawn = ShapeScene((obj,), "blue")
    fields = {"size": obj.size, "colour": obj.colour, "shape": obj.shape, "position": obj.position}
    background = change.get("background", "blue")
    fields.update({k: v for k, v in change.items() if k != "background"})
    scores = judge.score(ShapeScene((ShapeObject(**fields),), background), render(drawn))
    assert set(scores) == set(SHAPE_ATTRIBUTES)
    assert {k for k, ok in scores.items() if not ok} == set(change)


def test_blank_image_has_no_object() -> None:
    blank = Image.new("RGB", (64, 64), world.COLOURS["green"])
    found = judge.judge_shapes(blank)
    assert not found["found"] and found["objects"] == [] and found["confidence"] == 0.0
    assert found["background"] == "green"
    scene = ShapeScene((ShapeObject("small", "red", "circle", "in the center"),), "green")
    scores = judge.score(scene, blank)
    assert scores["background"] and not any(scores[a] for a in ("colour", "position", "shape", "size"))


@pytest.mark.parametrize("time", world.TIMES)
def test_landscape_time_of_day(time: str) -> None:
    for seed, features in enumerate([("clouds",), ("mountains", "a lake"), ("clouds", "a forest", "hills")]):
        img = render(LandscapeScene(time, features), seed)
        assert judge.judge_landscape(img)["time"] == time
        assert judge.score(LandscapeScene(time, features), img) == {"time": True}
    other = next(t for t in world.TIMES if t != time)
    assert judge.score(LandscapeScene(other, ("hills",)), render(LandscapeScene(time, ("hills",)))) == {"time": False}


def test_any_image_size_is_normalised() -> None:
    scene = ShapeScene((ShapeObject("small", "yellow", "square", "at the bottom"),), "purple")
    img = render(scene)
    for size in (128, 48):
        assert all(judge.score(scene, img.resize((size, size), Image.Resampling.NEAREST)).values())


def test_convex_hull_and_area() -> None:
    square = [(0, 0), (2, 0), (2, 2), (0, 2), (1, 1), (1, 0)]  # inner and edge points drop out
    hull = judge.convex_hull(square)
    assert sorted(hull) == [(0.0, 0.0), (0.0, 2.0), (2.0, 0.0), (2.0, 2.0)]
    assert judge.polygon_area(hull) == 4.0


def test_prompt_set_is_fixed_and_has_held_out_quota() -> None:
    scenes = eval_builtin.build_scenes(200, seed=0)
    assert [s.caption() for s in scenes] == [s.caption() for s in eval_builtin.build_scenes(200, seed=0)]
    assert [s.caption() for s in scenes] != [s.caption() for s in eval_builtin.build_scenes(200, seed=1)]
    assert len(scenes) == 220
    held_out = [s for s in scenes if eval_builtin.is_held_out(s)]
    assert len(held_out) >= 0.1 * len(scenes)
    assert {(o.colour, o.shape) for s in held_out for o in s.objects} >= world.HELD_OUT
    assert {s.kind for s in scenes} == {"shapes", "landscape"}
    assert any(isinstance(s, ShapeScene) and len(s.objects) == 2 for s in scenes)


def test_evaluate_with_a_perfect_generator() -> None:
    scenes = eval_builtin.build_scenes(80, seed=3)
    figures = eval_builtin.evaluate(truth_generator(scenes), scenes)
    assert figures["n"] == 88 and figures["n_held_out"] >= 9
    for source in ("model", "reference"):
        for group in ("in_distribution", "held_out"):
            rates = figures[source][group]
            assert {"background", "colour", "shape"} <= set(rates)
            assert all(r >= 0.95 for r in rates.values()), (source, group, rates)
    assert "time" in figures["model"]["in_distribution"] and "time" not in figures["model"]["held_out"]


def test_evaluate_with_a_blank_generator() -> None:
    scenes = eval_builtin.build_scenes(40, seed=0)
    figures = eval_builtin.evaluate(blank_generator, scenes)
    rates = figures["model"]["all"]
    assert all(rates[a] == 0.0 for a in ("colour", "position", "shape", "size", "two_objects"))
    assert rates["background"] < 0.3
    assert min(figures["reference"]["all"].values()) >= 0.95  # the reference ignores the generator


def test_cli_prints_json_and_saves_grid(tmp_path, monkeypatch, capsys) -> None:
    def fake_engine(model: str, steps: int, cfg: float, device: str = "auto") -> eval_builtin.Generate:
        assert (model, steps, cfg) == ("builtin", 20, 2.0)  # the documented defaults
        return truth_generator(eval_builtin.build_scenes(40, seed=2))

    def blank_vae(model: str, device: str = "auto") -> eval_builtin.RoundTrip:
        return lambda img: blank_generator("", 0)  # a decoder that has lost everything

    monkeypatch.setattr(eval_builtin, "engine_generator", fake_engine)
    monkeypatch.setattr(eval_builtin, "vae_roundtrip", blank_vae)
    grid = tmp_path / "grid.png"
    assert eval_builtin.main(["--n", "40", "--seed", "2", "--json", "--grid", str(grid)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["n"] == 44 and figures["config"]["cfg"] == 2.0
    assert min(figures["model"]["all"].values()) >= 0.95
    assert figures["through_vae"]["all"]["colour"] == 0.0  # the VAE's ceiling is reported on its own
    with Image.open(grid) as sheet:
        assert sheet.width == 8 * (128 + 4) + 4 and sheet.height > 6 * 128


def test_table_lists_attributes_and_groups() -> None:
    scenes = eval_builtin.build_scenes(20, seed=0)
    table = eval_builtin.format_table(eval_builtin.evaluate(truth_generator(scenes), scenes))
    assert "held-out" in table and "ground truth" in table and "through VAE" not in table
    table = eval_builtin.format_table(eval_builtin.evaluate(truth_generator(scenes), scenes, roundtrip=lambda i: i))
    assert "through VAE" in table
    assert "object colour" in table and "100.0%" in table


def test_colour_breakdown_singles_out_the_colour_a_model_confuses() -> None:
    scenes = eval_builtin.build_scenes(80, seed=0)
    by_prompt = {s.caption(): s for s in scenes}

    def orange_as_red(prompt: str, seed: int) -> Image.Image:
        scene = by_prompt[prompt]
        if isinstance(scene, ShapeScene):
            objects = tuple(replace(o, colour="red") if o.colour == "orange" else o for o in scene.objects)
            scene = replace(scene, objects=objects)
        return render(scene, seed + 12345)

    figures = eval_builtin.evaluate(orange_as_red, scenes, roundtrip=lambda i: i)
    by_colour = figures["by_colour"]
    assert by_colour["orange"]["model"] == 0.0 and by_colour["orange"]["through_vae"] == 1.0
    assert all(f["model"] >= 0.9 for c, f in by_colour.items() if c != "orange"), by_colour
    singles = [s for s in scenes if isinstance(s, ShapeScene) and len(s.objects) == 1]
    assert sum(f["n"] for f in by_colour.values()) == len(singles)
    table = eval_builtin.format_table(figures)
    assert "by prompted colour" in table and "orange     0.0%  100.0%" in table
