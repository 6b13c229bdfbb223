"""Learned live previews: the built-in model's shipped preview decoder, AutoencoderTiny (TAESD) files found
in the model library, and the linear map as the fallback for any other VAE."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.builtin import preview_decoder as PD
from studio.engine import preview as P
from studio.resources import BUILTIN_MODEL

# World scenes neither the model (seeds 0..23999) nor the preview decoder (PD.TRAIN_SEED_BASE..) was trained on.
UNSEEN_SEEDS = 5_000_000


@pytest.fixture(scope="module")
def builtin_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(BUILTIN_MODEL / "vae", torch_dtype=torch.float32).eval()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


@pytest.mark.builtin
def test_shipped_preview_decoder_follows_the_full_decode_on_unseen_world_scenes(builtin_vae):
    loaded = P.load_learned_decoder(BUILTIN_MODEL)
    assert loaded is not None, "the built-in model ships preview_decoder.safetensors and its config"
    module, meta = loaded
    assert (BUILTIN_MODEL / P.LEARNED_WEIGHTS).stat().st_size < 1_000_000
    source = P.DecoderPreview(module, P.LEARNED_WEIGHTS)
    latents, decodes = PD.latents_and_decodes(builtin_vae, PD.scenes(UNSEEN_SEEDS, 6))
    shown = np.stack([source.to_rgb(z) for z in latents])
    truth = ((decodes.permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert shown.shape == truth.shape == (6, 64, 64, 3) and shown.dtype == np.uint8
    assert _psnr(shown, truth) >= 20
    # the linear map it replaces, on the same scenes (pooled to its latent resolution): far below
    linear = P.fit_map(builtin_vae, 1.0)
    pooled = torch.nn.functional.avg_pool2d(decodes, 4)
    linear_truth = ((pooled.permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert _psnr(np.stack([linear.to_rgb(z) for z in latents]), linear_truth) < 16


@pytest.mark.builtin
def test_the_engine_previews_the_builtin_model_with_its_decoder(tmp_path):
    from studio.engine import Engine
    from studio.recipe.request import GenerationRequest

    engine = Engine(device="cpu", data_dir=tmp_path)
    engine.load("builtin")
    assert isinstance(engine.rgb_map, P.DecoderPreview) and engine.rgb_map.source == P.LEARNED_WEIGHTS
    shown_x0 = []
    to_rgb = engine.rgb_map.to_rgb
    engine.rgb_map.to_rgb = lambda latent: shown_x0.append(latent.clone()) or to_rgb(latent)  # type: ignore
    seen = []
    # at the guidance Studio starts this model with (studio.json); far stronger guidance drives x0 off the
    # latents the decoder learned, and a preview there reads 13-20 dB
    engine.generate(GenerationRequest(prompt="a yellow star on a purple background", steps=6, seed=3, cfg=2.0,
                                      model="builtin"), on_step=seen.append)
    assert len(shown_x0) == len(seen) == 6
    vae = engine.model.pipe.vae
    for info, x0 in zip(seen[1:], shown_x0[1:]):  # after the first step's x0, which is still a blur
        assert info.preview.shape == (64, 64, 3)  # full size, not the latent's 16 x 16
        with torch.no_grad():
            decoded = vae.decode(x0[None] / vae.config.scaling_factor).sample.clamp(-1, 1)[0]
        truth = ((decoded + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        assert _psnr(info.preview, truth) >= 20, info.step


@pytest.mark.builtin
def test_a_vae_without_a_preview_decoder_falls_back_to_the_linear_map(tmp_path, builtin_vae, tiny_model):
    from diffusers import AutoencoderKL

    tiny = AutoencoderKL.from_pretrained(tiny_model / "vae").eval()
    chosen = P.choose_preview(tiny, float(tiny.config.scaling_factor), tmp_path, tiny_model, [],
                              torch.device("cpu"), torch.float32)
    assert isinstance(chosen, P.LatentRGBMap) and chosen.source == "fitted"
    # the built-in VAE swapped for another (own folder None): its learned decoder no longer applies
    swapped = P.choose_preview(builtin_vae, 1.0, tmp_path, None, [], torch.device("cpu"), torch.float32)
    assert isinstance(swapped, P.LatentRGBMap)


def _sd_vae(channels: int, scale: float, shift: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(config={"latent_channels": channels, "scaling_factor": scale, "shift_factor": shift,
                                   "block_out_channels": [128, 256, 512, 512]})


def _save_comfyui_decoder(decoder: torch.nn.Module, path: Path) -> None:
    """As ComfyUI's vae_approx/taesd_decoder.safetensors: a Sequential with a Clamp at index 0."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"{int(k.split('.')[1]) + 1}.{k.split('.', 2)[2]}": v.contiguous()
             for k, v in decoder.state_dict().items()}
    save_file(state, str(path))


