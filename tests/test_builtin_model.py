"""The shipped built-in model: it loads through the studio's own loader, is deterministic, follows prompts.

The full evaluation is `python -m studio.eval_builtin`; here a dozen fixed prompts must stay above a
floor that only a broken model or a broken loader falls under.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from studio.builtin import judge, world
from studio.engine import Engine, GenerationRequest
from studio.engine.models import list_models, resolve
from studio.recipe.request import SCHEDULERS
from studio.resources import BUILTIN_MODEL, BUILTIN_MODEL_NAME

pytestmark = pytest.mark.builtin


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = Engine(device="cpu", data_dir=tmp_path_factory.mktemp("builtin-home"))
    e.load("builtin")
    return e


def test_the_builtin_model_is_shipped_small_and_as_safetensors():
    entry = resolve("builtin")
    assert entry.name == BUILTIN_MODEL_NAME and entry.kind == "builtin"
    assert list_models()[0] == entry
    files = [p for p in BUILTIN_MODEL.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 30 * 2**20
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".ckpt", ".pt")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert (BUILTIN_MODEL / "README.md").exists()


def test_loads_through_the_studio_loader_at_its_native_size(engine):
    assert engine.model.entry.kind == "builtin"
    assert engine.model.native_size == world.SIZE
    assert engine.model.pipe.unet.dtype.is_floating_point


def test_a_fixed_seed_is_deterministic(engine):
    req = GenerationRequest(prompt="a large red circle in the center, blue background", steps=10, seed=3, cfg=5.0)
    a = np.asarray(engine.generate(req)[0].image)
    b = np.asarray(engine.generate(req)[0].image)
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)


@pytest.mark.slow
def test_prompt_adherence_on_a_fixed_dozen_stays_above_a_floor(engine):
    rng = random.Random(1234)
    scenes = []
    while len(scenes) < 12:
        scene = world.random_scene(rng)
        if isinstance(scene, world.LandscapeScene) or len(scene.objects) == 1:
            scenes.append(scene)
    hits: dict[str, list[bool]] = {}
    for k, scene in enumerate(scenes):
        image = engine.generate(GenerationRequest(prompt=scene.caption(), steps=20, cfg=5.0, seed=k))[0].image
        for attribute, ok in judge.score(scene, image).items():
            hits.setdefault(attribute, []).append(ok)
    rates = {a: sum(v) / len(v) for a, v in hits.items()}
    # A broken model or loader scores at chance (1/8 colours, 1/5 positions) or below.
    assert rates["background"] >= 0.6, rates
    assert rates["colour"] >= 0.5, rates
    assert rates["position"] >= 0.6, rates
    assert rates.get("time", 1.0) >= 0.6, rates


def test_every_sampler_uses_the_shipped_zero_snr_schedule_and_draws_the_prompt(engine):
    """The schedule travels as `trained_betas`, so samplers without diffusers' rescale option get it too."""
    from studio.engine.schedulers import make_scheduler

    scene = world.ShapeScene(background="blue", objects=(world.ShapeObject("large", "red", "circle", "in the center"),))
    for name in SCHEDULERS:
        scheduler = make_scheduler(name, engine.model.scheduler_config)
        assert scheduler.config.prediction_type == "v_prediction"
        assert float(scheduler.alphas_cumprod[-1]) < 1e-6  # the last training step is pure noise
        scheduler.set_timesteps(20)
        assert int(scheduler.timesteps[0]) == 999  # trailing spacing: sampling starts from pure noise
        image = engine.generate(GenerationRequest(prompt=scene.caption(), steps=20, cfg=5.0, seed=5,
                                                  scheduler=name))[0].image
        assert judge.score(scene, image)["background"], name


def test_negative_prompt_pushes_the_image_away_from_it(engine):
    base = dict(prompt="a large red circle in the center, blue background", steps=12, seed=9, cfg=5.0)
    plain = np.asarray(engine.generate(GenerationRequest(**base))[0].image, dtype=np.int16)
    negated = np.asarray(engine.generate(GenerationRequest(**base, negative_prompt="red"))[0].image, dtype=np.int16)
    assert np.abs(plain - negated).mean() > 2.0
    middle_red = plain[24:40, 24:40, 0].mean(), negated[24:40, 24:40, 0].mean()  # the object's middle
    assert middle_red[1] < middle_red[0] - 5


@pytest.mark.slow  # a fresh interpreter importing diffusers: about 15 s on 2 cores
def test_the_model_card_snippet_runs_in_plain_diffusers(tmp_path):
    """The card's Python block, run as a user would (a fresh interpreter, no Studio code), draws its prompt.
    Stored fp16 weights once loaded as an fp16 text encoder beside an fp32 UNet (transformers 5) and the
    snippet failed with "mat1 and mat2 must have the same dtype"."""
    import re
    import subprocess
    import sys

    from PIL import Image

    card = (BUILTIN_MODEL / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", card, re.S)
    assert "from_pretrained(\"path/to/studio-shapes\")" in snippet
    script = tmp_path / "card.py"
    script.write_text(snippet.replace("path/to/studio-shapes", BUILTIN_MODEL.as_posix()))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    image = Image.open(tmp_path / "star.png")
    scene = world.ShapeScene(background="blue", objects=(world.ShapeObject("large", "red", "star", "in the center"),))
    assert image.size == (world.SIZE, world.SIZE) and judge.score(scene, image)["background"]
