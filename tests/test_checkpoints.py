"""Single-file checkpoints in the original layout open offline: SD 1.x, 2.x, XL, inpainting, v-prediction,
fp16/bf16, EMA keys, weights-only .ckpt; bad files are refused with the reason and change nothing."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from studio.bench import checkpoint_files as F
from studio.engine import Engine, GenerationRequest, ModelError
from studio.engine import checkpoints as C
from studio.resources import CONFIGS


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny random checkpoints of every family, written once for the module: name -> path."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "sd1": F.write_checkpoint(folder / "sd1.safetensors", "sd1"),
        "sd1-inpainting": F.write_checkpoint(folder / "sd1-inpainting.safetensors", "sd1", inpainting=True),
        "sd2": F.write_checkpoint(folder / "sd2.safetensors", "sd2"),
        "sdxl": F.write_checkpoint(folder / "sdxl.safetensors", "sdxl"),
        "sdxl-inpainting": F.write_checkpoint(folder / "sdxl-inpainting.safetensors", "sdxl", inpainting=True),
    }


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(device="cpu", data_dir=tmp_path_factory.mktemp("home"))


def request(path, **kw) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a red circle", "steps": 3, "width": 64, "height": 64, "seed": 5,
                                "model": str(path), **kw})


# ---------------------------------------------------------------------- tokenizer

def test_the_shipped_clip_tokenizer_numbers_tokens_as_clip_does():
    tok = C.tokenizers(C.detect(C.Contents(_meta_shapes("sdxl", full=False), {})))
    ids = tok["tokenizer"]("a photo of a cat")["input_ids"]
    assert ids[0] == 49406 and ids[-1] == 49407  # <|startoftext|>, <|endoftext|>
    assert ids[1:4] == [320, 1125, 539]  # "a", "photo", "of" in OpenAI's published vocabulary
    assert len(tok["tokenizer"].get_vocab()) == 49408
    padded = tok["tokenizer"]("a cat", padding="max_length", max_length=77)["input_ids"]
    padded_2 = tok["tokenizer_2"]("a cat", padding="max_length", max_length=77)["input_ids"]
    assert padded[-1] == 49407  # SD 1.x / CLIP-L pads with <|endoftext|>
    assert padded_2[-1] == tok["tokenizer_2"].convert_tokens_to_ids("!") == 0  # OpenCLIP pads with "!"
    assert (CONFIGS / "clip-tokenizer" / "LICENSE").read_text().count("MIT") >= 1


# ---------------------------------------------------------------------- detection at full size

def _meta_shapes(family: str, full: bool = True, inpainting: bool = False) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a checkpoint of `family`, computed on the meta device (no memory, no disk)."""
    configs = F.full_configs(family, inpainting) if full else F.tiny_configs(family, inpainting)
    unet, vae, texts = F.build_components(family, configs, device="meta")
    return {k: tuple(v.shape) for k, v in F.ldm_state_dict(family, unet, vae, texts).items()}


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_full_size_files_are_read_as_the_shipped_skeleton_describes(family):
    """The sizes read from a full-size SD 1.5 / SDXL file are the published ones the skeleton holds,
    so the skeleton plus the file's shapes is exactly the published architecture."""
    arch = C.detect(C.Contents(_meta_shapes(family), {}))
    skeleton = json.loads((CONFIGS / family / "unet" / "config.json").read_text())
    for key in ("block_out_channels", "layers_per_block", "cross_attention_dim", "down_block_types",
                "up_block_types", "use_linear_projection", "attention_head_dim", "in_channels",
                "transformer_layers_per_block", "projection_class_embeddings_input_dim", "addition_time_embed_dim"):
        if key in skeleton:
            assert arch.unet[key] == skeleton[key], key
    vae = json.loads((CONFIGS / family / "vae" / "config.json").read_text())
    assert {k: vae[k] for k in arch.vae} == arch.vae
    names = ["text_encoder", "text_encoder_2"]
    for name, text in zip(names, arch.text_encoders):
        shipped = json.loads((CONFIGS / family / name / "config.json").read_text())
        assert {k: shipped[k] for k in text} == text, name
    assert arch.native_size == {"sd1": 512, "sdxl": 1024}[family]


def test_full_size_inpainting_and_v_prediction_are_told_apart():
    shapes = _meta_shapes("sdxl", inpainting=True)
    assert C.detect(C.Contents(shapes, {})).label == "SDXL inpainting"
    v_pred = C.detect(C.Contents({**_meta_shapes("sdxl"), "v_pred": (0,)}, {}))
    assert v_pred.prediction is C.Prediction.V and v_pred.label == "SDXL v-prediction"
    spec = C.detect(C.Contents(_meta_shapes("sd1"), {}, {"modelspec.prediction_type": "v"}))
    assert spec.prediction is C.Prediction.V


