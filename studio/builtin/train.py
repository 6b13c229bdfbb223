"""Train the built-in model from scratch: render the world, train the VAE and refine its
decoder, then the UNet and text encoder in four phases.

Every stage checkpoints into the work folder and resumes from there, so an interrupted run loses at
most a few minutes. Seeds are fixed; on a machine with a GPU it is used automatically.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from studio.builtin import world
from studio.builtin.tokenizer import write_tokenizer

MAX_TOKENS = 32  # the longest caption is 20 tokens; a short context keeps cross-attention cheap


@dataclass
class TrainConfig:
    work: Path
    out: Path
    images: int = 24000
    vae_steps: int = 2500
    vae_batch: int = 8
    # The defaults are the recipe measured end to end (README: this run, then two `--refine` rounds;
    # 3.2 h on a 2-core CPU, every quality goal met). The shipped weights' longer history, epsilon
    # phase included, is in their training.json.
    decoder_steps: int = 3000  # the decoder alone, encoder frozen, after the latent space is fixed
    decoder_batch: int = 16
    unet_steps: int = 0  # phase 1 (optional): epsilon prediction on SD's noise schedule
    vpred_steps: int = 7500  # phase 2: v-prediction on the zero-terminal-SNR schedule, from phase 1's weights if any
    objects_steps: int = 10000  # phase 3: as phase 2, with the loss weighted towards the objects
    object_weight: float = 4.0
    colour_steps: int = 800  # phase 4: as phase 3, plus a loss on the decoded colour of the objects
    colour_weight: float = 2.0
    unet_batch: int = 16
    unet_lr: float = 1e-3
    text_lr: float = 5e-4
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 0  # 0: torch's default
    # bf16 autocast where the hardware has bf16 arithmetic (CUDA, CPUs with AVX512-BF16/AMX); elsewhere
    # it is emulated: measured 20x slower than fp32 on an AVX2-only CPU.
    bf16: bool | None = None  # None: decide from the device


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.bf16 is not None:
        return cfg.bf16
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    # AVX512-BF16 (Cooper Lake, Zen 4 and later) or AMX: plain AVX512 has no bf16 arithmetic.
    return device.type == "cpu" and bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def vae_config() -> dict[str, Any]:
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=world.SIZE,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16,
        # Mid-block attention spreads a local edit across the whole image (seen in the probe).
        mid_block_add_attention=False, scaling_factor=1.0,
    )


def unet_config() -> dict[str, Any]:
    return dict(
        sample_size=world.SIZE // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=128, attention_head_dim=4, norm_num_groups=16,
    )


def text_config() -> dict[str, Any]:
    return dict(
        hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS, projection_dim=128,
    )


def sd_schedule() -> dict[str, Any]:
    """Stable Diffusion 1.x's noise schedule and epsilon objective (training phase 1)."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type="epsilon", steps_offset=1)


def scheduler_config() -> dict[str, Any]:
    """The shipped schedule: SD's betas rescaled to zero terminal SNR, v-prediction, trailing timesteps.

    SD's schedule leaves 7% of the image in its noisiest training step. On 16x16 latents of flat
    shapes that is enough to read where the object is, so the model learned to take position and
    colour from the noise rather than the prompt, and at inference (pure noise) followed the noise:
    position adherence sat at chance. Lin et al. 2024 ("Common diffusion noise schedules and sample
    steps are flawed") give the fix used here. The betas are stored explicitly (`trained_betas`) so
    every sampler, including Heun and LMS that lack diffusers' `rescale_betas_zero_snr`, uses them.
    """
    return dict(num_train_timesteps=1000, trained_betas=zero_snr_betas(), prediction_type="v_prediction",
                timestep_spacing="trailing", steps_offset=0)


def zero_snr_betas(terminal_alpha_bar: float = 2.0 ** -24) -> list[float]:
    from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alpha_bar = torch.cumprod(1.0 - rescale_zero_terminal_snr(betas), dim=0)
    # Exactly zero would make sigma infinite for the samplers that work in sigma space (Euler, Heun,
    # LMS, DPM++); diffusers clamps to the same 2**-24 when it rescales.
    alpha_bar[-1] = terminal_alpha_bar
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return (1.0 - alpha_bar / previous).tolist()


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---------------------------------------------------------------- data

