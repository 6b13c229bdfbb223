"""`python -m studio.bench seams [--model builtin|PATH] [--json] [--out DIR]`: how visible are the seams?

The quality bar of outpainting and "only masked" inpainting, measured with canvas_ops.seam_score
(seam step / baseline step nearby; 1.0 = the seam is no more visible than the texture) on a fixed
set of the built-in world's scenes, with each scene's caption as the prompt and one fixed seed per
scene, so every setting is compared on the same pictures and the same noise.

- Outpaint: 32 px on the left and right, and separately on the top and bottom, of a 64 px scene, for
  every prefill (canvas_ops.FILL_MODES), overlap and strength, through the engine's own outpaint
  path (GenerationRequest.outpaint_overlap). The seam is the original's border.
- Only-masked inpaint: a 32 px square in the middle of the scene rendered at 128 px (so the crop box
  fits inside the picture and the crop is worked on at more than its size), for each padding and
  feather; seams at the crop box and at the mask, each beside the same seam's ratio in the source
  (the texture may have an edge there already).

`repaint` (mean absolute change, 0..255, over the repainted area) sits beside every ratio: a
setting that changes nothing has no seam either, and must not win for that reason.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from studio.engine import canvas_ops

EXTENT = 32
DIRECTIONS = {"left_right": (EXTENT, 0, EXTENT, 0), "top_bottom": (0, EXTENT, 0, EXTENT)}
INPAINT_SIDE, SQUARE = 128, 32
SEED_BASE = 1000
ZOOM = 4  # strips are upscaled so the model's pixels are visible (inpaint strips by half: 2x the pixels)


@dataclass(frozen=True)
class Source:
    name: str
    caption: str
    image: Image.Image  # the model's size (64 px for the built-in model's world)
    large: Image.Image  # the same scene rendered at INPAINT_SIDE, for the only-masked inpaint
    seed: int


def _render_large(index: int) -> Image.Image:
    """World item `index` rendered at INPAINT_SIDE from its supersampled drawing, as world.sample does
    at 64 px: a real 128 px picture, where a 2x upscale would put a pixel-pair pattern on every seam."""
    import random

    from studio.builtin import world

    rng = random.Random(index)
    scene = world.random_scene(rng)
    draw = world._render_shapes if isinstance(scene, world.ShapeScene) else world._render_landscape
    return draw(scene, rng).resize((INPAINT_SIDE, INPAINT_SIDE), Image.Resampling.BOX)  # type: ignore[arg-type]


def sources(count: int) -> list[Source]:
    """The first landscapes and shape scenes of the world, alternating (half of each)."""
    from studio.builtin import world

    wanted = {"landscape": math.ceil(count / 2), "shapes": count // 2}
    found: dict[str, list[Source]] = {"landscape": [], "shapes": []}
    index = 0
    while any(len(found[k]) < n for k, n in wanted.items()):
        scene, image = world.sample(index)
        if len(found[scene.kind]) < wanted[scene.kind]:
            found[scene.kind].append(Source(f"world-{index}", scene.caption(), image, _render_large(index),
                                            SEED_BASE + index))
        index += 1
    pairs = zip(found["landscape"], found["shapes"] + [None] * count)
    return [s for pair in pairs for s in pair if s is not None][:count]


def _request(src: Source, args: argparse.Namespace, **fields: Any) -> Any:
    from studio.engine import GenerationRequest

    return GenerationRequest(prompt=src.caption, steps=args.steps, cfg=args.cfg, seed=src.seed, model=args.model,
                             **fields)


def _repaint(a: Image.Image, b: Image.Image, where: np.ndarray) -> float:
    diff = np.abs(np.asarray(a.convert("RGB"), np.float32) - np.asarray(b.convert("RGB"), np.float32)).mean(-1)
    return float(diff[where].mean())


def outpaint(engine: Any, src: Source, extents: tuple[int, int, int, int], fill: str, overlap: int,
             strength: float, args: argparse.Namespace) -> dict[str, Any]:
    """One outpaint: its prefill, result, and seam figures."""
    prefill, _mask = canvas_ops.extend_canvas(src.image, *extents, overlap=overlap, fill=fill, seed=src.seed)
    request = _request(src, args, init_image=src.image, outpaint=extents, outpaint_fill=fill,
                       outpaint_overlap=overlap, strength=strength)
    result = engine.generate(request, preview=False)[0].image
    left, top, _r, _b = canvas_ops.snap_extents(src.image.size, extents)
    box = (left, top, left + src.image.width, top + src.image.height)
    new_area = np.ones((prefill.height, prefill.width), bool)
    new_area[box[1]:box[3], box[0]:box[2]] = False
    return {"ratio": canvas_ops.seam_score(result, box)["ratio"],
            "prefill_ratio": canvas_ops.seam_score(prefill, box)["ratio"],
            "repaint": _repaint(result, prefill, new_area), "prefill": prefill, "result": result}


def inpaint_mask() -> Image.Image:
    mask = Image.new("L", (INPAINT_SIDE, INPAINT_SIDE), 0)
    a = (INPAINT_SIDE - SQUARE) // 2
    ImageDraw.Draw(mask).rectangle((a, a, a + SQUARE - 1, a + SQUARE - 1), fill=255)
    return mask


def inpaint(engine: Any, src: Source, padding: int, feather: int, args: argparse.Namespace) -> dict[str, Any]:
    """One only-masked inpaint of the middle square; seams at the crop box and at the mask border."""
    image = src.large
    mask = inpaint_mask()
    request = _request(src, args, init_image=image, mask=mask, mask_grow=0, mask_feather=feather,
                       inpaint_area="masked", padding=padding, strength=args.inpaint_strength)
    result = engine.generate(request, preview=False)[0].image
    box = canvas_ops.crop_box(canvas_ops.grow_and_feather(mask, 0, feather), padding)  # as the engine does
    whole = box == (0, 0, INPAINT_SIDE, INPAINT_SIDE)
    # The box lies `padding` outside the (soft) mask: a wider baseline band would reach the mask's own
    # seam. Outside the mask paste-back keeps the source, so crop == source unless the crop leaks.
    band = min(8, max(1, padding - 1))
    return {"crop_ratio": None if whole else canvas_ops.seam_score(result, box, band)["ratio"],
            "source_crop_ratio": None if whole else canvas_ops.seam_score(image, box, band)["ratio"],
            "mask_ratio": canvas_ops.seam_score(result, mask)["ratio"],
            "source_mask_ratio": canvas_ops.seam_score(image, mask)["ratio"],
            "repaint": _repaint(result, image, np.asarray(mask) >= 128),
            "box": box, "source": image, "result": result}


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.fmean(vals)) if vals else None


def run(engine: Any, args: argparse.Namespace, say: Any = lambda _m: None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every setting on every source; returns (figures for the report, runs with images for strips)."""
    srcs = sources(args.images)
    runs: dict[str, Any] = {"sources": srcs, "outpaint": {}, "inpaint": {}}
    out_rows, in_rows = [], []
    total = len(srcs) * (len(args.fills) * len(args.overlaps) * len(args.strengths) * len(DIRECTIONS)
                         + len(args.paddings) * len(args.feathers))
    done = 0
    for fill in args.fills:
        for overlap in args.overlaps:
            for strength in args.strengths:
                key = f"outpaint fill={fill} overlap={overlap} strength={strength:g}"
                per_dir = {d: [outpaint(engine, s, ext, fill, overlap, strength, args) for s in srcs]
                           for d, ext in DIRECTIONS.items()}
                done += len(srcs) * len(DIRECTIONS)
                say(f"[{done}/{total}] {key}")
                runs["outpaint"][key] = per_dir
                every = [r for rs in per_dir.values() for r in rs]
                ratios = [r["ratio"] for r in every]
                out_rows.append({
                    "setting": key, "fill": fill, "overlap": overlap, "strength": strength,
                    "median_ratio": _median(ratios),
                    "mean_ratio": _mean(ratios),
                    **{f"{d}_median_ratio": _median([r["ratio"] for r in rs]) for d, rs in per_dir.items()},
                    "prefill_median_ratio": _median([r["prefill_ratio"] for r in every]),
                    "repaint": _mean([r["repaint"] for r in every]), "n": len(every)})
    for padding in args.paddings:
        for feather in args.feathers:
            key = f"inpaint masked padding={padding} feather={feather}"
            rs = [inpaint(engine, s, padding, feather, args) for s in srcs]
            done += len(srcs)
            say(f"[{done}/{total}] {key}")
            runs["inpaint"][key] = rs
            in_rows.append({
                "setting": key, "padding": padding, "feather": feather,
                "crop_median_ratio": _median([r["crop_ratio"] for r in rs]),
                "source_crop_median_ratio": _median([r["source_crop_ratio"] for r in rs]),
                "mask_median_ratio": _median([r["mask_ratio"] for r in rs]),
                "mask_mean_ratio": _mean([r["mask_ratio"] for r in rs]),
                "source_mask_median_ratio": _median([r["source_mask_ratio"] for r in rs]),
                "repaint": _mean([r["repaint"] for r in rs]), "n": len(rs)})
    figures: dict[str, Any] = {"model": args.model, "steps": args.steps, "cfg": args.cfg, "images": len(srcs),
                               "extent": EXTENT, "inpaint_strength": args.inpaint_strength,
                               "outpaint": out_rows, "inpaint": in_rows}
    if out_rows:
        ranked = sorted(out_rows, key=lambda r: r["median_ratio"])
        figures["best_outpaint"], figures["worst_outpaint"] = ranked[0]["setting"], ranked[-1]["setting"]
    if in_rows:
        ranked = sorted(in_rows, key=lambda r: r["mask_median_ratio"])
        figures["best_inpaint"], figures["worst_inpaint"] = ranked[0]["setting"], ranked[-1]["setting"]
    return figures, runs