# ---------------------------------------------------------------------- loading and generating

@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_a_single_file_loads_to_the_same_model_it_was_written_from(tmp_path, family):
    """Write random components in the original layout, load the file through Studio (detection +
    skeleton, no config folder): every weight comes back bit for bit, and the model draws the same
    picture as a pipeline built from the original components."""
    configs = F.tiny_configs(family)
    unet, vae, texts = F.build_components(family, configs, seed=3)
    path = F.save(F.ldm_state_dict(family, unet, vae, texts), tmp_path / f"{family}.safetensors")
    engine = Engine(device="cpu", data_dir=tmp_path / "home")
    loaded = engine.load(str(path))
    assert not any(p.is_file() for p in path.parent.glob("*.config*"))
    pairs = [(unet, loaded.pipe.unet), (vae, loaded.pipe.vae), (texts[0], loaded.pipe.text_encoder)]
    if family == "sdxl":
        pairs.append((texts[1], loaded.pipe.text_encoder_2))
    for original, got in pairs:
        want, have = original.state_dict(), got.state_dict()
        assert want.keys() == have.keys()
        assert all(torch.equal(want[k], have[k]) for k in want)
    reference = type(loaded.pipe)(**{**loaded.pipe.components, "unet": unet, "vae": vae, "text_encoder": texts[0],
                                     **({"text_encoder_2": texts[1]} if family == "sdxl" else {})})
    reference.set_progress_bar_config(disable=True)
    ours = engine.generate(request(path, scheduler="Euler"))[0].image
    generator = torch.Generator("cpu").manual_seed(5)
    latents = torch.randn((1, 4, 32, 32), generator=generator)
    reference.scheduler = type(engine.model.variant("txt2img").scheduler).from_config(
        engine.model.variant("txt2img").scheduler.config)
    theirs = reference(prompt="a red circle", num_inference_steps=3, width=64, height=64, latents=latents,
                       guidance_scale=7.0).images[0]
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1


@pytest.mark.parametrize("name", ["sd1-inpainting", "sdxl-inpainting"])
def test_inpainting_checkpoints_run_every_mode_and_keep_the_outside(engine, files, name):
    loaded = engine.load(str(files[name]))
    assert loaded.inpainting and "inpainting" in loaded.label
    txt = engine.generate(request(files[name]))[0].image
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    inpainted = engine.generate(request(files[name], init_image=init, mask=mask, mask_feather=0))[0].image
    assert txt.size == inpainted.size == (64, 64)
    outside = pixels(inpainted)[:8]  # rows far from the mask
    assert np.array_equal(outside, pixels(init)[:8])
    assert not np.array_equal(pixels(inpainted)[24:40, 24:40], pixels(init)[24:40, 24:40])


def test_sdxl_runs_every_mode_with_previews(engine, files):
    steps: list = []
    engine.load(str(files["sdxl"]))
    first = engine.generate(request(files["sdxl"]), on_step=steps.append)[0]
    assert len(steps) == 3 and steps[-1].preview is not None
    assert steps[-1].preview.shape == (32, 32, 3)  # one pixel per latent
    again = engine.generate(request(files["sdxl"]))[0]
    assert np.array_equal(pixels(first.image), pixels(again.image))
    other = engine.generate(request(files["sdxl"], seed=6))[0]
    assert not np.array_equal(pixels(first.image), pixels(other.image))
    img2img = engine.generate(request(files["sdxl"], init_image=first.image, strength=0.5))[0]
    assert img2img.recipe["mode"] == "img2img"
    assert first.recipe["model"]["hash"] == C_hash(files["sdxl"])