def render_dataset(cfg: TrainConfig) -> tuple[np.ndarray, list[str]]:
    path = cfg.work / f"dataset-{cfg.seed}.npz"  # the seed picks the images
    if path.exists():
        data = np.load(path)
        return data["images"], json.loads(str(data["captions"]))
    log(f"rendering {cfg.images} images")
    images = np.empty((cfg.images, world.SIZE, world.SIZE, 3), np.uint8)
    captions = []
    for i in range(cfg.images):
        scene, img = world.sample(cfg.seed * 10_000_000 + i)
        images[i] = np.asarray(img)
        captions.append(scene.caption())
    np.savez(path, images=images, captions=json.dumps(captions))
    return images, captions


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill mid-save leaves the previous checkpoint intact


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    # Our own checkpoints only; weights_only keeps even these from running code.
    return torch.load(path, weights_only=True) if path.exists() else None


def object_mask(x: torch.Tensor) -> torch.Tensor:
    """Pixels unlike the image's border colour (N x 1 x H x W, 0/1), for images in [-1, 1].

    In shape scenes these are the objects; a small one covers 3% of the frame, so an unweighted
    loss lets it go wrong (a dark blob of the wrong colour) while the background stays perfect.
    """
    ring = torch.cat([x[..., :2, :].flatten(2), x[..., -2:, :].flatten(2),
                      x[..., :, :2].flatten(2), x[..., :, -2:].flatten(2)], dim=2)
    border = ring.median(dim=2).values[..., None, None]
    return ((x - border).norm(dim=1, keepdim=True) > 0.15).float()


def emphasis(mask: torch.Tensor, object_weight: float) -> torch.Tensor:
    """Per-pixel loss weights: objects count 1 + object_weight times; each image's weights average 1."""
    w = 1.0 + object_weight * mask
    return w / w.mean(dim=(2, 3), keepdim=True)


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, object_weight: float = 0.0) -> torch.Tensor:
    """L1 + MSE + edge-aware L1: flat colours are easy, the outlines are what a blurry VAE loses.

    With `object_weight`, the object pixels (`object_mask`) weigh more.
    """
    w = emphasis(object_mask(x), object_weight) if object_weight else torch.ones_like(x[:, :1])

    def dx(t: torch.Tensor) -> torch.Tensor:
        return t[..., :, 1:] - t[..., :, :-1]

    def dy(t: torch.Tensor) -> torch.Tensor:
        return t[..., 1:, :] - t[..., :-1, :]

    err = recon - x
    return ((w * (err.abs() + err.pow(2))).mean() + 0.5 * (w[..., :, 1:] * (dx(recon) - dx(x)).abs()).mean()
            + 0.5 * (w[..., 1:, :] * (dy(recon) - dy(x)).abs()).mean())


@torch.no_grad()
def latent_object_masks(images: np.ndarray, factor: int = 4) -> torch.Tensor:
    """`object_mask` at the latent resolution (N x 1 x H/f x W/f, 0-1 coverage), grown by one latent
    pixel so the object's outline, where shape is decided, is inside it."""
    masks = [F.max_pool2d(F.avg_pool2d(object_mask(to_tensor(images[i:i + 1024])), factor), 3, 1, 1)
             for i in range(0, len(images), 1024)]
    return torch.cat(masks)


