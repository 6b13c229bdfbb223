"""Comparison grids: axes parsed as written, every cell's recipe matching its cell, one labelled image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.engine import GenerationRequest, RequestError
from studio.engine.grid import AxisKind, GridSpec, draw_grid, parse_axis, run


def base(tiny_model, **kw) -> GenerationRequest:
    fields = dict(prompt="a red circle on the left", steps=2, seed=7, model=str(tiny_model))
    fields.update(kw)
    return GenerationRequest(**fields)


def test_a_2x2x2_grid_gives_8_images_whose_recipes_match_their_cells(tiny_engine, tiny_model):
    spec = GridSpec(base(tiny_model), [parse_axis("cfg=2,6"), parse_axis("seed=1..2"),
                                       parse_axis("prompt=red,blue")])
    seen = []
    result = run(tiny_engine, spec, on_step=seen.append)
    assert len(result.cells) == 8
    for k, cell in enumerate(result.cells):
        z, y, x = k // 4, (k // 2) % 2, k % 2
        assert cell.recipe["cfg"] == [2.0, 6.0][x]
        assert cell.recipe["seed"] == [1, 2][y] and cell.seed == [1, 2][y]
        assert cell.recipe["prompt"] == ["a red circle on the left", "a blue circle on the left"][z]
        assert cell.recipe["grid_cell"] == {"x": x, "y": y, "z": z}
    # Each cell is the very image its own request gives alone.
    alone = tiny_engine.generate(base(tiny_model, cfg=6.0, seed=2, prompt="a blue circle on the left"))[0]
    assert np.array_equal(np.asarray(alone.image), np.asarray(result.cells[7].image))
    assert {info.item for info in seen} == set(range(8)) and all(info.items == 8 for info in seen)
    assert result.grid.recipe["grid"]["x"] == {"axis": "cfg", "values": [2.0, 6.0]}
    grid = result.grid.image
    cell_px = 32 * 4  # 32 px pictures drawn at 128 px
    assert grid.width > 2 * 2 * cell_px and grid.height > 2 * cell_px


def test_the_grid_image_holds_every_cell_under_its_labels():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    images = [Image.new("RGB", (64, 64), c) for c in colours]
    spec = GridSpec(GenerationRequest("x"), [parse_axis("cfg=3,5"), parse_axis("seed=1,2")])
    grid = np.asarray(draw_grid(spec, images)).astype(int)
    for colour in colours:  # each cell's colour covers a 128 x 128 block
        assert (np.abs(grid - colour).sum(axis=2) == 0).sum() == 128 * 128
    ink = (grid.sum(axis=2) < 200)  # dark label text on white
    assert ink[:40].any() and ink[:, :40].any()  # labels above (x) and to the left (y)


@pytest.mark.parametrize(("text", "kind", "values"), [
    ("cfg=2,4,6", AxisKind.CFG, (2.0, 4.0, 6.0)),
    ("seed=1..4", AxisKind.SEED, (1, 2, 3, 4)),
    ("steps=10..30:10", AxisKind.STEPS, (10, 20, 30)),
    ("cfg=1.5..2.5:0.5", AxisKind.CFG, (1.5, 2.0, 2.5)),
    ("sampler=Euler a, DPM++ 2M", AxisKind.SAMPLER, ("Euler a", "DPM++ 2M")),
    ('prompt=red,"deep, dark blue"', AxisKind.PROMPT, ("red", "deep, dark blue")),
    ("lora=0,0.5,1", AxisKind.LORA, (0.0, 0.5, 1.0)),
    ("Model=a,b", AxisKind.MODEL, ("a", "b")),
])
def test_axes_parse_as_written(text, kind, values):
    axis = parse_axis(text)
    assert (axis.kind, axis.values) == (kind, values)


@pytest.mark.parametrize(("text", "message"), [
    ("colour=1,2", "unknown grid axis 'colour'"),
    ("cfg=", "has no values"),
    ("cfg=a,b", "takes numbers"),
    ("seed=5..1", "is empty"),
    ("seed=1..1000", "at most 100"),
    ("sampler=Euler,Fancy", "unknown sampler 'Fancy'"),
])
def test_bad_axes_say_what_is_wrong(text, message):
    with pytest.raises(RequestError, match=message):
        parse_axis(text)


def test_axes_that_cannot_apply_are_refused_before_anything_runs():
    request = GenerationRequest("a cat")
    with pytest.raises(RequestError, match="not in the prompt"):
        GridSpec(request, [parse_axis("prompt=dog,fox")]).cells()
    with pytest.raises(RequestError, match="has none"):
        GridSpec(request, [parse_axis("lora=0,1")]).cells()
    with pytest.raises(RequestError, match="start image"):
        GridSpec(request, [parse_axis("denoise=0.3,0.6")]).cells()
    with pytest.raises(RequestError, match="guidance"):
        GridSpec(request, [parse_axis("cfg=2,40")]).cells()  # each cell is validated up front


def test_lora_and_denoise_axes_change_what_they_name():
    spec = GridSpec(GenerationRequest("a cat <lora:ink:0.8> <lora:film>", hires_scale=2.0),
                    [parse_axis("lora=0.2,1"), parse_axis("denoise=0.3,0.6")])
    cells = spec.cells()
    assert cells[0].request.prompt == "a cat <lora:ink:0.2> <lora:film:0.2>"
    assert cells[3].request.hires_denoise == 0.6 and cells[3].request.prompt.count(":1>") == 2
