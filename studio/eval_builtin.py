"""Prompt adherence of the built-in model, scored by the pixel judge.

    python -m studio.eval_builtin [--model PATH] [--n 200] [--seed 0] [--steps 20] [--cfg 2.0]
                                  [--grid FILE.png] [--json]

A fixed set of prompts is drawn from the world's grammar (held-out colour/shape pairs included, plus
a quota of held-out prompts so generalisation is measured on enough of them). Each prompt is
generated with the Studio engine and judged; adherence per attribute is reported separately for
in-distribution and held-out prompts, next to the judge's accuracy on ground-truth renders of the
same scenes (the reference: the best score a perfect model could get) and next to the judge's accuracy
on those renders after a round trip through the model's own VAE (the best its decoder allows).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from studio.builtin import judge, world

Generate = Callable[[str, int], Image.Image]
RoundTrip = Callable[[Image.Image], Image.Image]  # encode + decode with a model's VAE

# Scene seeds far from the training set's (train.py uses seed * 10_000_000 + i, i < ~10^5), so
# evaluation images are never training images (captions repeat: the grammar is small).
SCENE_SEED_BASE = 900_000_000
HELD_OUT_SEED_BASE = 800_000_000
HELD_OUT_FRACTION = 0.1  # extra held-out prompts added on top of those drawn naturally (~11%)
GROUPS = ("in_distribution", "held_out", "all")
# Attributes in report order, with their printed names.
ATTRIBUTES = {
    "background": "background",
    "colour": "object colour",
    "position": "position",
    "shape": "shape",
    "size": "size",
    "time": "time of day",
    "two_objects": "two objects found",
    "both_colours": "two-object colours",
    "both_positions": "two-object positions",
    "both_shapes": "two-object shapes",
    "both_sizes": "two-object sizes",
}


@dataclass
class Item:
    """One prompt of the evaluation, its image and the judge's verdicts."""

    scene: world.Scene
    seed: int
    image: Image.Image
    scores: dict[str, bool]
    reference: dict[str, bool] | None  # verdicts on the ground-truth render of the same scene
    through_vae: dict[str, bool] | None = None  # verdicts on that render after the VAE's round trip

    @property
    def prompt(self) -> str:
        return self.scene.caption()

    @property
    def held_out(self) -> bool:
        return is_held_out(self.scene)


def is_held_out(scene: world.Scene) -> bool:
    """Whether the scene has a colour/shape pair the model never saw in training."""
    objects = scene.objects if isinstance(scene, world.ShapeScene) else ()
    return any((o.colour, o.shape) in world.HELD_OUT for o in objects)


def held_out_scene(rng: random.Random, colour: str, shape: str) -> world.ShapeScene:
    """A one-object scene with the held-out pair (colour, shape), everything else random."""
    background = rng.choice([c for c in world.COLOURS if c != colour])
    obj = world.ShapeObject(rng.choice(list(world.SIZES)), colour, shape, rng.choice(list(world.POSITIONS)))
    return world.ShapeScene((obj,), background)


def build_scenes(n: int = 200, seed: int = 0) -> list[world.Scene]:
    """`n` grammar scenes (held-out pairs allowed) plus ceil(n/10) held-out ones, all fixed by `seed`."""
    scenes = [world.random_scene(random.Random(SCENE_SEED_BASE + seed * 1_000_000 + i), allow_held_out=True)
              for i in range(n)]
    rng = random.Random(HELD_OUT_SEED_BASE + seed)
    pairs = sorted(world.HELD_OUT)
    quota = math.ceil(n * HELD_OUT_FRACTION)
    scenes += [held_out_scene(rng, *pairs[k % len(pairs)]) for k in range(quota)]
    return scenes


def run_items(generate: Generate, scenes: Sequence[world.Scene], seeds: Sequence[int] | None = None,
              reference: bool = True, progress: Callable[[int, int], None] | None = None,
              roundtrip: RoundTrip | None = None) -> list[Item]:
    """Generate and judge every scene; with `reference`, judge its ground-truth render too, and with
    `roundtrip` also that render after encode + decode."""
    seeds = list(range(len(scenes))) if seeds is None else list(seeds)
    items = []
    for k, (scene, seed) in enumerate(zip(scenes, seeds, strict=True)):
        image = generate(scene.caption(), seed)
        truth = world.render(scene, random.Random(seed)) if reference else None
        verdicts = judge.score(scene, truth) if truth is not None else None
        decoded = judge.score(scene, roundtrip(truth)) if truth is not None and roundtrip else None
        items.append(Item(scene, seed, image, judge.score(scene, image), verdicts, decoded))
        if progress:
            progress(k + 1, len(scenes))
    return items


