"""The recipe replays exactly: for each mode a picture is saved through the gallery, its PNG read back with
`studio info`, and `studio generate --from` gives identical pixels (input images come back from the
gallery's kept inputs). Also an AUTOMATIC1111 text with a 64-bit seed and a `Version:` key, and the
round trip `from_recipe(to_recipe(r)) == r`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from studio.cli import main
from studio.recipe.request import GenerationRequest, from_recipe, to_recipe


def run(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture
def inputs(tmp_path):
    init = Image.new("RGB", (32, 32), (200, 40, 40))
    init.paste((30, 160, 60), (0, 16, 32, 32))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    init.save(tmp_path / "init.png")
    mask.save(tmp_path / "mask.png")
    return tmp_path / "init.png", tmp_path / "mask.png"


MODES = {
    "txt2img": [],
    "img2img": ["--init", "{init}", "--strength", "0.6"],
    "inpaint whole": ["--init", "{init}", "--mask", "{mask}"],
    "inpaint only masked": ["--init", "{init}", "--mask", "{mask}", "--inpaint-area", "masked", "--padding", "4"],
    "outpaint": ["--init", "{init}", "--outpaint", "8,0,8,0"],
    "batch item 2": ["--batch", "3"],
    "variation": ["--batch", "2", "--variation-seed", "77", "--variation-strength", "0.4"],
}


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_replays_from_the_saved_png_with_identical_pixels(mode, capsys, tiny_model, data_dir, inputs):
    init, mask = inputs
    extra = [a.format(init=init, mask=mask) for a in MODES[mode]]
    out = run(capsys, "generate", "--prompt", "a red circle", "--model", str(tiny_model), "--steps", "3", "--seed",
              "21", "--device", "cpu", "--data-dir", str(data_dir), "--json", *extra)
    made = json.loads(out.strip().splitlines()[-1])  # the last of a batch: item k > 0
    recipe = json.loads(run(capsys, "info", made["path"], "--json"))
    assert recipe["schema"] == 2 and recipe["seed"] == made["seed"]
    assert recipe["mode"] == {"inpaint whole": "inpaint", "inpaint only masked": "inpaint", "batch item 2": "txt2img",
                              "variation": "txt2img"}.get(mode, mode)
    replay = run(capsys, "generate", "--from", made["path"], "--device", "cpu", "--data-dir", str(data_dir), "--json")
    again = json.loads(replay.strip())
    assert again["seed"] == made["seed"]
    first, second = np.asarray(Image.open(made["path"])), np.asarray(Image.open(again["path"]))
    assert first.shape == second.shape and np.array_equal(first, second)


def test_a_replay_whose_input_image_is_gone_says_which_and_how_to_give_it(capsys, tiny_model, data_dir, inputs):
    init, _ = inputs
    out = run(capsys, "generate", "--prompt", "x", "--model", str(tiny_model), "--steps", "2", "--seed", "3",
              "--device", "cpu", "--data-dir", str(data_dir), "--json", "--init", str(init))
    made = json.loads(out)
    for kept in (data_dir / "inputs").iterdir():
        kept.unlink()
    code = main(["generate", "--from", made["path"], "--device", "cpu", "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert code != 0 and "from an input image the gallery no longer keeps" in err and "--init" in err
    assert "Error" not in err
    run(capsys, "generate", "--from", made["path"], "--init", str(init), "--device", "cpu", "--data-dir",
        str(data_dir))  # given again, it runs


def test_an_a1111_picture_with_a_64_bit_seed_and_a_version_replays_the_same_every_time(
        capsys, tiny_model, data_dir, tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red circle\nNegative prompt: blue\nSteps: 3, Sampler: Euler a, CFG scale: 5, "
                                "Seed: 98765432101234, Size: 32x32, Model: tiny, Version: v1.10.1")
    source = tmp_path / "a1111.png"
    Image.new("RGB", (32, 32)).save(source, pnginfo=info)
    recipe = json.loads(run(capsys, "info", str(source), "--json"))
    assert recipe["extra"]["original_seed"] == "98765432101234" and recipe["extra"]["Version"] == "v1.10.1"
    paths = []
    for _ in range(2):
        out = run(capsys, "generate", "--from", str(source), "--model", str(tiny_model), "--device", "cpu",
                  "--data-dir", str(data_dir), "--json")
        made = json.loads(out)
        assert made["seed"] == 98765432101234 % 2**32
        paths.append(made["path"])
    assert np.array_equal(np.asarray(Image.open(paths[0])), np.asarray(Image.open(paths[1])))


def test_the_request_is_the_recipe():
    outpaint = GenerationRequest(prompt="p", negative_prompt="n", steps=9, cfg=4.5, seed=5, width=64, height=48,
                                 scheduler="Euler a", strength=0.6, init_image=Image.new("RGB", (8, 8)),
                                 outpaint=(8, 0, 8, 0), outpaint_fill="blur", outpaint_overlap=12, model="m",
                                 vae="v", parent_id=3)
    for request in (GenerationRequest(prompt="a", seed=7, batch_size=4, variation_seed=9, variation_strength=0.3),
                    GenerationRequest(prompt="a", seed=4_294_967_295, batch_size=3), outpaint,
                    GenerationRequest(prompt="b", inpaint_area="masked", padding=8, mask_grow=-3, mask_feather=2)):
        for k in range(request.batch_size):
            assert from_recipe(to_recipe(request, k)) == request  # item k's recipe gives back its batch
        assert from_recipe(json.loads(json.dumps(to_recipe(request)))) == request  # through JSON too
