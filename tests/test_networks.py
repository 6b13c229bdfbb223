"""LoRAs, embeddings, A1111 prompt syntax and the model library, on tiny single-file models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from studio.bench import checkpoint_files as F
from studio.engine import Engine, GenerationRequest, ModelError, library, prompts
from studio.engine.library import ItemKind
from studio.recipe.metadata import format_parameters, parse_parameters


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A data folder whose models/ looks like an A1111 install: checkpoints, Lora/, embeddings/."""
    home = tmp_path_factory.mktemp("home")
    models = home / "models"
    for sub in ("Stable-diffusion", "Lora", "embeddings", "VAE"):
        (models / sub).mkdir(parents=True)
    for family in ("sd1", "sdxl"):
        unet, vae, texts = F.build_components(family, F.tiny_configs(family), seed=3)
        F.save(F.ldm_state_dict(family, unet, vae, texts), models / "Stable-diffusion" / f"{family}.safetensors")
        save_file(F.kohya_lora(family, unet, texts), str(models / "Lora" / f"{family}-style.safetensors"),
                  metadata={"ss_tag_frequency": json.dumps({"set": {"neon": 3, "glowing": 5}})})
        save_file(F.embedding(family, texts), str(models / "embeddings" / f"{family}emb.safetensors"))
    _, other_vae, _ = F.build_components("sd1", F.tiny_configs("sd1"), seed=9)
    F.save(F.vae_tensors(other_vae), models / "VAE" / "crisp.safetensors")
    odd = F.tiny_configs("sd1")["vae"] | {"latent_channels": 8}
    F.save(F.vae_tensors(F.build_components("sd1", {**F.tiny_configs("sd1"), "vae": odd})[1]),
           models / "VAE" / "eight.safetensors")
    return home


@pytest.fixture(scope="module")
def engine(home):
    return Engine(device="cpu", data_dir=home)


def run(engine, family, prompt="a red circle", **kw):
    return engine.generate(GenerationRequest(prompt=prompt, steps=3, width=64, height=64, seed=5, model=family,
                                             **kw))[0]


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_a_kohya_lora_changes_the_picture_and_unloads_cleanly(engine, family):
    plain = run(engine, family)
    styled = run(engine, family, f"a red circle <lora:{family}-style:0.8>")
    assert np.abs(pixels(plain.image) - pixels(styled.image)).mean() > 5
    weaker = run(engine, family, f"a red circle <lora:{family}-style:0.2>")
    assert np.abs(pixels(plain.image) - pixels(weaker.image)).mean() < np.abs(
        pixels(plain.image) - pixels(styled.image)).mean()
    assert np.array_equal(pixels(run(engine, family).image), pixels(plain.image))  # nothing lingers
    lora = styled.recipe["loras"][0]
    assert lora["name"] == f"{family}-style" and lora["weight"] == 0.8 and len(lora["hash"]) == 12  # A1111's
    text = format_parameters(styled.recipe)
    assert f'Lora hashes: "{family}-style: {lora["hash"]}"' in text
    assert parse_parameters(text)["loras"] == [{"name": f"{family}-style", "hash": lora["hash"], "weight": None}]


def test_an_a1111_image_finds_its_lora_by_hash_under_another_name(home):
    """An image made elsewhere names its LoRA `inkwash_v2` with its hash; here the same file is called
    sd1-style: Reuse and Regenerate rename the tag, by the hash, to the file the library has."""
    import hashlib

    data = (home / "models" / "Lora" / "sd1-style.safetensors").read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    digest = hashlib.sha256(data[header:]).hexdigest()[:12]  # A1111's "addnet" hash: the tensor data only
    library.hash_missing(home, library.scan(home))  # what the library panel does in the background
    text = f"a cat <lora:inkwash_v2:0.7>\nSteps: 20, Seed: 1, Lora hashes: \"inkwash_v2: {digest}\", Version: v1.10"
    recipe = parse_parameters(text)
    items = library.scan(home)
    assert library.match_loras(recipe["prompt"], recipe["loras"], items) == "a cat <lora:sd1-style:0.7>"
    assert library.match_loras("a <lora:gone:1>", [{"name": "gone", "hash": "0" * 12}], items) == "a <lora:gone:1>"


def test_lora_mistakes_are_named_and_change_nothing(engine):
    before = run(engine, "sd1")
    with pytest.raises(ModelError, match="no lora named 'nope'.*sd1-style"):
        run(engine, "sd1", "a red circle <lora:nope:1>")
    with pytest.raises(ModelError, match="the LoRA sdxl-style is for SDXL, not for this model"):
        run(engine, "sd1", "a red circle <lora:sdxl-style:1>")
    assert np.array_equal(pixels(run(engine, "sd1").image), pixels(before.image))


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_an_embedding_is_picked_up_by_name(engine, family):
    plain = run(engine, family, "a red circle, shiny")
    with_embedding = run(engine, family, f"a red circle, {family}emb")
    assert not np.array_equal(pixels(plain.image), pixels(with_embedding.image))
    again = run(engine, family, f"a red circle, {family}emb")
    assert np.array_equal(pixels(again.image), pixels(with_embedding.image))