# ------------------------------------------------------------------------------------------ output


def _fmt(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.3f}"


def table(figures: dict[str, Any]) -> str:
    """One table, setting -> median seam ratio (lower is better, 1.0 = invisible); * marks the best."""
    lines = [f"Seams: model {figures['model']}, {figures['images']} scenes, {figures['steps']} steps, "
             f"cfg {figures['cfg']:g}; median seam ratio (1.0 = invisible), * = best"]
    if figures["outpaint"]:
        width = max(len(r["setting"]) for r in figures["outpaint"])
        lines.append(f"  {'outpaint 32 px':<{width}}  median    L+R    T+B  prefill  repaint")
        for r in figures["outpaint"]:
            mark = "*" if r["setting"] == figures.get("best_outpaint") else " "
            lines.append(f"{mark} {r['setting']:<{width}}  {_fmt(r['median_ratio'])} "
                         f"{_fmt(r['left_right_median_ratio'])}"
                         f" {_fmt(r['top_bottom_median_ratio'])}   {_fmt(r['prefill_median_ratio'])}  "
                         f"{r['repaint']:6.1f}")
    if figures["inpaint"]:
        width = max(len(r["setting"]) for r in figures["inpaint"])
        lines.append(f"  {'only-masked inpaint, 32 px square':<{width}}  mask (source)  crop (source)  repaint")
        for r in figures["inpaint"]:
            mark = "*" if r["setting"] == figures.get("best_inpaint") else " "
            lines.append(f"{mark} {r['setting']:<{width}} {_fmt(r['mask_median_ratio'])} "
                         f"({_fmt(r['source_mask_median_ratio'])}) {_fmt(r['crop_median_ratio'])} "
                         f"({_fmt(r['source_crop_median_ratio'])})  {r['repaint']:6.1f}")
    return "\n".join(lines)


