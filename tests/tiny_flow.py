"""Tiny random FLUX and SD 3 pipelines built from config dicts (the layouts of diffusers' own tests,
with 16-channel latents as the real models have), saved as diffusers folders with the shipped tokenizers."""

from __future__ import annotations

from pathlib import Path

from studio.resources import CONFIGS

FLUX_VAE = {"scaling_factor": 0.3611, "shift_factor": 0.1159}  # the published FLUX.1 autoencoder factors
SD3_VAE = {"scaling_factor": 1.5305, "shift_factor": 0.0609}


def _vae(factors: dict) -> object:
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(32, 64),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=32, sample_size=64, use_quant_conv=False,
                         use_post_quant_conv=False, **factors)


def _tokenizers() -> tuple[object, object]:
    from transformers import CLIPTokenizer, T5TokenizerFast

    clip = CLIPTokenizer(str(CONFIGS / "clip-tokenizer" / "vocab.json"), str(CONFIGS / "clip-tokenizer" / "merges.txt"),
                         pad_token="<|endoftext|>", model_max_length=77)
    return clip, T5TokenizerFast.from_pretrained(str(CONFIGS / "t5-tokenizer"))


def _t5(width: int) -> object:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=32128, d_model=width, d_kv=8, d_ff=2 * width, num_layers=2,
                                   num_heads=width // 8, relative_attention_num_buckets=8, dropout_rate=0.0,
                                   feed_forward_proj="gated-gelu", is_encoder_decoder=False))


def _clip(width: int, projection: bool) -> object:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, projection_dim=width,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def build_flux(folder: Path, seed: int = 0) -> Path:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    clip_tok, t5_tok = _tokenizers()
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=_vae(FLUX_VAE), text_encoder=_clip(32, False), tokenizer=clip_tok,
                        text_encoder_2=_t5(32), tokenizer_2=t5_tok, transformer=transformer)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_sd3(folder: Path, seed: int = 0) -> Path:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    clip_tok, t5_tok = _tokenizers()
    clip_g_tok = type(clip_tok)(str(CONFIGS / "clip-tokenizer" / "vocab.json"),
                                str(CONFIGS / "clip-tokenizer" / "merges.txt"), pad_token="!", model_max_length=77)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=16, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=64, pooled_projection_dim=64, out_channels=16)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=_vae(SD3_VAE), text_encoder=_clip(32, True), tokenizer=clip_tok,
                                    text_encoder_2=_clip(32, True), tokenizer_2=clip_g_tok,
                                    text_encoder_3=_t5(64), tokenizer_3=t5_tok)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