def C_hash(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_and_ema_files_load(tmp_path, dtype):
    configs = F.tiny_configs("sd1")
    unet, vae, texts = F.build_components("sd1", configs)
    state = F.ldm_state_dict("sd1", unet, vae, texts)
    # Training checkpoints keep an EMA copy of the UNet beside the weights (`model_ema.*`, dots removed).
    state.update({"model_ema." + k.removeprefix("model.").replace(".", ""): v
                  for k, v in state.items() if k.startswith("model.diffusion_model.")})
    path = F.save(state, tmp_path / "half.safetensors", dtype=dtype)
    engine = Engine(device="cpu", data_dir=tmp_path / "home")
    loaded = engine.load(str(path))
    want = unet.state_dict()["conv_in.weight"].to(dtype).float()
    assert torch.equal(loaded.pipe.unet.state_dict()["conv_in.weight"], want)
    assert engine.generate(request(path))[0].image.size == (64, 64)


def test_a_weights_only_ckpt_loads_and_a_malicious_pickle_never_runs(tmp_path, files):
    ckpt = F.write_checkpoint(tmp_path / "model.ckpt", "sd1")
    engine = Engine(device="cpu", data_dir=tmp_path / "home")
    assert engine.load(str(ckpt)).label == "SD 1.x"
    witness = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(witness), "w"))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "x": Exploit()},
               evil)
    with pytest.raises(ModelError, match="would run code") as err:
        engine.load(str(evil))
    assert not witness.exists()
    assert "open" in str(err.value) or "builtins" in str(err.value)
    assert engine.model is not None and engine.model.entry.path == ckpt  # the loaded model stays


# ---------------------------------------------------------------------- bad files

def test_bad_files_are_refused_with_the_reason_and_the_model_stays(tmp_path, files):
    engine = Engine(device="cpu", data_dir=tmp_path / "home")
    engine.load(str(files["sd1"]))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(files["sd1"].read_bytes()[:200_000])
    not_model = tmp_path / "notes.safetensors"
    not_model.write_bytes(b"hello, this is a text file and not a checkpoint at all")
    from safetensors.torch import save_file

    flux = tmp_path / "flux.safetensors"
    save_file({"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(4)}, str(flux))
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 4)}, str(lora))
    other = tmp_path / "other.safetensors"
    save_file({"encoder.layer1.weight": torch.zeros(2), "head.fc.bias": torch.zeros(2)}, str(other))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    cases = [(cut, "cut short"), (not_model, "not a safetensors file"),
             (flux, "damaged FLUX transformer file: it lacks img_in.weight"),
             (lora, "LoRA weights"), (other, "2 tensors named encoder, head"), (empty, "empty or cut short")]
    for path, reason in cases:
        with pytest.raises(ModelError, match=reason):
            engine.load(str(path))
        assert engine.model.entry.path == files["sd1"]


def test_mismatched_parts_are_named(tmp_path):
    shapes = _meta_shapes("sd1", full=False)
    sdxl_text = {k: v for k, v in _meta_shapes("sdxl", full=False).items() if k.startswith("conditioner.")}
    with pytest.raises(ModelError, match="does not fit together"):
        C.detect(C.Contents({**{k: v for k, v in shapes.items() if not k.startswith("cond_stage")}, **sdxl_text}, {}))
    no_vae = {k: v for k, v in shapes.items() if not k.startswith("first_stage_model.")}
    with pytest.raises(ModelError, match="has no VAE"):
        C.detect(C.Contents(no_vae, {}), "x.safetensors")


def test_pickle_error_message_names_no_exception_class(tmp_path):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"a": print}, fh)
    with pytest.raises(ModelError) as err:
        C.read_contents(evil)
    assert "Error" not in str(err.value)


def test_sdxl_only_masked_inpaint_outpaint_variations_and_cancel(engine, files):
    """SDXL through the same request as SD 1.x: only-masked inpaint and outpaint keep every pixel
    outside the mask, a batch with a variation equals its items run alone, and cancel lands inside a step."""
    from studio.engine import Cancelled

    path = files["sdxl"]
    init = Image.new("RGB", (64, 64), (30, 140, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 24, 40, 40))
    masked = engine.generate(request(path, init_image=init, mask=mask, mask_feather=0, inpaint_area="masked",
                                     padding=8))[0]
    assert masked.recipe["inpaint_area"] == "masked"
    assert np.array_equal(pixels(masked.image)[:16], pixels(init)[:16])
    grown = engine.generate(request(path, init_image=init, outpaint=(16, 0, 16, 0), width=None, height=None))[0]
    assert grown.image.size == (96, 64)
    assert np.array_equal(pixels(grown.image)[:, 40:56], pixels(init)[:, 24:40])  # the old middle is untouched
    varied = request(path, batch_size=2, variation_seed=11, variation_strength=0.3)
    batch = engine.generate(varied)
    for k, result in enumerate(batch):
        alone = engine.generate(varied.item(k))[0]
        assert np.abs(pixels(result.image) - pixels(alone.image)).max() <= 1
    assert not np.array_equal(pixels(batch[0].image), pixels(batch[1].image))
    calls = []

    def stop() -> bool:  # asked before every UNet block: stop inside the second step
        calls.append(1)
        return len(calls) > 8

    with pytest.raises(Cancelled):
        engine.generate(request(path, steps=4), should_stop=stop)
    assert len(calls) == 9