def _rates(verdicts: list[dict[str, bool]]) -> tuple[dict[str, float], dict[str, int]]:
    """Per-attribute fraction right and number judged, over the items that have the attribute."""
    right: dict[str, int] = {}
    total: dict[str, int] = {}
    for scores in verdicts:
        for attr, ok in scores.items():
            right[attr] = right.get(attr, 0) + int(ok)
            total[attr] = total.get(attr, 0) + 1
    order = [a for a in ATTRIBUTES if a in total]
    return {a: right[a] / total[a] for a in order}, {a: total[a] for a in order}


def summarise(items: Sequence[Item]) -> dict[str, Any]:
    """Figures per group (in_distribution / held_out / all): model rates, reference rates, counts."""
    members = {
        "in_distribution": [i for i in items if not i.held_out],
        "held_out": [i for i in items if i.held_out],
        "all": list(items),
    }
    out: dict[str, Any] = {"n": len(items), "n_held_out": len(members["held_out"]),
                           "model": {}, "reference": {}, "through_vae": {}, "counts": {}}
    for group, group_items in members.items():
        out["model"][group], out["counts"][group] = _rates([i.scores for i in group_items])
        for key in ("reference", "through_vae"):
            if all(getattr(i, key) is not None for i in items):
                out[key][group] = _rates([getattr(i, key) for i in group_items])[0]
    out["by_colour"] = colour_breakdown(items)
    return {k: v for k, v in out.items() if v != {}}