def lr_factor(step: int, total: int, warmup: int = 200) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, history: list[float] | None,
             clip: list[torch.nn.Parameter] | None = None) -> None:
    """One optimiser step on `loss` (gradient norm clipped to 1 over `clip`), recorded in `history`."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip, 1.0)
    opt.step()
    if history is not None:
        history.append(loss.item())


def log_progress(name: str, step: int, total: int, start: int, t0: float, figures: str) -> None:
    """Every 100 steps: where a stage is, its figures, its speed and the time left."""
    if (step + 1) % 100:
        return
    rate = (step + 1 - start) / (time.time() - t0)
    log(f"{name} step {step + 1}/{total} {figures} {rate:.2f} it/s eta {(total - step - 1) / rate / 60:.1f} min")


# ---------------------------------------------------------------- VAE

def train_vae(cfg: TrainConfig, images: np.ndarray, device: torch.device, history: list[float] | None = None,
              seconds: dict[str, float] | None = None):
    from diffusers import AutoencoderKL

    torch.manual_seed(cfg.seed)
    vae = AutoencoderKL(**vae_config()).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    ckpt_path = cfg.work / "vae.pt"
    start, spent = 0, 0.0
    if (ckpt := load_checkpoint(ckpt_path)) is not None:
        vae.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        start, spent = ckpt["step"], ckpt.get("seconds", 0.0)
        log(f"vae: resumed at step {start}")
    rng = np.random.default_rng(cfg.seed + start)
    bf16 = use_bf16(cfg, device)
    vae.train()
    t0 = time.time()
    for step in range(start, cfg.vae_steps):
        for g in opt.param_groups:
            g["lr"] = 1e-3 * lr_factor(step, cfg.vae_steps, warmup=100)
        x = to_tensor(images[rng.integers(0, len(images), cfg.vae_batch)]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            posterior = vae.encode(x).latent_dist
            z = posterior.sample()
            recon = vae.decode(z).sample.float()
        mean, logvar = posterior.mean.float(), posterior.logvar.float()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        loss = reconstruction_loss(recon, x) + 1e-4 * kl
        optimise(opt, loss, history)
        psnr = -10 * math.log10(F.mse_loss(recon.detach().clamp(-1, 1), x).item() / 4 + 1e-12)
        log_progress("vae", step, cfg.vae_steps, start, t0, f"loss {loss.item():.4f} psnr {psnr:.1f} dB")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.vae_steps:
            save_checkpoint(ckpt_path, {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                                        "seconds": spent + time.time() - t0})
    if seconds is not None:
        seconds["vae"] = spent + time.time() - t0
    vae.eval()
    return vae


@torch.no_grad()
def encoded_means(vae, images: np.ndarray, device: torch.device, cache: Path | None = None) -> torch.Tensor:
    """The encoder's latent mean of every image (on the CPU), from `cache` when it is there: encoding
    every image again takes minutes."""
    if cache is not None and cache.exists():
        return torch.load(cache, weights_only=True)
    log(f"encoding {len(images)} images")
    mus = torch.cat([vae.encode(to_tensor(images[i:i + 256]).to(device)).latent_dist.mean.cpu()
                     for i in range(0, len(images), 256)])
    if cache is not None:
        torch.save(mus, cache)
    return mus


@torch.no_grad()
def centre_latents(vae, images: np.ndarray, device: torch.device, cache: Path | None = None) -> torch.Tensor:
    """Encode every image, then fold the latents' per-channel mean and std into the VAE (fold_stats)."""
    mus = encoded_means(vae, images, device, cache).to(device)
    m, s = mus.mean(dim=(0, 2, 3)), mus.std(dim=(0, 2, 3))
    if cache is not None:
        cache.with_name("latent_stats.json").write_text(json.dumps({"mean": m.tolist(), "std": s.tolist()}))
    fold_stats(vae, m, s)
    return (mus - m.view(1, -1, 1, 1)) / s.view(1, -1, 1, 1)


@torch.no_grad()
def fold_stats(vae, m: torch.Tensor, s: torch.Tensor) -> None:
    """Make the VAE's latents centred with unit variance, exactly, by rewriting its 1x1 convs.

    SD 1.x pipelines apply one scalar scaling factor and no shift, so the latents the UNet sees must
    already be centred. After this, encode(x) yields (mu - m) / s and decode undoes it: the decoder's
    output is unchanged.
    """
    c = m.numel()
    q, pq = vae.quant_conv, vae.post_quant_conv
    q.weight[:c] /= s.view(-1, 1, 1, 1)
    q.bias[:c] = (q.bias[:c] - m) / s
    q.bias[c:] -= 2 * torch.log(s)  # log-variance scales with s^2
    pq.bias += (pq.weight[:, :, 0, 0] @ m)
    pq.weight *= s.view(1, -1, 1, 1)
    log(f"latents: mean {m.tolist()} std {s.tolist()} folded into the VAE")


# ---------------------------------------------------------------- decoder refinement

DECODER_NOISE = 0.1  # latent noise while refining, about the encoder's own posterior std (0.14)


