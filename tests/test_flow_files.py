"""FLUX and SD 3 single files as people download them: a FLUX transformer alone (Black Forest Labs' keys)
with CLIP-L, T5-XXL and the autoencoder found in ComfyUI's folders of the model library; SD 3.5 files with
their VAE and some or all text encoders inside. Tiny random models written in those layouts and opened by
Studio's loader must equal the pipelines they were written from."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from studio.bench import flow_checkpoint_files as files
from studio.bench.checkpoint_files import save
from studio.engine import Cancelled, Engine, GenerationRequest, library, models
from studio.engine.memory import MemoryPlan
from studio.recipe.errors import ModelError
from tests.tiny_flow import flux_pipeline, sd3_pipeline


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def same_weights(a, b) -> list[str]:
    """The names of `b`'s tensors that `a` lacks or holds differently."""
    mine, theirs = a.state_dict(), b.state_dict()
    return [k for k in theirs if k not in mine or not torch.equal(mine[k], theirs[k])]


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    """A FLUX.1 dev transformer file and its parts in ComfyUI's layout, in a library folder."""
    root = tmp_path_factory.mktemp("comfy")
    parts = files.flux_components(files.flux_configs())
    paths = files.write_flux_files(root / "models", parts)
    data = tmp_path_factory.mktemp("data")
    library.add_folder(data, root / "models")
    return {"parts": parts, "paths": paths, "data": data, "root": root}


def run(pipe, **kw):
    kw = {"prompt": "a red square", "num_inference_steps": 2, "width": 64, "height": 64, "output_type": "np", **kw}
    return pipe(generator=torch.Generator().manual_seed(1), **kw).images


