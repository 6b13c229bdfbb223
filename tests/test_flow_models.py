"""FLUX and SD 3 (flow-matching transformers) through the same engine: tiny random pipelines built from
config dicts, saved as diffusers folders and opened by Studio's loader."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.engine import Cancelled, Engine, GenerationRequest
from studio.resources import CONFIGS


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from tests.tiny_flow import build_flux, build_sd3

    root = tmp_path_factory.mktemp("flow")
    return {"flux": build_flux(root / "flux"), "sd3": build_sd3(root / "sd3")}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(device="cpu", data_dir=tmp_path_factory.mktemp("home"))


def request(folder, **kw) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a red circle", "steps": 3, "width": 64, "height": 64, "seed": 4,
                                "cfg": 3.5, "model": str(folder), **kw})


def test_the_shipped_t5_tokenizer_follows_sentencepiece_conventions():
    from transformers import T5TokenizerFast

    tok = T5TokenizerFast.from_pretrained(str(CONFIGS / "t5-tokenizer"))
    ids = tok("a photo of a cat", padding="max_length", max_length=12)["input_ids"]
    assert ids[:8] == [3, 9, 1202, 13, 3, 9, 1712, 1]  # "▁", "a", "▁photo", "▁of", …, "▁cat", </s>
    assert tok.eos_token_id == 1 and tok.pad_token_id == 0 and ids[8:] == [0] * 4
    assert "Apache License" in (CONFIGS / "t5-tokenizer" / "LICENSE").read_text()


@pytest.mark.parametrize("family,label", [("flux", "FLUX"), ("sd3", "SD 3")])
def test_flow_models_generate_with_previews_in_every_mode(engine, folders, family, label):
    loaded = engine.load(str(folders[family]))
    assert loaded.label == label and loaded.flow
    steps = []
    first = engine.generate(request(folders[family]), on_step=steps.append)[0]
    assert [s.step for s in steps] == [1, 2, 3]
    assert all(s.preview is not None and s.preview.shape == (32, 32, 3) for s in steps)
    assert first.recipe["scheduler_class"] == "FlowMatchEulerDiscreteScheduler"
    assert np.array_equal(pixels(first.image), pixels(engine.generate(request(folders[family]))[0].image))
    assert not np.array_equal(pixels(first.image), pixels(engine.generate(request(folders[family], seed=5))[0].image))
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    img2img = engine.generate(request(folders[family], init_image=init, strength=0.6))[0]
    assert img2img.recipe["mode"] == "img2img" and img2img.image.size == (64, 64)
    inpainted = engine.generate(request(folders[family], init_image=init, mask=mask, mask_feather=0))[0]
    assert np.array_equal(pixels(inpainted.image)[:12], pixels(init)[:12])  # outside the mask: exact
    assert not np.array_equal(pixels(inpainted.image)[24:40, 24:40], pixels(init)[24:40, 24:40])


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_flow_variations_equal_their_single_runs_and_cancel_lands_inside_a_step(engine, folders, family):
    varied = request(folders[family], batch_size=2, variation_seed=9, variation_strength=0.3)
    batch = engine.generate(varied)
    for k, result in enumerate(batch):
        assert np.abs(pixels(result.image) - pixels(engine.generate(varied.item(k))[0].image)).max() <= 1
    assert not np.array_equal(pixels(batch[0].image), pixels(batch[1].image))
    blocks = len(engine.model.blocks())
    checks = []

    def stop() -> bool:
        checks.append(1)
        return len(checks) > blocks + 3  # the first step's checks, then two blocks into the second

    with pytest.raises(Cancelled):
        engine.generate(request(folders[family], steps=4), should_stop=stop)
    assert len(checks) == blocks + 4


def test_sd3_reads_the_negative_prompt_and_flux_has_none(engine, folders):
    plain = engine.generate(request(folders["sd3"]))[0]
    negated = engine.generate(request(folders["sd3"], negative_prompt="blue"))[0]
    assert not np.array_equal(pixels(plain.image), pixels(negated.image))
    flux = engine.generate(request(folders["flux"]))[0]
    flux_negated = engine.generate(request(folders["flux"], negative_prompt="blue"))[0]
    assert np.array_equal(pixels(flux.image), pixels(flux_negated.image))  # distilled guidance: nothing to negate
    assert flux.recipe["cfg"] == 3.5  # FLUX's guidance, as the model reads it
