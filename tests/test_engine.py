"""The engine on the tiny random pipeline: determinism, seeds, schedulers, cancel, variants, validation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from studio.engine import Cancelled, GenerationRequest, ModelError, RequestError
from studio.recipe.request import SCHEDULERS


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


TINY = ""  # the tiny model's folder: requests name the model they want, as the GUI's and the CLI's do


@pytest.fixture(autouse=True)
def _tiny_ref(tiny_model):
    global TINY
    TINY = str(tiny_model)


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a red circle on the left", steps=3, seed=7, model=TINY)
    base.update(kw)
    return GenerationRequest(**base)


def test_a_request_for_the_builtin_model_runs_on_it_whatever_is_loaded(tiny_engine):
    result = tiny_engine.generate(request(model="builtin", steps=1))[0]
    assert result.recipe["model"]["name"] == "studio-shapes" and result.image.size == (64, 64)
    assert tiny_engine.generate(request())[0].recipe["model"]["path"] == TINY  # and back


def test_same_request_gives_identical_pixels(tiny_engine):
    a = tiny_engine.generate(request())[0].image
    b = tiny_engine.generate(request())[0].image
    assert a.size == (32, 32)
    assert np.array_equal(pixels(a), pixels(b))
    c = tiny_engine.generate(request(seed=8))[0].image
    assert not np.array_equal(pixels(a), pixels(c))


@pytest.mark.parametrize("sequential", [False, True])
def test_batch_item_k_equals_single_run_with_seed_plus_k(tiny_engine, sequential):
    batch = tiny_engine.generate(request(seed=100, batch_size=3), sequential=sequential)
    assert [r.seed for r in batch] == [100, 101, 102]
    for k, result in enumerate(batch):
        single = tiny_engine.generate(request(seed=100 + k))[0]
        # Same noise, same steps; a batched matmul may round its last bit differently from a single one
        # (MKL on Intel CPUs does), which moves a pixel by at most one level.
        assert np.abs(pixels(result.image) - pixels(single.image)).max() <= 1
        assert result.recipe["seed"] == 100 + k and result.recipe["batch_index"] == k


@pytest.mark.parametrize("sequential", [False, True])
def test_a_batch_with_a_variation_is_variations_of_one_seed(tiny_engine, sequential):
    req = request(seed=100, batch_size=3, variation_seed=500, variation_strength=0.2)
    batch = tiny_engine.generate(req, sequential=sequential)
    assert [r.seed for r in batch] == [100, 100, 100]
    assert [r.recipe["variation_seed"] for r in batch] == [500, 501, 502]
    images = [pixels(r.image) for r in batch]
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    for k, result in enumerate(batch):
        single = tiny_engine.generate(req.item(k))[0]  # what "regenerate" runs from the recipe
        # Batched matmuls may round differently from single ones: one level of 255 at most.
        assert np.abs(pixels(result.image) - pixels(single.image)).max() <= (0 if sequential else 1)
    plain = pixels(tiny_engine.generate(request(seed=100))[0].image)
    other = pixels(tiny_engine.generate(request(seed=101))[0].image)
    assert np.abs(images[1].astype(int) - plain).mean() < np.abs(other.astype(int) - plain).mean()  # small changes


def test_a_batch_that_runs_out_of_memory_falls_back_to_sequential_runs(tiny_engine, monkeypatch):
    original = tiny_engine._run
    batch_sizes = []

    def run(model, req, job, seeds, *args, **kwargs):
        batch_sizes.append(len(seeds))
        if len(seeds) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(model, req, job, seeds, *args, **kwargs)

    monkeypatch.setattr(tiny_engine, "_run", run)
    results = tiny_engine.generate(request(seed=20, batch_size=3))
    assert batch_sizes == [3, 1, 1, 1]
    assert [r.seed for r in results] == [20, 21, 22]


def test_seed_wraps_at_32_bits(tiny_engine):
    results = tiny_engine.generate(request(seed=2**32 - 1, batch_size=2))
    assert [r.seed for r in results] == [2**32 - 1, 0]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_runs_and_is_recorded(tiny_engine, name):
    result = tiny_engine.generate(request(scheduler=name, steps=2))[0]
    assert result.image.size == (32, 32)
    assert result.recipe["scheduler"] == name
    assert result.recipe["scheduler_class"].endswith("Scheduler")


def test_step_callback_reports_progress_and_previews(tiny_engine):
    seen = []
    tiny_engine.generate(request(steps=4), on_step=seen.append)
    assert [s.step for s in seen] == [1, 2, 3, 4]
    assert all(s.total == 4 for s in seen)
    assert seen[-1].preview.shape == (16, 16, 3) and seen[-1].preview.dtype == np.uint8
    assert all(b.elapsed >= a.elapsed for a, b in zip(seen, seen[1:]))


def test_cancel_stops_within_one_step_and_skips_decode(tiny_engine, monkeypatch):
    vae = tiny_engine.model.pipe.vae
    decodes = []
    original = vae.decode
    monkeypatch.setattr(vae, "decode", lambda *a, **k: decodes.append(1) or original(*a, **k))
    seen = []
    with pytest.raises(Cancelled):
        tiny_engine.generate(request(steps=10), on_step=seen.append, should_stop=lambda: len(seen) >= 2)
    assert len(seen) == 2
    assert decodes == []


def test_variants_share_weights_with_text_to_image(tiny_engine):
    model = tiny_engine.model
    for mode in ("img2img", "inpaint"):
        variant = model.variant(mode)
        assert variant.unet is model.pipe.unet
        assert variant.vae is model.pipe.vae
        assert variant.text_encoder is model.pipe.text_encoder
        assert model.variant(mode) is variant  # made once


def test_img2img_keeps_size_and_records_strength(tiny_engine):
    init = Image.new("RGB", (40, 32), (200, 30, 30))
    result = tiny_engine.generate(request(init_image=init, strength=0.5))[0]
    assert result.image.size == (40, 32)
    assert result.recipe["mode"] == "img2img" and result.recipe["strength"] == 0.5
    assert result.recipe["init_image_hash"]


@pytest.mark.parametrize("area", ["whole", "masked"])
def test_inpaint_keeps_unmasked_pixels_exactly(tiny_engine, area):
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (40, 40, 56, 56))
    result = tiny_engine.generate(request(init_image=init, mask=mask, mask_feather=2, inpaint_area=area,
                                          padding=8))[0]
    out, src = pixels(result.image), pixels(init)
    outside = np.ones((64, 64), bool)
    outside[30:64, 30:64] = False  # the mask plus feather margin
    assert np.array_equal(out[outside], src[outside])
    assert not np.array_equal(out[44:52, 44:52], src[44:52, 44:52])
    assert result.recipe["mode"] == "inpaint" and result.recipe["inpaint_area"] == area


def test_outpaint_grows_the_image_and_keeps_the_original(tiny_engine):
    rng = np.random.default_rng(1)
    init = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    result = tiny_engine.generate(request(init_image=init, outpaint=(16, 0, 16, 8), outpaint_overlap=8))[0]
    assert result.image.size == (64, 40)
    inner = pixels(result.image)[0:24, 16 + 8:48 - 8]  # away from the 8 px overlap ramps
    assert np.array_equal(inner, pixels(init)[0:24, 8:24])
    assert result.recipe["mode"] == "outpaint" and result.recipe["outpaint"] == [16, 0, 16, 8]


def test_variation_strength_interpolates_between_seeds(tiny_engine):
    base = tiny_engine.generate(request(seed=5))[0].image
    other = tiny_engine.generate(request(seed=9))[0].image
    zero = tiny_engine.generate(request(seed=5, variation_seed=9, variation_strength=0.0))[0].image
    full = tiny_engine.generate(request(seed=5, variation_seed=9, variation_strength=1.0))[0]
    half = tiny_engine.generate(request(seed=5, variation_seed=9, variation_strength=0.5))[0].image
    assert np.array_equal(pixels(zero), pixels(base))
    assert np.abs(pixels(full.image) - pixels(other)).max() <= 1
    assert not np.array_equal(pixels(half), pixels(base))
    assert full.recipe["variation_seed"] == 9 and full.recipe["variation_strength"] == 1.0


def test_slerp_endpoints_and_norm():
    import torch

    from studio.engine.generate import slerp

    a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    assert torch.allclose(slerp(0.0, a, b), a)
    assert torch.allclose(slerp(1.0, a, b), b, atol=1e-5)
    mid = slerp(0.5, a, b)
    # unlike a straight blend, slerp keeps the noise's magnitude (so the image stays sharp)
    assert abs(mid.norm() / a.norm() - 1) < 0.1
    assert ((a + b) / 2).norm() / a.norm() < 0.85


@pytest.mark.parametrize("fields, message", [
    (dict(steps=0), "steps must be between 1 and 150"),
    (dict(cfg=50.0), "guidance (CFG) must be between 1 and 30"),
    (dict(seed=-1), "the seed must be between 0 and"),
    (dict(width=100, height=64), "width must be a multiple of 8 (got 100; try 104)"),
    (dict(scheduler="Fancy"), "unknown scheduler 'Fancy'"),
    (dict(batch_size=0), "batch size must be between 1 and 16"),
    (dict(strength=0.0), "strength must be above 0"),
    (dict(mask=Image.new("L", (8, 8))), "a mask needs an image to repaint"),
    (dict(init_image=Image.new("RGB", (64, 48)), mask=Image.new("L", (64, 64))),
     "the mask is 64x64 but the image is 64x48"),
    (dict(init_image=Image.new("RGB", (64, 64)), outpaint=(0, 0, 0, 0)), "outpaint takes four pixel counts"),
])
def test_validation_gives_precise_messages(fields, message):
    with pytest.raises(RequestError) as err:
        request(**fields).validate()
    assert message in str(err.value)


def test_empty_mask_is_refused_with_a_reason(tiny_engine):
    init = Image.new("RGB", (32, 32), "white")
    with pytest.raises(RequestError, match="(?i)empty|nothing"):
        tiny_engine.generate(request(init_image=init, mask=Image.new("L", (32, 32), 0)))


def test_bad_model_references_are_explained(tmp_path):
    from studio.engine.models import resolve

    with pytest.raises(ModelError, match="no model named or at"):
        resolve(str(tmp_path / "nope"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelError, match="not a diffusers pipeline folder"):
        resolve(str(tmp_path / "folder"))
    (tmp_path / "folder" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ModelError, match="lists no components"):
        resolve(str(tmp_path / "folder"))
    (tmp_path / "folder" / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],'
        ' "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [null, null]}')
    (tmp_path / "folder" / "vae").mkdir()
    with pytest.raises(ModelError, match="incomplete: model_index.json lists unet but"):
        resolve(str(tmp_path / "folder"))
    (tmp_path / "folder" / "model_index.json").write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        resolve(str(tmp_path / "folder"))
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not really a pickle")
    assert resolve(str(ckpt)).kind == "single-file"  # read later through the weights-only unpickler
    with pytest.raises(ModelError, match="not a model: expected a diffusers folder or a checkpoint file"):
        (tmp_path / "model.txt").write_text("x")
        resolve(str(tmp_path / "model.txt"))


def test_a_broken_model_folder_fails_to_load_cleanly(tmp_path, tiny_model):
    import shutil

    from studio.engine import Engine

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    weights = next((broken / "unet").glob("*.safetensors"))
    weights.write_bytes(b"garbage")
    with pytest.raises(ModelError, match="could not load the model"):
        Engine(device="cpu").load(str(broken))


def test_engine_and_gallery_never_import_qt():
    code = ("import sys, studio.engine.generate, studio.recipe.metadata, studio.engine.canvas_ops, studio.gallery;"
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'PyQt'))]; print(bad); sys.exit(bool(bad))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    code = "import sys, studio.gallery; sys.exit('torch' in sys.modules or 'diffusers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize("text, expected", [
    ('{"cfg": 3}', 3.0), ('{"cfg": 2.5, "other": 1}', 2.5),
    (None, None), ("not json", None), ('["cfg"]', None), ('{"cfg": true}', None), ('{"cfg": 0.5}', None),
    ('{"cfg": "3"}', None),
])
def test_a_model_folder_may_suggest_its_guidance_and_a_bad_suggestion_is_none(tmp_path, text, expected):
    from studio.engine.models import ModelEntry

    if text is not None:
        (tmp_path / "studio.json").write_text(text)
    assert ModelEntry("m", tmp_path, "diffusers").suggested_cfg() == expected


def test_variations_are_refused_where_their_noise_cannot_reach(tiny_engine):
    """img2img and inpaint draw their noise inside diffusers: a variation there would give N identical
    pictures whose recipes claim N variation seeds, so it is refused with the reason instead."""
    from PIL import Image

    init = Image.new("RGB", (32, 32), (200, 30, 30))
    with pytest.raises(RequestError, match="variations .* work in text-to-image only"):
        tiny_engine.generate(request(init_image=init, variation_seed=3, variation_strength=0.2, batch_size=2))
    assert len(tiny_engine.generate(request(variation_seed=3, variation_strength=0.2, batch_size=2))) == 2


@pytest.mark.parametrize("scheduler", ["Euler a", "DPM++ 2M"])
def test_every_sampler_gives_the_same_picture_for_the_same_seed_even_the_ancestral_ones(tiny_engine, scheduler):
    import torch

    first = tiny_engine.generate(request(seed=3, scheduler=scheduler))[0].image
    torch.manual_seed(12345)  # whatever the global generator holds must not matter
    again = tiny_engine.generate(request(seed=3, scheduler=scheduler))[0].image
    assert np.array_equal(pixels(first), pixels(again))
