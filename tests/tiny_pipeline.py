"""A tiny random SD-1.x-shaped pipeline built from config dicts, in the style of diffusers' own tests.

Saved to disk and loaded back through Studio's loader, exactly like a user's model folder.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["a", "red", "blue", "green", "circle", "square", "cat", "on", "the", "left", "right", "background",
         "landscape", "with", "and", ","]


def build_tiny_pipeline(folder: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from studio.builtin.tokenizer import write_tokenizer

    torch.manual_seed(0)
    write_tokenizer(folder / "_tokenizer", WORDS, max_length=16)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "_tokenizer")
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=32, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=8, mid_block_add_attention=False,
    )
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    scheduler = DPMSolverMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                            steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, unet=unet, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