def refine_decoder(cfg: TrainConfig, vae, images: np.ndarray, latents: torch.Tensor, device: torch.device,
                   history: list[float] | None = None, seconds: dict[str, float] | None = None):
    """Train the decoder further with the encoder frozen, so the latent space (and the UNet) stay valid.

    The joint VAE training is short and its loss is dominated by backgrounds: its decoder turned a
    green square on white into a dark blob (object colour read back right 74% of the time, shape
    60%). Stability's sd-vae-ft-mse decoder was made the same way: decoder only, latents unchanged.
    `latents` are the folded (centred, unit-variance) encoder means; small noise on them stands in
    for the UNet's imperfect samples.
    """
    params = [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]
    vae.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    ckpt_path = cfg.work / "decoder.pt"
    start, spent = 0, 0.0
    if (ckpt := load_checkpoint(ckpt_path)) is not None:
        load_decoder(vae, ckpt)
        opt.load_state_dict(ckpt["opt"])
        start, spent = ckpt["step"], ckpt.get("seconds", 0.0)
        log(f"decoder: resumed at step {start}")
    gen = torch.Generator().manual_seed(cfg.seed + 3 + start)
    bf16 = use_bf16(cfg, device)
    vae.decoder.train()
    t0 = time.time()
    for step in range(start, cfg.decoder_steps):
        for g in opt.param_groups:
            g["lr"] = 1e-3 * lr_factor(step, cfg.decoder_steps, warmup=100)
        idx = torch.randint(0, len(images), (cfg.decoder_batch,), generator=gen)
        z = latents[idx] + DECODER_NOISE * torch.randn(latents[idx].shape, generator=gen)
        x = to_tensor(images[idx.numpy()]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            recon = vae.decode(z.to(device)).sample.float()
        loss = reconstruction_loss(recon, x, object_weight=cfg.object_weight)
        optimise(opt, loss, history)
        log_progress("decoder", step, cfg.decoder_steps, start, t0, f"loss {loss.item():.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.decoder_steps:
            save_checkpoint(ckpt_path, {"post_quant_conv": vae.post_quant_conv.state_dict(),
                                        "decoder": vae.decoder.state_dict(), "opt": opt.state_dict(),
                                        "step": step + 1, "seconds": spent + time.time() - t0})
    if seconds is not None:
        seconds["decoder"] = spent + time.time() - t0
    vae.requires_grad_(False)
    return vae.eval()


def load_decoder(vae, ckpt: dict[str, Any]) -> None:
    vae.post_quant_conv.load_state_dict(ckpt["post_quant_conv"])
    vae.decoder.load_state_dict(ckpt["decoder"])


# ---------------------------------------------------------------- UNet + text encoder

@dataclass(frozen=True)
class Phase:
    """One stage of UNet + text encoder training: objective, length and its own checkpoint file."""

    name: str
    steps_field: str  # the TrainConfig field that sets its length
    lr_scale: float
    schedule: dict[str, Any]
    seed_offset: int
    high_noise_share: float = 0.0  # this share of timesteps comes from the noisiest quarter
    object_weight: float = 0.0  # latents under an object count 1 + this in the loss (needs masks)
    landscape_weight: float = 1.0  # how often a landscape is drawn, relative to a shape scene
    pixel_weight: float = 0.0  # weight of the decoded-colour loss on the object pixels (needs the VAE)
    weight_field: str = ""  # the TrainConfig field behind its extra loss term, recorded with a refinement


def phases(cfg: TrainConfig) -> list[Phase]:
    return [Phase("unet", "unet_steps", 1.0, sd_schedule(), seed_offset=0),
            Phase("unet_v", "vpred_steps", 1.0, scheduler_config(), seed_offset=100_000,
                  # Near pure noise the layout is decided, and v (about -x0) is nothing like epsilon
                  # (about x_t): a phase 1 network must change most there.
                  high_noise_share=0.5),
            # The same objective with the object latents weighted: colour and shape live in the
            # few latents a small object covers, which the plain loss nearly ignores.
            # Landscapes are drawn a third as often (10% of batches instead of 25%): the model already
            # gets their time of day right every time, and the steps are worth more on the objects.
            Phase("unet_objects", "objects_steps", 0.5, scheduler_config(), seed_offset=200_000,
                  high_noise_share=0.25, object_weight=cfg.object_weight, landscape_weight=1 / 3,
                  weight_field="object_weight"),
            # In this VAE's latents an orange object lies next to a red one (1.3 apart against a median
            # of 7.8 over the palette's pairs), so the latent loss barely tells them apart and the model
            # drew orange as red a third of the time. Decoding the predicted x0 and comparing the object
            # pixels' colour puts the difference where the judge, and a designer, sees it.
            Phase("unet_colour", "colour_steps", 0.1, scheduler_config(), seed_offset=300_000,
                  high_noise_share=0.25, object_weight=cfg.object_weight, landscape_weight=1 / 3,
                  pixel_weight=cfg.colour_weight, weight_field="colour_weight")]


def refine_phases(cfg: TrainConfig) -> list[Phase]:
    """The phases `--refine` runs on an exported folder: 3 and 4, which continue a trained model
    (phases 1 and 2 build it from random weights)."""
    return phases(cfg)[2:]


def caption_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids of `captions`, padded to the text encoder's MAX_TOKENS context."""
    return tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                     return_tensors="pt").input_ids


def scene_weights(captions: list[str], landscape_weight: float) -> torch.Tensor | None:
    """Sampling weights per training image, or None for uniform sampling."""
    if landscape_weight == 1.0:
        return None
    return torch.tensor([landscape_weight if " landscape " in c else 1.0 for c in captions])


def make_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                        **text_config()))