def _zoom(img: Image.Image, factor: int) -> Image.Image:
    return img.convert("RGB").resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)


def _strip(rows: list[list[Image.Image]], title: str, columns: tuple[str, ...], factor: int) -> Image.Image:
    """Rows of panels side by side, each zoomed `factor` times (nearest), with a title and column names."""
    gap, head = 8, 40
    cells = [[_zoom(p, factor) for p in row] for row in rows]
    col_w = [max(row[c].width for row in cells) for c in range(len(columns))]
    row_h = [max(p.height for p in row) for row in cells]
    sheet = Image.new("RGB", (sum(col_w) + gap * (len(col_w) + 1), head + sum(row_h) + gap * (len(rows) + 1)),
                      (32, 32, 34))
    draw = ImageDraw.Draw(sheet)
    draw.text((gap, 4), title, fill=(230, 230, 230))
    y = head + gap
    for row, h in zip(cells, row_h):
        x = gap
        for panel, w in zip(row, col_w):
            sheet.paste(panel, (x, y))
            x += w + gap
        y += h + gap
    x = gap
    for name, w in zip(columns, col_w):
        draw.text((x, 22), name, fill=(170, 170, 176))
        x += w + gap
    return sheet


def _placed(src: Image.Image, size: tuple[int, int], at: tuple[int, int]) -> Image.Image:
    canvas = Image.new("RGB", size, (52, 52, 56))  # a shade off the sheet: shows the extended frame
    canvas.paste(src.convert("RGB"), at)
    return canvas


