"""`studio upscale` and `studio grid`: the CLI faces of the Upscale command and comparison grids."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from studio.engine.upscale import LANCZOS
from studio.recipe.request import default, knobs


def add_parsers(sub: Any, common: argparse.ArgumentParser, generate: argparse.ArgumentParser) -> None:
    up = sub.add_parser("upscale", parents=[common], help="bring a gallery image or a picture to a larger size "
                        "(a new gallery image linked to it)")
    up.add_argument("source", help="a gallery id or an image file")
    up.add_argument("--scale", type=float, default=4.0, help="size factor, 1..8 (default 4)")
    up.add_argument("--upscaler", default=LANCZOS, help="Lanczos (default), or an upscaler of the model library "
                    "(`studio models --kind upscaler`) or its file")
    up.add_argument("--tile", type=int, help="tile side in px for an upscaler model (default: from free memory)")
    knob = knobs()
    up.add_argument("--redraw", type=float, nargs="?", const=default("redraw_denoise"), metavar="DENOISE",
                    help="then repaint the upscaled picture tile by tile (tiled diffusion, as Ultimate SD Upscale) "
                    "with the picture's own prompt, model, sampler, steps, CFG and seed: "
                    f"{knob['redraw_denoise'].help} (default {default('redraw_denoise')} when given alone)")
    up.add_argument("--redraw-tile", type=int, default=default("redraw_tile"), metavar="N",
                    help=f"with --redraw: {knob['redraw_tile'].help}")
    up.add_argument("--redraw-overlap", type=int, default=default("redraw_overlap"), metavar="N",
                    help=f"with --redraw: {knob['redraw_overlap'].help} (default {default('redraw_overlap')})")
    up.add_argument("--out", type=Path, help="also write the PNG here")
    up.add_argument("--no-gallery", action="store_true", help="do not keep the image in the gallery")
    up.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    up.add_argument("--json", action="store_true", help="one JSON object on stdout")

    # A grid takes every generate option (the base request) and its axes.
    grid = sub.add_parser("grid", parents=[generate], conflict_handler="resolve",
                          help="a comparison grid (X/Y/Z plot): one labelled image plus every cell in the gallery",
                          description="Axes: seed, cfg, steps, sampler, prompt (search/replace: the first value is "
                          "searched for and each value replaces it), model, lora (weight of the prompt's "
                          "<lora:...> tags), denoise. Values: v1,v2,... or a..b[:step].")
    grid.add_argument("--x", required=True, help="first axis, e.g. cfg=2,4,6")
    grid.add_argument("--y", help="second axis, e.g. seed=1..4")
    grid.add_argument("--z", help="third axis, e.g. sampler=Euler,DDIM (one grid block per value)")


# ---------------------------------------------------------------- upscale

def cmd_upscale(args: argparse.Namespace) -> int:
    from studio.cli import CLIError, _open_gallery, _open_image
    from studio.engine import Engine
    from studio.engine.enlarge import upscale_picture
    from studio.engine.tiled_redraw import redraw_request, settings_of
    from studio.paths import data_dir
    from studio.recipe.metadata import MetadataError, read_recipe

    if args.no_gallery and args.out is None:
        raise CLIError("nothing would be kept: give --out, or drop --no-gallery")
    home = data_dir(args.data_dir)
    parent_id = None
    if Path(args.source).is_file():
        path = Path(args.source)
        try:
            recipe = read_recipe(path) or {}
        except MetadataError:
            recipe = {}  # a picture with broken metadata still upscales
    elif args.source.isdigit():
        record = _open_gallery(home).get(int(args.source))
        path, recipe, parent_id = record.file, record.recipe(), record.id
    else:
        raise CLIError(f"upscale takes a gallery id (`studio gallery list`) or an image file; {args.source!r} "
                       "is neither")
    image = _open_image(path, "the picture")
    engine = Engine(device=args.device, data_dir=home)
    if args.redraw is None:
        result = upscale_picture(engine, image, args.scale, args.upscaler, recipe, parent_id, tile=args.tile)
        _keep(args, home, result, parent_id, {"from": str(path)}, out=args.out)
        return 0
    if args.tile is not None:
        raise CLIError("--tile sizes an upscaler file's tiles, which a redraw picks itself; --redraw-tile sets "
                       "the repainted tiles")
    request = redraw_request(settings_of(recipe), image, parent_id, redraw_scale=args.scale,
                             redraw_upscaler=args.upscaler, redraw_denoise=args.redraw, redraw_tile=args.redraw_tile,
                             redraw_overlap=args.redraw_overlap)
    [result] = engine.generate(request)
    # The picture is kept as the redraw's input, so `studio generate --from` replays it.
    _keep(args, home, result, parent_id, {"from": str(path), "seed": result.seed,
                                          "tiles": result.recipe["redraw_tiles"]}, out=args.out,
          inputs=(request.init_image,))
    return 0


def _keep(args: argparse.Namespace, home: Path, result: Any, parent_id: int | None, extra: dict[str, Any],
          gallery: Any = None, out: Path | None = None, inputs: tuple[Any, ...] = ()) -> int | None:
    """Save to the gallery (unless --no-gallery) and to --out; print one line (or JSON object)."""
    from studio.cli import _open_gallery
    from studio.gallery.files import atomic_write
    from studio.recipe.metadata import encode_png

    gallery_id, path = None, None
    if not args.no_gallery:
        gallery = gallery or _open_gallery(home)
        gallery_id = gallery.save(result.image, result.recipe, parent_id=parent_id, inputs=inputs)
        path = gallery.get(gallery_id).file
    if out is not None:
        atomic_write(out, encode_png(result.image, result.recipe))
        path = out
    record = {"path": str(path), "width": result.image.width, "height": result.image.height,
              "gallery_id": gallery_id, "parent_id": parent_id, "seconds": round(result.seconds, 3), **extra}
    print(json.dumps(record) if args.json else f"{path}  {result.image.width}x{result.image.height}  "
          f"{result.seconds:.2f} s")
    return gallery_id


# ---------------------------------------------------------------- grid

def cmd_grid(args: argparse.Namespace) -> int:
    from studio.cli import _open_gallery, request_from_args
    from studio.engine import Engine
    from studio.engine.grid import GridSpec, parse_axis, run
    from studio.paths import data_dir

    request = request_from_args(args)
    spec = GridSpec(request, [parse_axis(text) for text in (args.x, args.y, args.z) if text])
    cells = spec.cells()  # every cell checked before the model loads
    home = data_dir(args.data_dir)
    engine = Engine(device=args.device, data_dir=home, memory=args.memory, allow_pickle=args.allow_pickle)
    engine.load(request.model)
    nx, ny, nz = spec.shape()
    if not args.json:
        print(f"{len(cells)} cells ({nx} x {ny} x {nz})", file=sys.stderr)
    result = run(engine, spec)
    gallery = None if args.no_gallery else _open_gallery(home)
    folder = args.out if args.out is not None and args.out.suffix == "" else None
    grid_out = (folder / "grid.png") if folder else args.out
    # The grid first: each cell is kept as its own image, "made from" the grid.
    grid_id = _keep(args, home, result.grid, request.parent_id, {"kind": "grid"}, gallery, grid_out)
    for k, (cell, image) in enumerate(zip(cells, result.cells)):
        where = {"x": cell.x, "y": cell.y, "z": cell.z}
        out = folder / f"cell-{k}-seed{image.seed}.png" if folder else None
        if gallery is not None or out is not None:
            _keep(args, home, image, grid_id, {"kind": "cell", "cell": where, "seed": image.seed}, gallery, out)
    return 0
