"""Hires fix: two passes in one generation, its A1111 infotext, and exact replay from its recipe."""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine import Cancelled, GenerationRequest, RequestError
from studio.recipe.metadata import format_parameters, parse_parameters, read_recipe
from studio.recipe.request import from_recipe, pass_steps


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture
def hires(tiny_model):
    def make(**kw) -> GenerationRequest:
        base = dict(prompt="a red circle on the left", steps=3, seed=11, model=str(tiny_model), hires_scale=2.0,
                    hires_steps=2, hires_denoise=0.5)
        base.update(kw)
        return GenerationRequest(**base)
    return make


def test_hires_fix_replays_to_identical_pixels_from_its_saved_recipe(tiny_engine, hires, data_dir):
    from studio.gallery import Gallery

    result = tiny_engine.generate(hires())[0]
    assert result.image.size == (64, 64)  # the tiny model draws 32 px; scale 2
    assert result.recipe["width"] == 32 and result.recipe["hires_scale"] == 2.0  # Size is pass 1's, as A1111's
    gallery = Gallery(data_dir)
    image_id = gallery.save(result.image, result.recipe)
    saved = read_recipe(gallery.get(image_id).file)
    again = tiny_engine.generate(from_recipe(saved))[0]
    assert np.array_equal(pixels(again.image), pixels(result.image))
    # The second pass did change the upscaled first pass (it is not a plain resize).
    plain = tiny_engine.generate(hires(hires_scale=None))[0].image.resize((64, 64))
    assert np.abs(pixels(plain) - pixels(result.image)).mean() > 1


def test_one_progress_count_runs_through_both_passes_with_previews_at_both_sizes(tiny_engine, hires):
    seen = []
    tiny_engine.generate(hires(steps=4, hires_steps=3), on_step=seen.append)
    steps = [info.step for info in seen]
    assert steps == sorted(steps) and steps[-1] == seen[-1].total
    assert seen[-1].total == 4 + 3  # every denoising step of both passes, and exactly the hires steps asked for
    assert all(info.total == 7 for info in seen)  # the total is known from the first step on
    sizes = {info.preview.shape[:2] for info in seen if info.preview is not None}
    assert {(32, 32), (64, 64)} <= sizes


def test_cancel_in_the_second_pass_stops_the_run(tiny_engine, hires):
    seen = []

    def stop() -> bool:
        return any(info.step > 3 for info in seen)

    with pytest.raises(Cancelled):
        tiny_engine.generate(hires(steps=3, hires_steps=3), on_step=seen.append, should_stop=stop)
    assert max(info.step for info in seen) < 6


def test_an_esrgan_file_from_the_library_upscales_between_the_passes(tiny_engine, hires):
    from tests.test_upscale import _tiny_esrgan

    folder = tiny_engine.data_dir / "models" / "ESRGAN"
    folder.mkdir(parents=True, exist_ok=True)
    _tiny_esrgan(folder / "4x-tiny.pth")
    with_model = tiny_engine.generate(hires(hires_upscaler="4x-tiny"))[0]
    with_lanczos = tiny_engine.generate(hires())[0]
    assert with_model.image.size == (64, 64) and with_model.recipe["hires_upscaler"] == "4x-tiny"
    assert not np.array_equal(pixels(with_model.image), pixels(with_lanczos.image))
    assert "Hires upscaler: 4x-tiny" in format_parameters(with_model.recipe)


def test_infotext_carries_the_hires_keys_as_a1111_writes_them(tiny_engine, hires):
    recipe = tiny_engine.generate(hires(hires_denoise=0.45))[0].recipe
    text = format_parameters(recipe)
    assert "Size: 32x32" in text
    assert "Denoising strength: 0.45, Hires upscale: 2, Hires steps: 2, Hires upscaler: Lanczos" in text
    back = parse_parameters(text)
    assert (back["hires_scale"], back["hires_steps"], back["hires_denoise"], back["hires_upscaler"]) == \
        (2.0, 2, 0.45, "Lanczos")
    assert back["mode"] == "txt2img"


def test_an_a1111_hires_image_reads_back_into_a_hires_request():
    text = ("a castle\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, "
            "Denoising strength: 0.7, Hires upscale: 1.5, Hires steps: 10, Hires upscaler: 4x-UltraSharp, "
            "Version: v1.9.0")
    request = from_recipe(parse_parameters(text))
    assert (request.hires_scale, request.hires_steps, request.hires_denoise, request.hires_upscaler) == \
        (1.5, 10, 0.7, "4x-UltraSharp")
    assert request.strength == GenerationRequest("x").strength and request.mode == "txt2img"
    request.validate()


def test_a1111s_latent_upscaler_is_refused_with_what_to_choose(tiny_engine, hires):
    with pytest.raises(RequestError, match="choose Lanczos"):
        tiny_engine.generate(hires(hires_upscaler="Latent (nearest-exact)"))


@pytest.mark.parametrize(("change", "message"), [
    (dict(hires_scale=9.0), "hires scale must be between 1 and 8"),
    (dict(hires_denoise=0.0), "hires denoise must be above 0"),
    (dict(hires_steps=20, hires_denoise=0.1), "more than 150"),
    (dict(width=1024, height=1024, hires_scale=8.0), "the most is 4096"),
])
def test_hires_settings_are_checked_up_front(hires, change, message):
    with pytest.raises(RequestError, match=message):
        hires(**change).validate()


def test_hires_is_text_to_image_only(hires):
    from PIL import Image

    with pytest.raises(RequestError, match="text-to-image"):
        hires(init_image=Image.new("RGB", (32, 32))).validate()


@pytest.mark.parametrize(("steps", "denoise"), [(20, 0.7), (15, 0.5), (15, 0.3), (7, 0.33), (1, 1.0), (10, 0.15),
                                               (29, 0.29)])
def test_pass_steps_runs_exactly_the_hires_steps_in_diffusers_img2img(steps, denoise):
    # diffusers' get_timesteps: SD/SDXL img2img keep int(N * strength) steps; FLUX/SD 3 keep N - int(N - N * s).
    n = pass_steps(steps, denoise)
    assert min(int(n * denoise), n) == steps
    n = pass_steps(steps, denoise, flow=True)
    assert n - int(max(n - min(n * denoise, n), 0)) == steps