def test_a_taesd_in_the_library_previews_models_of_its_family(tmp_path):
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    torch.manual_seed(0)
    sd15 = AutoencoderTiny(latent_channels=4).eval()
    _save_comfyui_decoder(sd15.decoder, tmp_path / "ComfyUI" / "models" / "vae_approx" / "taesd_decoder.safetensors")
    (tmp_path / "ComfyUI" / "models" / "vae_approx" / "taesd_encoder.safetensors").write_bytes(b"not a decoder")
    sdxl = AutoencoderTiny(latent_channels=4).eval()  # a diffusers-format file, whole model, in a vae folder
    (tmp_path / "lib" / "vae").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in sdxl.state_dict().items()},
              str(tmp_path / "lib" / "vae" / "taesdxl_diffusion_pytorch_model.safetensors"))
    roots = [tmp_path / "ComfyUI", tmp_path / "lib"]
    cpu = torch.device("cpu")

    chosen = P.choose_preview(_sd_vae(4, 0.18215), 0.18215, tmp_path, None, roots, cpu, torch.float32)
    assert isinstance(chosen, P.DecoderPreview) and chosen.source == "taesd_decoder.safetensors"
    latent = torch.randn(4, 8, 12)
    rgb = chosen.to_rgb(latent)
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8
    with torch.no_grad():  # the file's weights, not fresh ones: the same pixels as the decoder it was saved from
        expected = ((sd15.decoder(latent[None])[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.array_equal(rgb, expected.astype(np.uint8))

    xl = P.choose_preview(_sd_vae(4, 0.13025), 0.13025, tmp_path, None, roots, cpu, torch.float32)
    assert xl.source == "taesdxl_diffusion_pytorch_model.safetensors"
    # a family without a tiny decoder in the library keeps its published map
    flux = P.choose_preview(_sd_vae(16, 0.3611, 0.1159), 0.3611, tmp_path, None, roots, cpu, torch.float32)
    assert isinstance(flux, P.LatentRGBMap) and flux.source == "flux"


def test_a_damaged_taesd_file_falls_back_to_the_published_map(tmp_path):
    (tmp_path / "vae_approx").mkdir()
    (tmp_path / "vae_approx" / "taesd_decoder.safetensors").write_bytes(b"\x00" * 64)
    chosen = P.choose_preview(_sd_vae(4, 0.18215), 0.18215, tmp_path, None, [tmp_path], torch.device("cpu"),
                              torch.float32)
    assert isinstance(chosen, P.LatentRGBMap) and chosen.source == "sd15"


def test_tiny_decoder_files_are_known_by_name():
    assert P.tiny_family("taesd_decoder.safetensors") == "sd15"
    assert P.tiny_family("TAESDXL_decoder.safetensors") == "sdxl"
    assert P.tiny_family("taesd3_decoder.pth") == "sd3"
    assert P.tiny_family("taef1_decoder.safetensors") == "flux"
    assert P.tiny_family("taesd_encoder.safetensors") is None
    assert P.tiny_family("sdxl_vae.safetensors") is None
