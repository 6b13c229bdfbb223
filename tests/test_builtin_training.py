"""The built-in model's training pieces: the world, the tokenizer, and a few real training steps."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.builtin import train, world
from studio.builtin.tokenizer import learn_merges, write_tokenizer


def test_world_items_are_reproducible_and_captions_follow_the_grammar():
    scene_a, image_a = world.sample(42)
    scene_b, image_b = world.sample(42)
    assert scene_a == scene_b and image_a.tobytes() == image_b.tobytes()
    assert image_a.size == (world.SIZE, world.SIZE)
    rng = random.Random(0)
    for _ in range(200):
        scene = world.random_scene(rng)
        caption = scene.caption()
        assert set(caption.replace(",", " , ").split()) <= set(world.vocabulary())
        if isinstance(scene, world.ShapeScene):
            assert caption.endswith(f"{scene.background} background")
            assert all((o.colour, o.shape) not in world.HELD_OUT for o in scene.objects)
            assert all(o.colour != scene.background for o in scene.objects)


def test_every_world_word_is_one_token(tmp_path):
    from transformers import CLIPTokenizer

    write_tokenizer(tmp_path, world.vocabulary(), max_length=32)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    for word in world.vocabulary():
        assert len(tok(word).input_ids) == 3, word  # <start> word <end>
    ids = tok("a small red circle on the left, blue background").input_ids
    assert tok.convert_ids_to_tokens(ids)[1:4] == ["a</w>", "small</w>", "red</w>"]


def test_learned_merges_are_deterministic():
    words = ["red", "green", "greed", "reed"]
    assert learn_merges(words) == learn_merges(list(words))


@pytest.mark.slow
def test_a_few_training_steps_run_and_the_loss_decreases(tmp_path):
    torch.manual_seed(0)
    cfg = train.TrainConfig(work=tmp_path / "work", out=tmp_path / "model", images=48, vae_steps=40,
                            vae_batch=4, decoder_steps=40, decoder_batch=4, unet_steps=40, vpred_steps=40, objects_steps=40, colour_steps=20, unet_batch=8,
                            checkpoint_every=20,
                            bf16=False)
    cfg.work.mkdir()
    images, captions = train.render_dataset(cfg)
    assert images.shape == (48, 64, 64, 3) and len(captions) == 48
    write_tokenizer(cfg.work / "tokenizer", world.vocabulary(), train.MAX_TOKENS)
    vae_losses: list[float] = []
    vae = train.train_vae(cfg, images, torch.device("cpu"), vae_losses)
    assert np.mean(vae_losses[-10:]) < np.mean(vae_losses[:10])
    x = train.to_tensor(images[:4])
    with torch.no_grad():
        before = vae.decode(vae.encode(x).latent_dist.mean).sample
    latents = train.centre_latents(vae, images, torch.device("cpu"), cfg.work / "latents.pt")
    with torch.no_grad():
        after = vae.decode(vae.encode(x).latent_dist.mean).sample
    assert torch.allclose(before, after, atol=1e-4)  # folding the statistics changes no picture
    assert abs(float(latents.mean())) < 0.05 and abs(float(latents.std()) - 1) < 0.1  # centred, unit scale
    def encoder_side():
        return {k: v.clone() for m in (vae.encoder, vae.quant_conv) for k, v in m.state_dict().items()}

    encoder = encoder_side()
    decoder_losses: list[float] = []
    vae = train.refine_decoder(cfg, vae, images, latents, torch.device("cpu"), decoder_losses)
    assert np.mean(decoder_losses[-10:]) < np.mean(decoder_losses[:10])
    # The latent space the UNet learns must not move: only the decoder side trains.
    assert all(torch.equal(encoder[k], v) for k, v in encoder_side().items())
    assert train.load_checkpoint(cfg.work / "decoder.pt")["step"] == 40
    unet_losses: list[float] = []
    seconds: dict[str, float] = {}
    masks = train.latent_object_masks(images)
    assert masks.shape == (48, 1, 16, 16) and 0 < float(masks.mean()) < 0.5  # objects, not everything
    two_phases = replace(cfg, objects_steps=0, colour_steps=0)
    unet, text, tokenizer = train.train_unet(two_phases, latents, captions, torch.device("cpu"), unet_losses,
                                             seconds, masks)
    assert len(unet_losses) == 80
    for phase_losses in (unet_losses[:40], unet_losses[40:]):  # both start far from their objective
        assert np.mean(phase_losses[-10:]) < np.mean(phase_losses[:10])
    objects = train.phases(cfg)[2]
    before = _fixed_batch_loss(objects, unet, text, tokenizer, latents, captions, masks)
    # Phase 3 fine-tunes phase 2's objective, so its per-step losses barely move in 40 steps: judge it
    # on one fixed batch instead. Phases 1 and 2 resume from their checkpoints without training.
    unet, text, tokenizer = train.train_unet(replace(cfg, colour_steps=0), latents, captions, torch.device("cpu"),
                                             unet_losses, seconds, masks)
    assert len(unet_losses) == 120
    after = _fixed_batch_loss(objects, unet, text, tokenizer, latents, captions, masks)
    assert after < before  # measured 0.74 vs 0.82
    with pytest.raises(ValueError, match="needs the images and the VAE"):
        train.train_unet(cfg, latents, captions, torch.device("cpu"), None, None, masks)
    unet_3 = unet.conv_out.weight.detach().clone()
    vae_3 = {k: v.clone() for k, v in vae.state_dict().items()}
    unet, text, tokenizer = train.train_unet(cfg, latents, captions, torch.device("cpu"), unet_losses, seconds,
                                             masks, images, vae)
    assert len(unet_losses) == 140 and not torch.equal(unet.conv_out.weight, unet_3)
    assert all(torch.equal(vae_3[k], v) for k, v in vae.state_dict().items())  # the decoder judges, it does not train
    for name, steps in (("unet", 40), ("unet_v", 40), ("unet_objects", 40), ("unet_colour", 20)):
        ckpt = train.load_checkpoint(cfg.work / f"{name}.pt")  # tensors only, so a run resumes
        assert ckpt["step"] == steps and ckpt["seconds"] > 0  # time spent carries over a resume
        assert seconds[name] >= ckpt["seconds"]  # reported for the model card
    with torch.no_grad():
        refined = vae.decode(vae.encode(x).latent_dist.mean).sample
    train.export(cfg)  # the folder is written from the checkpoints: folded VAE, refined decoder, phase 4
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(cfg.out, torch_dtype=torch.float32)
    with torch.no_grad():
        exported = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mean).sample
    assert (exported - refined).abs().max() < 0.05  # fp16 on disk
    info = json.loads((cfg.out / "training.json").read_text())["train_config"]
    assert (info["decoder_steps"], info["objects_steps"], info["colour_steps"]) == (40, 40, 20)
    # --refine continues the folder twice: its weights change and its record adds the steps up.
    unet_before = pipe.unet.conv_out.weight.detach().clone()
    for seed in (1, 2):
        train.refine_folder(replace(cfg, decoder_steps=10, objects_steps=10, colour_steps=5, seed=seed), cfg.out)
    refined_pipe = StableDiffusionPipeline.from_pretrained(cfg.out, torch_dtype=torch.float32)
    assert not torch.equal(refined_pipe.unet.conv_out.weight, unet_before)
    info = json.loads((cfg.out / "training.json").read_text())
    done = info["train_config"]
    assert (done["decoder_steps"], done["objects_steps"], done["colour_steps"]) == (60, 60, 30)
    assert [(r["seed"], r["colour_steps"]) for r in info["refinements"]] == [(1, 5), (2, 5)]
    assert all((r["object_weight"], r["colour_weight"]) == (cfg.object_weight, cfg.colour_weight)
               for r in info["refinements"])  # each phase records the weight of its own extra loss term


def _fixed_batch_loss(phase, unet, text, tokenizer, latents, captions, masks) -> float:
    from diffusers import DDPMScheduler

    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.linspace(0, 999, len(latents)).long()
    with torch.no_grad():
        return train.phase_loss(phase, DDPMScheduler(**phase.schedule), unet, text, latents,
                                train.caption_ids(tokenizer, captions), noise, t, masks).item()


def test_phase_3_draws_landscapes_a_third_as_often():
    captions = ["a small red circle on the left, white background", "a day landscape with hills"]
    assert train.scene_weights(captions, 1.0) is None  # uniform: phases 1 and 2 keep their batches
    objects = train.phases(train.TrainConfig(Path("work"), Path("out")))[-1]
    assert train.scene_weights(captions, objects.landscape_weight).tolist() == pytest.approx([1.0, 1 / 3])


def test_the_object_weighted_loss_counts_an_error_on_a_small_object_more_than_on_the_background():
    x = torch.full((1, 3, 64, 64), -1.0)
    x[:, 0, 28:36, 28:36] = 1.0  # a small red square on black
    on_object, on_background = x.clone(), x.clone()
    on_object[:, 1, 28:36, 28:36] += 0.5  # the same error, once on the object, once beside it
    on_background[:, 1, 4:12, 4:12] += 0.5
    plain = [float(train.reconstruction_loss(r, x)) for r in (on_object, on_background)]
    weighted = [float(train.reconstruction_loss(r, x, object_weight=4.0)) for r in (on_object, on_background)]
    assert plain[0] == plain[1]
    assert weighted[0] > 3 * weighted[1]


def test_the_model_card_records_every_refinement_and_the_guidance_it_was_judged_at(tmp_path):
    import argparse

    from PIL import Image

    from studio.builtin.card import write_card
    from studio.engine.models import ModelEntry

    (tmp_path / "model_index.json").write_text('{"unet": ["diffusers", "UNet2DConditionModel"]}')
    (tmp_path / "unet").mkdir()  # a folder the loader would accept; the card needs no weights
    (tmp_path / "training.json").write_text(json.dumps({
        "train_config": {"objects_steps": 8000}, "seconds": {"unet_objects": 600.0}, "history": "Made here.",
        "refinements": [{"seed": 0, "decoder_steps": 3000, "objects_steps": 2500}, {"seed": 1, "objects_steps": 5500}],
    }))
    args = argparse.Namespace(model=str(tmp_path), n=12, seed=0, steps=20, cfg=2.5)
    card = write_card(args, {"n": 12}, "THE TABLE", Image.new("RGB", (8, 8))).read_text()
    assert "`--refine` run (seed 0): 3,000 decoder steps and 2,500 phase 3 steps." in card
    assert "`--refine` run (seed 1): 5,500 phase 3 steps." in card
    assert "THE TABLE" in card and "unet_objects 10.0 min" in card and "CFG 2.5" in card
    assert ModelEntry("m", tmp_path, "diffusers").suggested_cfg() == 2.5  # what Studio will start it with
    assert json.loads((tmp_path / "eval.json").read_text())["config"] == {"n": 12, "seed": 0, "steps": 20, "cfg": 2.5}


def test_decoded_colour_loss_counts_only_the_object_pixels():
    scene = world.ShapeScene((world.ShapeObject("large", "orange", "square", "in the center"),), "blue")
    pixels = train.to_tensor(np.asarray(world.render(scene, random.Random(0)))[None].copy())
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0))
    a = torch.tensor([0.6])
    noisy = a.sqrt() * pixels + (1 - a).sqrt() * noise

    def predicting(x0: torch.Tensor) -> torch.Tensor:  # the v-prediction whose implied x0 is `x0`
        return (a.sqrt() * noisy - x0) / (1 - a).sqrt()

    def decoder(z):  # pixels as their own latents
        return z

    assert train.decoded_colour_loss(a, noisy, predicting(pixels), decoder, pixels) < 1e-5
    mask = train.object_mask(pixels).bool().expand_as(pixels)
    red = torch.where(mask, torch.tensor(world.COLOURS["red"]).view(1, 3, 1, 1) / 127.5 - 1, pixels)
    # Orange drawn red: about 0.35 per object pixel, times alpha_bar.
    assert train.decoded_colour_loss(a, noisy, predicting(red), decoder, pixels) > 0.15
    white_background = torch.where(mask, pixels, torch.ones_like(pixels))
    assert train.decoded_colour_loss(a, noisy, predicting(white_background), decoder, pixels) < 1e-5