def test_flux_key_table_equals_diffusers_converter_at_flux1_width():
    """diffusers' own converter works at FLUX.1's width only; Studio's table must agree with it there.
    Each row of each tensor holds its row number (expanded, so no memory), so any misplaced slice shows."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from studio.engine.key_tables import FLUX

    with init_empty_weights():
        full = FluxTransformer2DModel(num_layers=1, num_single_layers=1, guidance_embeds=True)

    def rows(shape):
        numbers = torch.arange(shape[0], dtype=torch.float32)
        return numbers.unsqueeze(1).expand(*shape) if len(shape) == 2 else numbers

    state = {k: rows(v.shape) for k, v in full.state_dict().items()}
    original = FLUX.to_original(state)
    assert "single_blocks.0.linear1.weight" in original and original["img_in.weight"].shape == (3072, 64)
    ours = FLUX.to_diffusers(dict(original), 3072)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    assert ours.keys() == theirs.keys() == state.keys()
    for key in state:
        assert torch.equal(ours[key][..., 0] if ours[key].dim() == 2 else ours[key],
                           theirs[key][..., 0] if theirs[key].dim() == 2 else theirs[key]), key
        assert torch.equal(ours[key].flatten()[:50], state[key].flatten()[:50]), key


def test_a_flux_transformer_file_opens_with_clip_t5_and_vae_from_the_library(flux):
    items = {i.name: i for i in library.scan(flux["data"])}
    assert items["flux1-dev"].kind is library.ItemKind.CHECKPOINT and items["flux1-dev"].family == "FLUX.1 dev"
    assert items["t5xxl_fp16"].kind is library.ItemKind.TEXT_ENCODER and "T5" in items["t5xxl_fp16"].family
    assert items["clip_l"].kind is library.ItemKind.TEXT_ENCODER and items["ae"].kind is library.ItemKind.VAE
    assert items["ae"].family == "FLUX / SD 3"  # 16 latent channels

    engine = Engine(device="cpu", data_dir=flux["data"])
    said = []
    engine.load("flux1-dev", on_progress=said.append)
    model = engine.model
    assert model.label == "FLUX.1 dev" and model.flux and not model.fill
    assert "T5-XXL from t5xxl_fp16.safetensors" in said[-1] and "VAE from ae.safetensors" in said[-1]
    reference = flux_pipeline(flux["parts"])
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        assert same_weights(getattr(model.pipe, name), getattr(reference, name)) == [], name
    assert np.array_equal(run(model.pipe, guidance_scale=3.5), run(reference, guidance_scale=3.5))

    steps = []
    request = GenerationRequest(prompt="a red square", steps=3, width=64, height=64, seed=2, cfg=3.5,
                                model="flux1-dev", batch_size=2, variation_seed=5, variation_strength=0.4)
    batch = engine.generate(request, on_step=steps.append)
    assert [s.step for s in steps] == [1, 2, 3] and steps[-1].preview is not None
    assert batch[0].recipe["model"]["family"] == "FLUX.1 dev"
    assert np.abs(pixels(batch[1].image) - pixels(engine.generate(request.item(1))[0].image)).max() <= 1

    checks = []

    def stop() -> bool:
        checks.append(1)
        return len(checks) > len(model.blocks()) + 2  # two blocks into the second step

    with pytest.raises(Cancelled):
        engine.generate(request.item(0), should_stop=stop)


def test_an_all_in_one_flux_file_with_comfyui_prefixes_opens_alone(tmp_path, flux):
    parts = flux["parts"]
    state = files.flux_transformer_tensors(parts["transformer"], files.DIFFUSION)
    state.update(files.clip_tensors(parts["clip_l"], files.TEXT.format("clip_l")))
    state.update(files.t5_tensors(parts["t5"], files.TEXT.format("t5xxl")))
    state.update(files.vae_tensors(parts["vae"], "vae."))
    path = save(state, tmp_path / "flux1-dev-all.safetensors", torch.bfloat16)
    model = models.load(models.resolve(str(path)), "cpu", data_dir=tmp_path / "empty")
    assert model.parts == "CLIP-L, T5-XXL, VAE in the file"
    assert model.pipe.transformer.dtype == torch.float32  # a bf16 file runs in the CPU's fp32
    expected = parts["transformer"].state_dict()["transformer_blocks.0.attn.to_q.weight"].to(torch.bfloat16)
    assert torch.equal(model.pipe.transformer.state_dict()["transformer_blocks.0.attn.to_q.weight"], expected.float())


def test_sd35_file_with_clips_inside_takes_an_fp8_t5_from_the_library(tmp_path):
    parts = files.sd3_components(files.sd3_configs())
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "text_encoders").mkdir()
    save(files.sd3_state_dict(parts, ("clip_l", "clip_g")),
         tmp_path / "models" / "checkpoints" / "sd3.5_medium.safetensors")
    save(files.t5_tensors(parts["t5"]), tmp_path / "models" / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors",
         torch.float8_e4m3fn)
    data = tmp_path / "data"
    library.add_folder(data, tmp_path / "models")
    model = models.load(models.resolve("sd3.5_medium", data), "cpu", data_dir=data)
    assert model.label == "SD 3.5 medium" and model.flow and not model.flux
    assert model.parts == "CLIP-L, CLIP-G, VAE in the file; T5-XXL from t5xxl_fp8_e4m3fn.safetensors"
    reference = sd3_pipeline(parts)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        assert same_weights(getattr(model.pipe, name), getattr(reference, name)) == [], name
    t5 = parts["t5"].state_dict()["encoder.block.0.layer.0.SelfAttention.q.weight"]
    loaded = model.pipe.text_encoder_3.state_dict()["encoder.block.0.layer.0.SelfAttention.q.weight"]
    assert torch.equal(loaded, t5.to(torch.float8_e4m3fn).float())  # fp8 widened, not reinterpreted

    # With the T5 inside as well, the file draws exactly what the pipeline it was written from draws.
    whole = save(files.sd3_state_dict(parts), tmp_path / "sd3.5_medium_incl_t5.safetensors")
    model = models.load(models.resolve(str(whole)), "cpu", data_dir=tmp_path / "empty")
    assert np.array_equal(run(model.pipe, guidance_scale=4.5, negative_prompt="blue"),
                          run(reference, guidance_scale=4.5, negative_prompt="blue"))


def test_a_missing_t5_names_the_file_and_every_place_it_looked(tmp_path, flux):
    models_dir = tmp_path / "models"
    shutil.copytree(flux["root"] / "models", models_dir)
    (models_dir / "text_encoders" / "t5xxl_fp16.safetensors").unlink()
    data = tmp_path / "data"
    library.add_folder(data, models_dir)
    engine = Engine(device="cpu", data_dir=data)
    with pytest.raises(ModelError) as caught:
        engine.load(str(models_dir / "diffusion_models" / "flux1-dev.safetensors"))
    message = str(caught.value)
    assert "without its T5-XXL text encoder, 32 wide" in message
    assert "t5xxl_fp16.safetensors" in message and str(models_dir) in message and str(data / "models") in message
    assert "clip_l.safetensors" in message  # what the library has instead
    assert engine.model is None


def test_a_text_encoder_of_the_wrong_width_is_refused_before_any_weights_are_read(tmp_path, flux, monkeypatch):
    from studio.engine import flow_files

    models_dir = tmp_path / "models"
    shutil.copytree(flux["root"] / "models", models_dir)
    wide = files.flux_components({**files.flux_configs(), "t5": dict(width=64, layers=1, heads=4, ff=64)})["t5"]
    save(files.t5_tensors(wide), models_dir / "text_encoders" / "t5xxl_fp16.safetensors")
    data = tmp_path / "data"
    library.add_folder(data, models_dir)

    def no_reading(path):
        raise AssertionError(f"weights of {path.name} were read")

    monkeypatch.setattr(flow_files, "_all_tensors", no_reading)
    with pytest.raises(ModelError, match="t5xxl_fp16.safetensors is a 64-wide text encoder, but flux1-dev"):
        models.load(models.resolve(str(models_dir / "diffusion_models" / "flux1-dev.safetensors")), "cpu",
                    data_dir=data)


def test_flux_encoders_come_from_a_flux_diffusers_folder_when_no_separate_files_exist(tmp_path, flux):
    models_dir = tmp_path / "models"
    (models_dir / "unet").mkdir(parents=True)
    shutil.copy(flux["paths"]["transformer"], models_dir / "unet" / "my-flux-finetune.safetensors")
    flux_pipeline(flux["parts"]).save_pretrained(models_dir / "FLUX.1-dev", safe_serialization=True)
    data = tmp_path / "data"
    library.add_folder(data, models_dir)
    model = models.load(models.resolve("my-flux-finetune", data), "cpu", data_dir=data)
    assert "T5-XXL from FLUX.1-dev/text_encoder_2" in model.parts
    assert same_weights(model.pipe.text_encoder_2, flux["parts"]["t5"]) == []


def test_flux_fill_repaints_inside_the_mask_and_draws_from_text_alone(tmp_path, flux):
    parts = {**flux["parts"], **files.flux_components(files.flux_configs(fill=True), seed=3)}
    path = save(files.flux_transformer_tensors(parts["transformer"]), tmp_path / "flux1-fill-dev.safetensors")
    engine = Engine(device="cpu", data_dir=flux["data"])
    engine.load(str(path))
    assert engine.model.label == "FLUX.1 Fill" and engine.model.fill and engine.model.suggested_cfg() == 30.0
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    base = dict(prompt="a blue circle", steps=2, width=64, height=64, seed=3, cfg=30.0, model=str(path))
    inpainted = engine.generate(GenerationRequest(**base, init_image=init, mask=mask, mask_feather=0))[0]
    assert np.array_equal(pixels(inpainted.image)[:12], pixels(init)[:12])
    assert not np.array_equal(pixels(inpainted.image)[24:40, 24:40], pixels(init)[24:40, 24:40])
    drawn = engine.generate(GenerationRequest(**base))[0]
    assert drawn.image.size == (64, 64) and pixels(drawn.image).std() > 0


def test_schnell_suggests_its_four_steps_and_samples_without_shift(tmp_path, flux):
    parts = files.flux_components(files.flux_configs(schnell=True))
    path = save(files.flux_transformer_tensors(parts["transformer"]), tmp_path / "flux1-schnell.safetensors")
    model = models.load(models.resolve(str(path)), "cpu", data_dir=flux["data"])
    assert model.label == "FLUX.1 schnell" and model.suggested_steps() == 4 and not model.guidance_distilled
    assert model.scheduler_config["use_dynamic_shifting"] is False and model.scheduler_config["shift"] == 1.0


def test_a_flux_control_model_is_named_and_refused(tmp_path):
    parts = files.flux_components({**files.flux_configs(), "transformer": {
        **files.flux_configs()["transformer"], "in_channels": 128}})
    path = save(files.flux_transformer_tensors(parts["transformer"]), tmp_path / "flux1-depth-dev.safetensors")
    with pytest.raises(ModelError, match="flux1-depth-dev.safetensors is a FLUX.1 control model"):
        models.load(models.resolve(str(path)), "cpu", data_dir=tmp_path)


def test_auto_memory_stores_a_flow_transformer_in_fp8_when_only_that_fits(flux):
    from studio.engine.memory import GIB, MemoryPreset, apply, plan

    cuda = torch.device("cuda")
    # FLUX.1 dev in bf16: a 23.8 GB transformer of 33.7 GB with its encoders and VAE.
    whole, transformer = int(33.7 * GIB), int(23.8 * GIB)
    assert plan("auto", cuda, whole, 80 * GIB, transformer) == MemoryPlan(MemoryPreset.HIGH, True)
    fp8 = plan("auto", cuda, whole, 40 * GIB, transformer)  # a 48 GB card
    assert fp8 == MemoryPlan(MemoryPreset.HIGH, True, fp8=True) and "fp8" in fp8.describe()
    assert plan("auto", cuda, whole, 40 * GIB, 0).preset is MemoryPreset.LOW  # a UNet model: no fp8 offered
    assert plan("auto", cuda, whole, 16 * GIB, transformer).preset is MemoryPreset.LOWEST

    model = models.load(models.resolve(str(flux["paths"]["transformer"])), "cpu", data_dir=flux["data"])
    before = run(model.pipe, guidance_scale=3.5)
    apply(model.pipe, model.device, fp8)
    weight = model.pipe.transformer.transformer_blocks[0].attn.to_q.weight
    assert weight.dtype == torch.float8_e4m3fn
    after = run(model.pipe, guidance_scale=3.5)
    assert not np.array_equal(before, after) and np.abs(before - after).mean() < 0.05