def colour_breakdown(items: Sequence[Item]) -> dict[str, dict[str, Any]]:
    """Object colour per prompted colour over the one-object prompts: the model's rate, the count and,
    when measured, the rate through the VAE. An average over colours hides a colour the model confuses
    with its neighbour, or one the VAE itself cannot carry."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        if "colour" in item.scores:
            groups.setdefault(item.scene.objects[0].colour, []).append(item)
    out: dict[str, dict[str, Any]] = {}
    for colour in (c for c in world.COLOURS if c in groups):
        members = groups[colour]
        out[colour] = {"model": _rates([i.scores for i in members])[0]["colour"], "n": len(members)}
        if all(i.through_vae is not None for i in members):
            out[colour]["through_vae"] = _rates([i.through_vae for i in members])[0]["colour"]
    return out


def evaluate(generate: Generate, scenes: Sequence[world.Scene], seeds: Sequence[int] | None = None,
             reference: bool = True, roundtrip: RoundTrip | None = None) -> dict[str, Any]:
    """Adherence figures for `generate(prompt, seed) -> PIL image` on `scenes` (see `summarise`)."""
    return summarise(run_items(generate, scenes, seeds, reference, roundtrip=roundtrip))


# --- report ---------------------------------------------------------------------------------------

def format_table(figures: dict[str, Any]) -> str:
    """A plain-text table: one row per attribute; model in-dist / held-out / all, ground truth, and
    ground truth through the VAE when measured."""
    decoded = figures.get("through_vae", {}).get("all")
    head = f"{'attribute':22s} {'in-dist':>14s} {'held-out':>14s} {'all':>14s} {'ground truth':>13s}"
    head += f" {'through VAE':>12s}" if decoded is not None else ""
    lines = [head, "-" * len(head)]
    reference = figures.get("reference", {}).get("all", {})
    for attr, label in ATTRIBUTES.items():
        if attr not in figures["model"]["all"]:
            continue
        cells = []
        for group in GROUPS:
            rate = figures["model"][group].get(attr)
            n = figures["counts"][group].get(attr, 0)
            cells.append(f"{rate:6.1%} ({n:3d})" if rate is not None else f"{'-':>14s}")
        ref = f"{reference[attr]:13.1%}" if attr in reference else f"{'-':>13s}"
        row = f"{label:22s} {cells[0]:>14s} {cells[1]:>14s} {cells[2]:>14s} {ref}"
        if decoded is not None:
            row += f" {decoded[attr]:12.1%}" if attr in decoded else f" {'-':>12s}"
        lines.append(row)
    lines.append(f"{figures['n']} prompts, {figures['n_held_out']} with a held-out colour/shape pair; "
                 "(n) = prompts judged")
    if figures.get("by_colour"):
        lines += ["", "object colour by prompted colour (one-object prompts): model"
                  + (", through VAE" if decoded is not None else "") + " (n)"]
        for colour, f in figures["by_colour"].items():
            vae = f"  {f['through_vae']:6.1%}" if "through_vae" in f else ""
            lines.append(f"  {colour:8s} {f['model']:6.1%}{vae}  ({f['n']:2d})")
    return "\n".join(lines)


def select_for_grid(items: Sequence[Item], count: int = 48) -> list[Item]:
    """A fixed, varied selection: up to 1/6 each held-out, two-object and landscape, rest one-object."""
    kinds: dict[str, list[Item]] = {"held_out": [], "two": [], "landscape": [], "one": []}
    for item in items:
        if item.held_out:
            kinds["held_out"].append(item)
        elif isinstance(item.scene, world.LandscapeScene):
            kinds["landscape"].append(item)
        else:
            kinds["two" if len(item.scene.objects) == 2 else "one"].append(item)
    chosen = kinds["held_out"][:count // 6] + kinds["two"][:count // 6] + kinds["landscape"][:count // 6]
    chosen += [i for i in items if i not in chosen][:count - len(chosen)]
    position = {id(item): k for k, item in enumerate(items)}
    return sorted(chosen, key=lambda i: position[id(i)])


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def make_grid(images: Sequence[Image.Image], captions: Sequence[str], cols: int = 8, scale: int = 2) -> Image.Image:
    """Images upscaled `scale`x (nearest: keep the model's pixels) with wrapped captions underneath."""
    cell = world.SIZE * scale
    pad = 4
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(probe, c, font, cell) for c in captions]
    left, top, right, bottom = probe.textbbox((0, 0), "Ag", font=font)
    line_h = bottom - top + 2
    text_h = line_h * max((len(w) for w in wrapped), default=1)
    rows = math.ceil(len(images) / cols)
    sheet = Image.new("RGB", (cols * (cell + pad) + pad, rows * (cell + text_h + 2 * pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (img, lines) in enumerate(zip(images, wrapped)):
        x = pad + (k % cols) * (cell + pad)
        y = pad + (k // cols) * (cell + text_h + 2 * pad)
        sheet.paste(img.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (x, y))
        for n, line in enumerate(lines):
            draw.text((x, y + cell + 2 + n * line_h - top), line, fill=(40, 40, 40), font=font)
    return sheet


def grid_for(items: Sequence[Item], cols: int = 8, rows: int = 6) -> Image.Image:
    """The README/model-card grid; held-out prompts are marked."""
    chosen = select_for_grid(items, cols * rows)
    captions = [("(held-out) " if i.held_out else "") + i.prompt for i in chosen]
    return make_grid([i.image for i in chosen], captions, cols)


# --- command line ---------------------------------------------------------------------------------

def engine_generator(model: str, steps: int, cfg: float, device: str = "auto") -> Generate:
    """`generate(prompt, seed)` backed by the Studio engine (imported here: torch is slow to load)."""
    from studio.engine import Engine, GenerationRequest

    engine = Engine(device=device)
    engine.load(model)

    def generate(prompt: str, seed: int) -> Image.Image:
        request = GenerationRequest(prompt=prompt, negative_prompt="", steps=steps, cfg=cfg, seed=seed,
                                    width=world.SIZE, height=world.SIZE)
        return engine.generate(request)[0].image

    return generate


def vae_roundtrip(model: str, device: str = "auto") -> RoundTrip:
    """Encode + decode with the model's own VAE (its latent means), as the UNet's outputs are decoded."""
    import numpy as np
    import torch
    from diffusers import AutoencoderKL

    from studio.engine.models import pick_device, resolve

    dev, _ = pick_device(device)
    vae = AutoencoderKL.from_pretrained(resolve(model).path / "vae", torch_dtype=torch.float32).to(dev).eval()

    @torch.no_grad()
    def roundtrip(img: Image.Image) -> Image.Image:
        x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        y = vae.decode(vae.encode(x.to(dev)).latent_dist.mean).sample[0].clamp(-1, 1)
        return Image.fromarray(y.add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy())

    return roundtrip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studio.eval_builtin", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="builtin", help='"builtin" or a model folder')
    p.add_argument("--n", type=int, default=200, help="grammar prompts (held-out quota added: +10%%)")
    p.add_argument("--seed", type=int, default=0, help="picks the prompt set")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=2.0, help="also what the card suggests to Studio (studio.json)")
    p.add_argument("--device", default="auto")
    p.add_argument("--grid", metavar="FILE.png", help="also save a captioned 8x6 grid of generations")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--card", action="store_true",
                   help="write the model card (README.md, eval.json, grid.png) into the model folder")
    return p.parse_args(argv)


def _progress(done: int, total: int) -> None:
    if done % 20 == 0 or done == total:
        print(f"{done}/{total} generated", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scenes = build_scenes(args.n, args.seed)
    seeds = [args.seed * 100_000 + k for k in range(len(scenes))]
    generate = engine_generator(args.model, args.steps, args.cfg, args.device)
    items = run_items(generate, scenes, seeds, progress=_progress, roundtrip=vae_roundtrip(args.model, args.device))
    figures = summarise(items)
    if args.grid:
        grid_for(items).save(args.grid)
    if args.card:
        from studio.builtin.card import write_card

        write_card(args, figures, format_table(figures), grid_for(items))
    if args.json:
        config = {k: getattr(args, k) for k in ("model", "n", "seed", "steps", "cfg")}
        print(json.dumps({"config": config, **figures}))
    else:
        print(format_table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