def train_unet(cfg: TrainConfig, latents: torch.Tensor, captions: list[str], device: torch.device,
               history: list[float] | None = None, seconds: dict[str, float] | None = None,
               masks: torch.Tensor | None = None, images: np.ndarray | None = None, vae=None):
    """Run the phases in order; each starts from the previous one's EMA weights.

    `history` collects every step's loss; `seconds` gets each phase's training time, resumes included;
    `masks` (`latent_object_masks`) are needed by the phases with an object weight, the `images` and the
    (frozen) `vae` by the phase with a pixel weight.
    """
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(cfg.work / "tokenizer")
    torch.manual_seed(cfg.seed + 1)
    unet = UNet2DConditionModel(**unet_config()).to(device)
    text = make_text_encoder(tokenizer).to(device)
    log(f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M params, "
        f"text {sum(p.numel() for p in text.parameters()) / 1e6:.2f} M")
    for phase in phases(cfg):
        if getattr(cfg, phase.steps_field) > 0:
            unet, text = _train_phase(cfg, phase, unet, text, captions, tokenizer, latents, device, history,
                                      seconds, masks, images, vae)
    return unet.eval(), text.eval(), tokenizer


def _train_phase(cfg: TrainConfig, phase: Phase, unet, text, captions: list[str], tokenizer,
                 latents: torch.Tensor, device: torch.device, history: list[float] | None,
                 seconds: dict[str, float] | None, masks: torch.Tensor | None = None,
                 images: np.ndarray | None = None, vae=None):
    from diffusers import DDPMScheduler

    total = getattr(cfg, phase.steps_field)
    if phase.object_weight and masks is None:
        raise ValueError(f"phase {phase.name} weights the objects and needs their masks")
    if phase.pixel_weight and (images is None or vae is None):
        raise ValueError(f"phase {phase.name} judges decoded colour and needs the images and the VAE")
    decoder = _frozen_decoder(vae) if phase.pixel_weight else None

    ids, empty = caption_ids(tokenizer, captions), caption_ids(tokenizer, [""])
    draw = scene_weights(captions, phase.landscape_weight)
    unet.train().requires_grad_(True)  # a later phase starts from the previous phase's frozen EMA copies
    text.train().requires_grad_(True)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text).requires_grad_(False)
    base_lrs = [cfg.unet_lr * phase.lr_scale, cfg.text_lr * phase.lr_scale]
    opt = torch.optim.AdamW([{"params": unet.parameters(), "lr": base_lrs[0]},
                             {"params": text.parameters(), "lr": base_lrs[1]}], weight_decay=1e-2)
    sched = DDPMScheduler(**phase.schedule)
    ckpt_path = cfg.work / f"{phase.name}.pt"
    start, spent = 0, 0.0  # spent: training seconds before this run, so resumed runs report the total
    if (ckpt := load_checkpoint(ckpt_path)) is not None:
        for mod, key in ((unet, "unet"), (text, "text"), (ema_unet, "ema_unet"), (ema_text, "ema_text")):
            mod.load_state_dict(ckpt[key])
        opt.load_state_dict(ckpt["opt"])
        start, spent = ckpt["step"], ckpt.get("seconds", 0.0)
        log(f"{phase.name}: resumed at step {start}")
    gen = torch.Generator().manual_seed(cfg.seed + 2 + phase.seed_offset + start)
    bf16 = use_bf16(cfg, device)
    t0, running = time.time(), 0.0
    for step in range(start, total):
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * lr_factor(step, total)
        idx = (torch.randint(0, len(latents), (cfg.unet_batch,), generator=gen) if draw is None
               else torch.multinomial(draw, cfg.unet_batch, replacement=True, generator=gen))
        x0 = latents[idx].to(device)
        tok = ids[idx].clone()
        drop = torch.rand(cfg.unet_batch, generator=gen) < cfg.caption_dropout
        tok[drop] = empty
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (cfg.unet_batch,), generator=gen)
        if phase.high_noise_share:
            high = torch.rand(cfg.unet_batch, generator=gen) < phase.high_noise_share
            t = torch.where(high, torch.randint(750, 1000, (cfg.unet_batch,), generator=gen), t)
        t = t.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = phase_loss(phase, sched, unet, text, x0, tok.to(device), noise, t,
                              masks[idx].to(device) if phase.object_weight else None,
                              decoder, to_tensor(images[idx.numpy()]).to(device) if decoder else None)
        optimise(opt, loss, history, clip=[*unet.parameters(), *text.parameters()])
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in ((ema_unet, unet), (ema_text, text)):
                for pe, pl in zip(ema.parameters(), live.parameters()):
                    pe.lerp_(pl, 1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step > start else loss.item()
        log_progress(phase.name, step, total, start, t0, f"loss {running:.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
            save_checkpoint(ckpt_path, {"unet": unet.state_dict(), "text": text.state_dict(),
                                        "ema_unet": ema_unet.state_dict(), "ema_text": ema_text.state_dict(),
                                        "opt": opt.state_dict(), "step": step + 1,
                                        "seconds": spent + time.time() - t0})
    if seconds is not None:
        seconds[phase.name] = spent + time.time() - t0
    return ema_unet, ema_text


def _frozen_decoder(vae):
    vae.eval().requires_grad_(False)  # gradients flow through it to the UNet, never into it
    return lambda z: vae.decode(z).sample


def phase_loss(phase: Phase, sched, unet, text, x0: torch.Tensor, tok: torch.Tensor, noise: torch.Tensor,
               t: torch.Tensor, masks: torch.Tensor | None = None, decoder=None,
               pixels: torch.Tensor | None = None) -> torch.Tensor:
    """A phase's loss on one batch: `sched` is its DDPMScheduler, `masks` the batch's latent object
    masks (for a phase with an object weight), `decoder` (latents -> pixels) and `pixels` the batch's
    images in [-1, 1] (for a phase with a pixel weight)."""
    alphas = sched.alphas_cumprod.to(x0.device)
    snr = (alphas / (1 - alphas))[t]
    noisy = sched.add_noise(x0, noise, t)
    pred = unet(noisy, t, encoder_hidden_states=text(tok).last_hidden_state).sample.float()
    # Min-SNR-5 weighting (Hang et al. 2023). In x0 terms the weight is min(snr, 5); for epsilon
    # that is min(snr, 5) / snr. For v it would be min(snr, 5) / (snr + 1), which is zero at the
    # pure-noise step the zero-SNR schedule exists for, so v gets a floor of 1 in x0 terms.
    if phase.schedule["prediction_type"] == "v_prediction":
        target, w = sched.get_velocity(x0, noise, t), (torch.clamp(snr, max=5.0) + 1) / (snr + 1)
    else:
        target, w = noise, torch.clamp(snr, max=5.0) / snr
    err = (pred - target).pow(2)
    if phase.object_weight:
        err = err * emphasis(masks, phase.object_weight)
    loss = (w * err.mean(dim=(1, 2, 3))).mean()
    if phase.pixel_weight:
        loss = loss + phase.pixel_weight * decoded_colour_loss(alphas[t], noisy, pred, decoder, pixels)
    return loss


def decoded_colour_loss(alpha_bar: torch.Tensor, noisy: torch.Tensor, v: torch.Tensor, decoder,
                        pixels: torch.Tensor) -> torch.Tensor:
    """Mean absolute colour error over each image's object pixels, of the x0 that the v-prediction
    implies, decoded; weighted by alpha_bar, since near pure noise that x0 is a blur by design."""
    a = alpha_bar.view(-1, 1, 1, 1)
    decoded = decoder(a.sqrt() * noisy - (1 - a).sqrt() * v)
    mask = object_mask(pixels)
    err = ((decoded - pixels).abs().mean(dim=1, keepdim=True) * mask).sum(dim=(1, 2, 3))
    return (alpha_bar * err / mask.sum(dim=(1, 2, 3)).clamp(min=1.0)).mean()


# ---------------------------------------------------------------- pipeline folder

def save_pipeline(cfg: TrainConfig, vae, unet, text, tokenizer, seconds: dict[str, float],
                  schedule: dict[str, Any] | None = None) -> None:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, unet=unet, text_encoder=text, tokenizer=tokenizer,
        scheduler=DPMSolverMultistepScheduler(**(schedule or scheduler_config())),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16)  # half the size on disk; the loader upcasts on CPU
    cfg.out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(cfg.out, safe_serialization=True)
    load_as_float32(cfg.out / "text_encoder")
    for name in ("vocab.json", "merges.txt"):  # the slow-tokenizer files, for older transformers
        (cfg.out / "tokenizer" / name).write_bytes((cfg.work / "tokenizer" / name).read_bytes())
    info = {"train_config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "seconds": seconds, "vocabulary": world.vocabulary(),
            "held_out": sorted(f"{c} {s}" for c, s in world.HELD_OUT)}
    (cfg.out / "training.json").write_text(json.dumps(info, indent=2))
    log(f"pipeline written to {cfg.out}")


def export(cfg: TrainConfig) -> None:
    """Write the pipeline folder from the latest phase's checkpoint (EMA weights), without training further."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTokenizer

    vae = AutoencoderKL(**vae_config())
    vae.load_state_dict(load_checkpoint(cfg.work / "vae.pt")["model"])
    stats = json.loads((cfg.work / "latent_stats.json").read_text())
    fold_stats(vae, torch.tensor(stats["mean"]), torch.tensor(stats["std"]))
    decoder = load_checkpoint(cfg.work / "decoder.pt")
    if decoder is not None:
        load_decoder(vae, decoder)  # trained in the folded space, so it goes on after the fold
    cfg.decoder_steps = decoder["step"] if decoder is not None else 0
    tokenizer = CLIPTokenizer.from_pretrained(cfg.work / "tokenizer")
    phase = [p for p in phases(cfg) if (cfg.work / f"{p.name}.pt").exists()][-1]
    ckpt = load_checkpoint(cfg.work / f"{phase.name}.pt")
    unet = UNet2DConditionModel(**unet_config())
    unet.load_state_dict(ckpt["ema_unet"])
    text = make_text_encoder(tokenizer)
    text.load_state_dict(ckpt["ema_text"])
    order = phases(cfg)
    for later in order[order.index(phase) + 1:]:
        setattr(cfg, later.steps_field, 0)
    setattr(cfg, phase.steps_field, ckpt["step"])
    save_pipeline(cfg, vae.eval(), unet.eval(), text.eval(), tokenizer, {}, phase.schedule)


def refine_folder(cfg: TrainConfig, folder: Path) -> None:
    """Continue an exported pipeline folder: the decoder stage, then the object-weighted UNet phase,
    then the decoded-colour phase.

    All keep the folder's encoder, hence its latent space, so each stays valid for the others. A stage
    whose step count is 0 is skipped; each checkpoints (in `<work>/refine-<folder name>/`, apart from a
    full run's) and resumes like the full run, until the folder is written. Running it again continues
    the folder further (use another `seed` for other batches and images); the data set of a seed is
    shared with the full run.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.work.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    images, captions = render_dataset(cfg)
    cfg = replace(cfg, work=cfg.work / f"refine-{folder.name}")
    cfg.work.mkdir(exist_ok=True)
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).to(device)
    # The encoder never changes here, so the cache holds as long as the images are the same.
    latents = encoded_means(vae, images, device, cfg.work / f"latents-{cfg.seed}.pt")
    seconds: dict[str, float] = {}
    if cfg.decoder_steps:
        vae = refine_decoder(cfg, vae, images, latents, device, seconds=seconds)
        _save_half(copy.deepcopy(vae), folder / "vae")  # phase 4 decodes with this one, in fp32
    later = [p for p in refine_phases(cfg) if getattr(cfg, p.steps_field)]
    if later:
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).to(device)
        text = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32).to(device)
        masks = latent_object_masks(images)
        for phase in later:
            unet, text = _train_phase(cfg, phase, unet, text, captions, tokenizer, latents, device, None, seconds,
                                      masks, images, vae)
        _save_half(unet, folder / "unet")
        _save_half(text, folder / "text_encoder")
    _record_refinement(folder / "training.json", cfg, seconds)
    # The folder holds them: the next run starts from it.
    for stage in ("decoder", *(p.name for p in refine_phases(cfg))):
        (cfg.work / f"{stage}.pt").unlink(missing_ok=True)
    log(f"{folder} refined")