def _masked_view(image: Image.Image, mask: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The source with the mask tinted and the crop box outlined: what the inpaint was asked to do."""
    tint = Image.new("RGB", image.size, (190, 70, 255))
    view = Image.composite(tint, image.convert("RGB"), mask.point(lambda v: v // 2))
    ImageDraw.Draw(view).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=(255, 220, 0))
    return view


def save_strips(out: Path, figures: dict[str, Any], runs: dict[str, Any]) -> list[Path]:
    """Before/after PNG strips for the best and worst outpaint and inpaint settings."""
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    rows_by = {r["setting"]: r for r in figures["outpaint"] + figures["inpaint"]}
    for rank in ("best", "worst"):
        key = figures.get(f"{rank}_outpaint")
        for direction, extents in DIRECTIONS.items():
            if not key:
                break
            rows = []
            for src, r in zip(runs["sources"], runs["outpaint"][key][direction]):
                left, top, _r, _b = canvas_ops.snap_extents(src.image.size, extents)
                rows.append([_placed(src.image, r["prefill"].size, (left, top)), r["prefill"], r["result"]])
            title = f"{rank}: {key}, {direction}: median seam ratio {rows_by[key]['median_ratio']:.3f}"
            path = out / f"outpaint-{rank}-{direction}.png"
            _strip(rows, title, ("source", "extended prefill", "result"), ZOOM).save(path)
            saved.append(path)
        key = figures.get(f"{rank}_inpaint")
        if key:
            mask = inpaint_mask()
            rows = [[r["source"], _masked_view(r["source"], mask, r["box"]), r["result"]]
                    for r in runs["inpaint"][key]]
            title = f"{rank}: {key}: median seam ratio at the mask {rows_by[key]['mask_median_ratio']:.3f}"
            path = out / f"inpaint-{rank}.png"
            _strip(rows, title, ("source", "mask and crop box", "result"), ZOOM // 2).save(path)
            saved.append(path)
    (out / "seams.json").write_text(json.dumps(figures, indent=1))
    return saved


# -------------------------------------------------------------------------------------------- main


def _numbers(kind: type, text: str) -> list[Any]:
    return [kind(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studio.bench seams", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin", help="builtin (default), a model name or a pipeline folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--out", type=Path, help="save before/after PNG strips (and seams.json) here")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--images", type=int, default=6, help="scenes (half landscapes, half shapes)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--fills", type=lambda t: _numbers(str, t), default=list(canvas_ops.FILL_MODES))
    p.add_argument("--overlaps", type=lambda t: _numbers(int, t), default=[8, 16])
    p.add_argument("--strengths", type=lambda t: _numbers(float, t), default=[0.75, 1.0])
    p.add_argument("--paddings", type=lambda t: _numbers(int, t), default=[8, 16])
    p.add_argument("--feathers", type=lambda t: _numbers(int, t), default=[0, 2, 4, 8])
    p.add_argument("--inpaint-strength", type=float, default=1.0)
    args = p.parse_args(argv)
    bad = [f for f in args.fills if f not in canvas_ops.FILL_MODES]
    if bad:
        p.error(f"unknown fill {bad[0]!r}; choose from {', '.join(canvas_ops.FILL_MODES)}")
    if args.images < 1:
        p.error("--images must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from studio.engine import Engine, ModelError

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    engine = Engine(device=args.device)
    try:
        engine.load(args.model)
    except ModelError as exc:
        print(f"seams: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    figures, runs = run(engine, args, say)
    figures["seconds"] = time.perf_counter() - start
    figures["device"] = engine.model.device.type if engine.model is not None else args.device
    if args.out is not None:
        for path in save_strips(args.out, figures, runs):
            say(f"saved {path}")
    print(json.dumps(figures) if args.json else table(figures))
    return 0
