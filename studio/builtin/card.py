"""The built-in model's card: README.md beside the weights, with the world, the training and the quality."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from PIL import Image

from studio.builtin import world
from studio.engine.models import SUGGESTIONS_FILE, resolve


def write_card(args: argparse.Namespace, figures: dict[str, Any], table: str, grid: Image.Image) -> Path:
    folder = resolve(args.model).path
    grid.save(folder / "grid.png", optimize=True)
    config = {k: getattr(args, k) for k in ("n", "seed", "steps", "cfg")}
    (folder / "eval.json").write_text(json.dumps({"config": config, **figures}, indent=1))
    # The guidance the card reports is the one Studio starts this model with (SUGGESTIONS_FILE).
    (folder / SUGGESTIONS_FILE).write_text(json.dumps({"cfg": args.cfg}) + "\n")
    training = json.loads((folder / "training.json").read_text())
    text = CARD.format(
        vocab=", ".join(f"`{w}`" for w in world.vocabulary()),
        held_out=", ".join(training.get("held_out", [])),
        train=json.dumps(training["train_config"], indent=1),
        times=", ".join(f"{stage} {seconds / 60:.1f} min" for stage, seconds in training.get("seconds", {}).items())
        or "not recorded",
        history=" ".join([training.get("history", ""), *map(_refinement, training.get("refinements", []))]),
        table=table, steps=args.steps, cfg=args.cfg, preview=preview_paragraph(folder),
        size=sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20,
    )
    (folder / "README.md").write_text(text)
    return folder / "README.md"


def preview_paragraph(folder: Path) -> str:
    """What the card says about the live-preview decoder, from its config; empty when the folder has none."""
    path = folder / "preview_decoder.json"
    if not path.is_file():
        return ""
    meta = json.loads(path.read_text())
    t, arch = meta["training"], meta["architecture"]
    ups = int(arch["factor"]).bit_length() - 1
    return (f"\nLast, the live-preview decoder (`preview_decoder.safetensors`, for Studio's previews; diffusers "
            f"ignores it; its config and training record are `preview_decoder.json`): {3 + ups} 3x3 convolutions "
            f"of width {arch['width']} with {ups} 2x nearest upsamplings, trained for {t['steps']:,} steps "
            f"({t['loss']}, batch {t['batch']}, {t['seconds'] / 60:.1f} min) to imitate this VAE's full decode on "
            f"the latents of {t['scenes']:,} world scenes the model never saw ({t['noise']}) and on the model's own "
            f"x0 at every step of its generations ({t['sampled_x0']:,} latents: an early step's x0 is blurred). "
            f"On 64 other unseen scenes it reads {meta['psnr_held_out_db']:.1f} dB PSNR against the full decode.\n")


def _refinement(run: dict[str, Any]) -> str:
    stages = [f"{run[k]:,} {name} steps" for k, name in (("decoder_steps", "decoder"), ("objects_steps", "phase 3"),
                                                          ("colour_steps", "phase 4")) if k in run]
    return f"`--refine` run (seed {run['seed']}): {' and '.join(stages)}."


CARD = """# studio-shapes: Studio's built-in model

A small text-to-image model in the Stable Diffusion 1.x layout (AutoencoderKL, UNet2DConditionModel,
CLIPTextModel + CLIPTokenizer, DPM-Solver++ scheduler), trained from scratch on a procedural world by
`python -m studio.train_builtin`. It needs no download and loads like any diffusers folder. The
weights are stored as fp16 safetensors and load in fp32 unless you ask for fp16 (on a GPU):

```python
import torch
from diffusers import StableDiffusionPipeline

pipe = StableDiffusionPipeline.from_pretrained("path/to/studio-shapes")  # torch_dtype=torch.float16 on a GPU
image = pipe("a large red star in the center, blue background", num_inference_steps={steps}, guidance_scale={cfg},
             generator=torch.Generator().manual_seed(7)).images[0]
image.save("star.png")  # 64x64, the model's native size
```

Native size 64x64. Folder size {size:.1f} MB.

## The world
- **Shapes:** `a {{size}} {{colour}} {{shape}} {{position}}, {{background}} background`, or two objects joined
  by `and` (left/right or top/bottom). Sizes small, large; colours and backgrounds red, orange, yellow,
  green, blue, purple, white, black; shapes circle, square, triangle, star; positions on the left, on the
  right, at the top, at the bottom, in the center.