def _save_half(module, path: Path) -> None:
    """Save fp16 safetensors like the exported folder, without the local path diffusers records on load."""
    config = getattr(module, "_internal_dict", None)  # diffusers models; transformers' keep no path
    if config is not None and "_name_or_path" in config:
        from diffusers.configuration_utils import FrozenDict

        module._internal_dict = FrozenDict({k: v for k, v in config.items() if k != "_name_or_path"})
    module.cpu().to(torch.float16).save_pretrained(path, safe_serialization=True)
    load_as_float32(path)


def load_as_float32(path: Path) -> None:
    """Name fp32 as the dtype a transformers part loads in by default. Its weights stay fp16 on disk,
    but a plain `StableDiffusionPipeline.from_pretrained(folder)` (the model card's line) gets the
    diffusers parts in fp32 and, from transformers 5 on, the text encoder in the dtype its config
    names: fp16 beside fp32 failed with "mat1 and mat2 must have the same dtype". An explicit
    `torch_dtype` (Studio's loader always gives one) overrides it, so outputs do not change."""
    config_file = path / "config.json"
    config = json.loads(config_file.read_text())
    half = [key for key in ("dtype", "torch_dtype") if config.get(key) == "float16"]  # transformers 5 and 4
    if half:
        config.update(dict.fromkeys(half, "float32"))
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _record_refinement(path: Path, cfg: TrainConfig, seconds: dict[str, float]) -> None:
    """Add a `--refine` run to the folder's training.json. Each run continues the folder's weights, so
    `train_config` adds the steps and `seconds` the times of repeated runs up; `refinements` keeps every
    run's own settings."""
    info = json.loads(path.read_text())
    done = info["train_config"]
    run: dict[str, Any] = {"seed": cfg.seed}
    if seconds.get("decoder"):
        run.update(decoder_steps=cfg.decoder_steps, decoder_batch=cfg.decoder_batch)
        done.update(decoder_steps=done.get("decoder_steps", 0) + cfg.decoder_steps, decoder_batch=cfg.decoder_batch)
    for phase in refine_phases(cfg):
        if not seconds.get(phase.name):
            continue
        steps, weight = phase.steps_field, phase.weight_field
        run.update({steps: getattr(cfg, steps), weight: getattr(cfg, weight)})
        run.setdefault("landscape_weight", phase.landscape_weight)  # a Phase setting, not a TrainConfig field
        done.update({steps: done.get(steps, 0) + getattr(cfg, steps), weight: getattr(cfg, weight)})
    for key, value in seconds.items():
        info["seconds"][key] = info["seconds"].get(key, 0.0) + value
    info["refinements"] = [*info.get("refinements", []), run]
    note = ("The decoder stage and phases 3 and 4 ran on the exported folder (`--refine`, once per entry of"
            " `refinements`), from its fp16 weights.")
    history = info.get("history", "")
    info["history"] = history if note in history else f"{history} {note}".strip()
    path.write_text(json.dumps(info, indent=2))


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def run(cfg: TrainConfig) -> None:
    random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.work.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    log(f"training on {device}, {torch.get_num_threads()} threads")
    seconds: dict[str, float] = {}
    t = time.time()
    images, captions = render_dataset(cfg)
    write_tokenizer(cfg.work / "tokenizer", world.vocabulary(), MAX_TOKENS)
    seconds["render"] = time.time() - t
    vae = train_vae(cfg, images, device, seconds=seconds)
    t = time.time()
    latents = centre_latents(vae, images, device, cfg.work / "latents.pt").cpu()
    seconds["encode_latents"] = time.time() - t
    vae = refine_decoder(cfg, vae, images, latents, device, seconds=seconds)
    unet, text, tokenizer = train_unet(cfg, latents, captions, device, seconds=seconds,
                                       masks=latent_object_masks(images), images=images, vae=vae)
    save_pipeline(cfg, vae.cpu(), unet.cpu(), text.cpu(), tokenizer, seconds)