def test_a_library_vae_replaces_the_models_own_and_goes_back(engine):
    own = run(engine, "sd1")
    crisp = run(engine, "sd1", vae="crisp")
    assert not np.array_equal(pixels(own.image), pixels(crisp.image))
    assert crisp.recipe["vae"]["name"] == "crisp.safetensors" and len(crisp.recipe["vae"]["hash"]) == 10
    text = format_parameters(crisp.recipe)
    assert f"VAE hash: {crisp.recipe['vae']['hash']}, VAE: crisp.safetensors" in text
    assert parse_parameters(text)["vae"] == crisp.recipe["vae"]
    assert np.array_equal(pixels(run(engine, "sd1").image), pixels(own.image))
    with pytest.raises(ModelError, match="8-channel latents but sd1 uses 4"):
        run(engine, "sd1", vae="eight")
    with pytest.raises(ModelError, match="no vae named 'nope'"):
        run(engine, "sd1", vae="nope")
    assert np.array_equal(pixels(run(engine, "sd1").image), pixels(own.image))


# ---------------------------------------------------------------------- prompt syntax

def test_a1111_emphasis_is_parsed_as_a1111_does():
    assert prompts.parse_attention("a (red:1.5) cat") == [("a ", 1.0), ("red", 1.5), (" cat", 1.0)]
    assert prompts.parse_attention("((big))") == [("big", pytest.approx(1.21))]
    assert prompts.parse_attention("[small]") == [("small", pytest.approx(1 / 1.1))]
    assert prompts.parse_attention(r"\(literal\)") == [("(literal)", 1.0)]
    assert prompts.parse_attention("sky BREAK sea") == [("sky", 1.0), ("BREAK", -1.0), ("sea", 1.0)]
    assert prompts.parse_attention("(open") == [("open", pytest.approx(1.1))]
    assert prompts.split_loras("a cat <lora:ink:0.7> <lora:Paper Cut>") == (
        "a cat", [prompts.LoraTag("ink", 0.7), prompts.LoraTag("Paper Cut", 1.0)])


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_plain_prompts_encode_as_diffusers_and_weights_and_length_count(engine, family):
    import torch

    engine.load(family)
    pipe = engine.model.pipe
    ours = prompts.encode(pipe, "a red circle", "blue")
    theirs = pipe.encode_prompt("a red circle", device=pipe.device, num_images_per_prompt=1,
                                do_classifier_free_guidance=True, negative_prompt="blue")
    assert torch.allclose(ours["prompt_embeds"], theirs[0], atol=1e-5)
    assert torch.allclose(ours["negative_prompt_embeds"], theirs[1], atol=1e-5)
    if family == "sdxl":
        assert torch.allclose(ours["pooled_prompt_embeds"], theirs[2], atol=1e-5)
    weighted = prompts.encode(pipe, "a (red:1.5) circle", "")
    assert not torch.allclose(weighted["prompt_embeds"], ours["prompt_embeds"])
    long = prompts.encode(pipe, "a red circle, " * 40, "")
    assert long["prompt_embeds"].shape[1] == 3 * 77  # 160 tokens: three chunks, nothing cut off
    assert long["negative_prompt_embeds"].shape == long["prompt_embeds"].shape
    assert prompts.encode(pipe, "sky BREAK sea", "")["prompt_embeds"].shape[1] == 2 * 77
    tail_a = run(engine, family, "a red circle, " * 30 + "green")
    tail_b = run(engine, family, "a red circle, " * 30 + "purple")
    assert not np.array_equal(pixels(tail_a.image), pixels(tail_b.image))  # words past token 75 count


# ---------------------------------------------------------------------- the library

def test_the_library_reads_other_tools_folders_in_place(home, tmp_path):
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    (comfy / "loras").mkdir()
    (comfy / "vae").mkdir()
    (comfy / "checkpoints" / "sd1-copy.safetensors").write_bytes(
        (home / "models" / "Stable-diffusion" / "sd1.safetensors").read_bytes())
    (comfy / "loras" / "broken.safetensors").write_bytes(b"\0" * 10)
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    data = tmp_path / "data"
    library.add_folder(data, comfy)
    library.add_folder(data, tmp_path / "hub")
    items = {item.name: item for item in library.scan(data)}
    assert items["sd1-copy"].kind is ItemKind.CHECKPOINT and items["sd1-copy"].family == "SD 1.x"
    assert items["sd1-copy"].native_size == 512
    assert items["broken"].kind is ItemKind.LORA  # listed where it was put; loading it says what is wrong
    assert items["tiny"].kind is ItemKind.DIFFUSERS and items["tiny"].family == "SDXL"
    assert items["sd1-copy"].hash is None  # scanning never hashes a file
    library.hash_missing(data, [items["sd1-copy"]])
    assert library.scan(data)[0].hash == items["sd1-copy"].hash  # computed once, then cached
    loras = library.scan(home, (ItemKind.LORA,))
    assert {i.name: i.triggers for i in loras}["sd1-style"] == ["glowing", "neon"]
    library.remove_folder(data, comfy)
    assert "sd1-copy" not in {item.name for item in library.scan(data)}


def test_a_lora_added_while_the_studio_runs_is_found_at_once(engine, home):
    """The engine keeps an index of the library; a name it lacks makes it look again before refusing."""
    run(engine, "sd1", "a red circle <lora:sd1-style:0.5>")  # the index is fresh now
    added = home / "models" / "Lora" / "just-added.safetensors"
    added.write_bytes((home / "models" / "Lora" / "sd1-style.safetensors").read_bytes())
    try:
        styled = run(engine, "sd1", "a red circle <lora:just-added:0.5>")
        assert styled.recipe["loras"][0]["name"] == "just-added"
    finally:
        added.unlink()