- **Landscapes:** `a {{time}} landscape with {{features}}`, times day, sunset, night (sky gradients, sun or
  moon, stars at night), one to three of mountains, hills, a lake, a forest, clouds. Scenes are drawn
  twice as wide as the frame and cropped, so they run past the edges (outpainting has something to
  continue).
- Drawn at 4x and box-filtered (anti-aliased), with small random jitter of colour, place and size.
- Vocabulary (one token per word): {vocab}.
- Held out of training (colour/shape pairs never seen): {held_out}.

## Training
Settings (`training.json`):
```
{train}
```
Time (wall clock, this machine's 2-core CPU, resumes included): {times}. {history}

VAE first (L1 + MSE + edge L1 + small KL; no mid-block attention, so a local edit stays local), then its
latents' per-channel mean and std are folded exactly into its 1x1 convolutions (scaling factor 1.0:
SD 1.x pipelines cannot shift latents). Then the decoder alone trains further (`decoder_steps`) with the
encoder frozen, so the latent space stays the one the UNet learns, as Stability's sd-vae-ft-mse decoder
was made: the joint VAE stage is short and its loss is dominated by backgrounds, so its decoder turned
small objects into dark blobs of the wrong colour (ground-truth scenes through encode + decode: object
colour read back right 74 % of the time, shape 60 %). The refinement weights object pixels
`1 + object_weight` times (pixels unlike the border colour) and adds noise of the encoder's own posterior
scale to the latents, standing in for the UNet's imperfect samples. Then UNet and text encoder jointly, in four phases:

1. `unet_steps`: epsilon prediction on SD 1.x's scaled-linear betas, min-SNR-5 weighting.
2. `vpred_steps`, from phase 1's EMA weights: v-prediction on the same betas rescaled to zero terminal
   SNR, sampled with trailing timesteps (Lin et al. 2024). SD's schedule keeps 7 % of the image in its
   noisiest step; on 16x16 latents of flat shapes that is enough to see where the object is, so after
   phase 1 the model placed objects where the starting noise suggested, not where the prompt said
   (position adherence 19 %, chance is 20 %). With the last step pure noise it has to read the prompt.
   The rescaled betas are stored as `trained_betas`, so every sampler uses them (diffusers' own
   `rescale_betas_zero_snr` is missing from Heun and LMS). Karras sigma spacing spends about half its
   steps above t = 990 on this schedule: prefer the plain samplers (the default is DPM++ 2M).
3. `objects_steps`, from phase 2's EMA weights at half the learning rate: the same objective with the
   latents under an object (pixels unlike the border colour, at latent resolution, grown by one latent)
   weighted `1 + object_weight` times, each image's weights averaging 1. A small object covers 3 % of
   the latents, so the plain loss barely sees the colour and outline that decide whether an image is
   right. Landscapes, whose time of day the model already gets right every time, are drawn a third as
   often (10 % of the batches instead of 25 %).
4. `colour_steps`, from phase 3's EMA weights at a fifth of its learning rate: phase 3's loss plus
   `colour_weight` times the colour error of the object pixels, after decoding the x0 that the
   v-prediction implies through the frozen decoder (weighted by alpha_bar: near pure noise that x0 is a
   blur by design). In this VAE's latents an orange object lies next to a red one, so the latent loss
   alone let the model draw orange as red a third of the time.

All phases: 10 % caption dropout (so classifier-free guidance and negative prompts work), AdamW with
warm-up and cosine decay, EMA weights exported, bf16 autocast where the hardware has bf16
arithmetic (emulated bf16 was 20x slower than fp32 on an AVX2-only CPU, so there it trains in fp32).
{preview}
## Quality, measured
`python -m studio.eval_builtin --card --cfg {cfg}` ({steps} steps, CFG {cfg}, fixed seeds), judged by pixel
statistics (`studio/builtin/judge.py`: background from the border, object colour, centre of mass,
shape by geometry; sky colour for time of day). The ground-truth column is the judge on the renders of
the same scenes, i.e. the best a perfect model could score; the through-VAE column judges those renders
after this model's own encode + decode, the best its decoder lets the UNet score. The block under the
table splits object colour by the prompted colour. `studio.json` beside the weights suggests
this guidance ({cfg}) to Studio, so the app and `studio generate` start the model with it.

```
{table}
```

![generated samples](grid.png)
"""
