"""The `studio` command line: a thin face over the engine and the gallery (contract in DESIGN.md)."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from studio import __version__
from studio.engine.library import ItemKind
from studio.engine.memory import MemoryPreset
from studio.engine.request import FILLS, SCHEDULERS, SEED_MAX, GenerationRequest, fields_from_recipe

DEFAULTS = {f.name: f.default for f in fields(GenerationRequest)}
# CLI option (argparse dest) -> request field, where the names differ.
FIELD_OF = {"negative": "negative_prompt", "batch": "batch_size"}
REQUEST_OPTIONS = ("prompt", "negative", "steps", "cfg", "seed", "width", "height", "scheduler", "model", "vae",
                   "strength", "mask_grow", "mask_feather", "inpaint_area", "padding", "outpaint", "outpaint_fill",
                   "outpaint_overlap", "batch", "variation_seed", "variation_strength", "hires_scale", "hires_steps",
                   "hires_denoise", "hires_upscaler")


class CLIError(Exception):
    """A failure to report as one line on stderr with a non-zero exit."""


def build_parser() -> argparse.ArgumentParser:
    data_help = "where the gallery and settings live (default: $STUDIO_HOME or the platform's user data folder)"
    # Global options work before or after the subcommand: the subcommands' copy leaves the value
    # given before them alone unless it is given again (SUPPRESS: no default of their own).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help=data_help)
    parser = argparse.ArgumentParser(prog="studio",
                                     description="Studio: an image studio built on diffusion models. "
                                                 "With no command it starts the desktop app.")
    parser.add_argument("--data-dir", default=None, help=data_help)
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    sub = parser.add_subparsers(dest="command")

    gen = sub.add_parser("generate", parents=[common], help="generate images from a prompt")
    # Request options have no defaults of their own (SUPPRESS): what is not given comes from --from's
    # recipe, else from GenerationRequest, where every default is defined once.
    keep = argparse.SUPPRESS
    gen.add_argument("--from", dest="source", help="replay the recipe of a PNG or a gallery id; any option given "
                     "with it overrides that field (`--from 12 --seed 5`)")
    gen.add_argument("--prompt", default=keep, help="what to draw (required unless --from gives it)")
    gen.add_argument("--negative", default=keep, help="negative prompt")
    gen.add_argument("--steps", type=int, default=keep, help=f"denoising steps (default {DEFAULTS['steps']})")
    gen.add_argument("--cfg", type=float, default=keep, help="guidance scale (default: what the model suggests, else 7)")
    gen.add_argument("--seed", type=int, default=keep, help="0..4294967295 (default: random)")
    gen.add_argument("--width", type=int, default=keep)
    gen.add_argument("--height", type=int, default=keep)
    gen.add_argument("--scheduler", default=keep, choices=SCHEDULERS, help=f"default {DEFAULTS['scheduler']}")
    gen.add_argument("--model", default=keep, help="model name (see `studio models`) or path (default: builtin)")
    gen.add_argument("--vae", default=keep, help="a VAE from the model library (name or path) instead of the "
                     "model's own")
    gen.add_argument("--init", type=Path, help="start image (img2img, inpaint, outpaint)")
    gen.add_argument("--mask", type=Path, help="mask image: white = repaint")
    gen.add_argument("--strength", type=float, default=keep,
                     help=f"denoising strength for --init (default {DEFAULTS['strength']})")
    gen.add_argument("--mask-grow", type=int, default=keep, help="grow (or shrink, if negative) the mask, px")
    gen.add_argument("--mask-feather", type=int, default=keep,
                     help=f"soften the mask edge, px (default {DEFAULTS['mask_feather']})")
    gen.add_argument("--inpaint-area", choices=("whole", "masked"), default=keep,
                     help="repaint at full size (default), or only a padded box around the mask")
    gen.add_argument("--padding", type=int, default=keep,
                     help=f"padding around the mask for --inpaint-area masked (default {DEFAULTS['padding']})")
    gen.add_argument("--outpaint", default=keep, help="extend the canvas by LEFT,TOP,RIGHT,BOTTOM pixels")
    gen.add_argument("--outpaint-fill", choices=FILLS, default=keep,
                     help=f"how the new area is prefilled (default {DEFAULTS['outpaint_fill']})")
    gen.add_argument("--outpaint-overlap", type=int, default=keep,
                     help=f"px the new area reaches into the image (default {DEFAULTS['outpaint_overlap']})")
    gen.add_argument("--batch", type=int, default=keep, help="number of images (seeds seed, seed+1, ...; with a "
                     "variation strength the seed and variation seeds v, v+1, ...)")
    gen.add_argument("--variation-seed", type=int, default=keep)
    gen.add_argument("--variation-strength", type=float, default=keep)
    gen.add_argument("--hires-scale", type=float, default=keep, help="hires fix: draw at the model's size, then "
                     "upscale by this factor and repaint (A1111's Hires upscale)")
    gen.add_argument("--hires-steps", type=int, default=keep, help="steps of the hires pass (default: as many as --steps)")
    gen.add_argument("--hires-denoise", type=float, default=keep,
                     help=f"how much the hires pass repaints (default {DEFAULTS['hires_denoise']})")
    gen.add_argument("--hires-upscaler", default=keep, help=f"Lanczos, or an upscaler of the model library "
                     f"(`studio models --kind upscaler`; default {DEFAULTS['hires_upscaler']})")
    gen.add_argument("--out", type=Path, help="file or folder to write the PNG(s) to")
    gen.add_argument("--no-gallery", action="store_true", help="do not keep the images in the gallery")
    gen.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    gen.add_argument("--memory", default="auto", choices=[p.value for p in MemoryPreset],
                     help="GPU memory use: high keeps everything on the GPU; low offloads the model part by part; "
                          "lowest layer by layer; auto picks from the model's size and the GPU's memory")
    gen.add_argument("--allow-pickle", action="store_true", help="let a diffusers folder load .bin (pickle) weights: this can run code from the files")
    gen.add_argument("--json", action="store_true", help="one JSON object per image on stdout")

    gal = sub.add_parser("gallery", parents=[common], help="list, export and import gallery images")
    gsub = gal.add_subparsers(dest="gallery_command", required=True)
    lst = gsub.add_parser("list", parents=[common])
    lst.add_argument("--search")
    lst.add_argument("--favorites", action="store_true")
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--json", action="store_true")
    exp = gsub.add_parser("export", parents=[common])
    exp.add_argument("ids", nargs="+", type=int)
    exp.add_argument("--to", type=Path, required=True)
    exp.add_argument("--format", choices=("png", "jpeg", "webp"), default="png")
    exp.add_argument("--strip-metadata", action="store_true")
    exp.add_argument("--template", default="{date}-{seed}-{prompt}", help="file name: {seed} {prompt} {date} {id}")
    imp = gsub.add_parser("import", parents=[common])
    imp.add_argument("paths", nargs="+", type=Path)

    mod = sub.add_parser("models", parents=[common], help="the model library: list it, add or remove folders")
    mod.add_argument("--json", action="store_true")
    mod.add_argument("--kind", choices=[k.value for k in ItemKind], help="only this kind")
    mod.add_argument("--search", help="only names containing this text")
    mod.add_argument("--hash", action="store_true", help="compute the missing short hashes (slow for big files)")
    msub = mod.add_subparsers(dest="models_command")
    add = msub.add_parser("add", parents=[common], help="read an existing models folder in place "
                                                          "(A1111, ComfyUI, InvokeAI or any folder)")
    add.add_argument("folder", type=Path)
    rem = msub.add_parser("remove", parents=[common], help="stop reading a folder (its files stay)")
    rem.add_argument("folder", type=Path)
    info = sub.add_parser("info", parents=[common], help="show the recipe stored in an image")
    info.add_argument("image", type=Path)
    info.add_argument("--json", action="store_true")
    from studio import cli_more

    cli_more.add_parsers(sub, common, gen)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from studio import cli_more

    handlers = {"generate": cmd_generate, "gallery": cmd_gallery, "models": cmd_models, "info": cmd_info,
                "upscale": cli_more.cmd_upscale, "grid": cli_more.cmd_grid}
    if args.command is None:
        print("studio: error: no command; `studio` alone starts the app, `studio --help` lists the commands",
              file=sys.stderr)
        return 2
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`studio gallery list --json | head -2`): that is its choice, not an error.
        # Point stdout at nothing so Python's own flush at exit does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
        from studio.errors import describe

        print(f"studio: error: {describe(exc)}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------- generate

def _open_image(path: Path, what: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except FileNotFoundError as exc:
        raise CLIError(f"{what} {path} does not exist") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CLIError(f"{what} {path} is not a readable image ({exc})") from exc


def _outpaint(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise CLIError(f"--outpaint takes LEFT,TOP,RIGHT,BOTTOM pixel counts, e.g. 64,0,64,0 (got {text!r})")
    return parts  # type: ignore[return-value]


def request_from_args(args: argparse.Namespace) -> Any:
    given = vars(args)
    values: dict[str, Any] = {}
    source_mode = "txt2img"
    if getattr(args, "source", None):
        recipe = _recipe_of(args.source, args.data_dir)
        values.update(fields_from_recipe(recipe))
        source_mode = str(recipe.get("mode") or "txt2img")
    for option in REQUEST_OPTIONS:
        if option in given:
            values[FIELD_OF.get(option, option)] = _outpaint(given[option]) if option == "outpaint" else given[option]
    if "prompt" not in values:
        raise CLIError("give --prompt, or --from IMAGE|GALLERY_ID to replay a saved picture")
    if source_mode != "txt2img" and args.init is None:
        raise CLIError(f"that picture was made by {source_mode} from an input image, which a recipe does not "
                       "keep: give it again with --init (and --mask)")
    values.setdefault("seed", random.randint(0, SEED_MAX))
    cfg, steps = _suggestions(values.get("model", DEFAULTS["model"]), args)
    values.setdefault("cfg", cfg)
    if steps is not None:
        values.setdefault("steps", steps)
    values["init_image"] = _open_image(args.init, "the init image") if args.init else None
    values["mask"] = _open_image(args.mask, "the mask") if args.mask else None
    return GenerationRequest(**values).validate()


def _recipe_of(source: str, data_dir_option: str | None) -> dict[str, Any]:
    """The recipe in a PNG, or of a gallery image by id."""
    from studio.engine.metadata import read_recipe
    from studio.paths import data_dir

    if Path(source).is_file():
        _open_image(Path(source), "--from")
        recipe = read_recipe(source)
        if recipe is None:
            raise CLIError(f"{source} carries no generation metadata to replay")
        return recipe
    if not source.isdigit():
        raise CLIError(f"--from takes a PNG file or a gallery id (`studio gallery list`); {source!r} is neither")
    gallery = _open_gallery(data_dir(data_dir_option))
    return gallery.get(int(source)).recipe()


def _suggestions(model: str, args: argparse.Namespace) -> tuple[float, int | None]:
    """The guidance and steps the model suggests, else SD's 7 and the usual steps (an unknown model fails later,
    at load, with its reason)."""
    from studio.engine.models import DEFAULT_CFG, ModelError, resolve
    from studio.paths import data_dir

    try:
        entry = resolve(model, data_dir(args.data_dir), allow_pickle=args.allow_pickle)
    except ModelError:
        return DEFAULT_CFG, None
    return entry.suggested_cfg() or DEFAULT_CFG, entry.suggested_steps()


def _out_paths(out: Path | None, count: int) -> list[Path | None]:
    if out is None:
        return [None] * count
    if out.is_dir() or str(out).endswith(os.sep) or out.suffix == "":
        return [out / f"studio-{k}.png" for k in range(count)]  # named after the seed below
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{k}{out.suffix}") for k in range(count)]


def cmd_generate(args: argparse.Namespace) -> int:
    from studio.engine import Engine
    from studio.engine.metadata import encode_png
    from studio.gallery.files import atomic_write
    from studio.paths import data_dir

    if args.no_gallery and args.out is None:
        raise CLIError("nothing would be kept: give --out, or drop --no-gallery")
    request = request_from_args(args)
    home = data_dir(args.data_dir)
    engine = Engine(device=args.device, data_dir=home, memory=args.memory, allow_pickle=args.allow_pickle)
    loaded = engine.load(request.model)
    if not args.json:
        print(f"{loaded.entry.name}: {loaded.label} on {loaded.device.type}, {loaded.memory.describe()}",
              file=sys.stderr)
    results = engine.generate(request)
    gallery = None if args.no_gallery else _open_gallery(home)
    for result, out in zip(results, _out_paths(args.out, len(results))):
        gallery_id, path = None, None
        if gallery is not None:
            gallery_id = gallery.save(result.image, result.recipe, parent_id=request.parent_id)
            path = gallery.get(gallery_id).file
        if out is not None:
            if out.name.startswith("studio-") and args.out.suffix == "":
                out = out.with_name(f"studio-{result.seed}.png")
            atomic_write(out, encode_png(result.image, result.recipe))  # a reader never sees half a PNG
            path = out
        record = {"path": str(path), "seed": result.seed, "width": result.image.width,
                  "height": result.image.height, "model": result.recipe["model"]["name"],
                  "gallery_id": gallery_id, "seconds": round(result.seconds, 3)}
        print(json.dumps(record) if args.json else f"{path}  seed {result.seed}  {result.seconds:.2f} s")
    return 0


# ---------------------------------------------------------------- gallery, models, info

def _open_gallery(home: Path) -> Any:
    from studio.gallery import Gallery

    return Gallery(home)


def cmd_gallery(args: argparse.Namespace) -> int:
    from studio.paths import data_dir

    gallery = _open_gallery(data_dir(args.data_dir))
    if args.gallery_command == "list":
        rows = gallery.find(search=args.search or "", favorites=args.favorites, limit=args.limit)
        for row in rows:
            record = {**row.to_dict(), "id": row.id, "path": str(row.file)}
            print(json.dumps(record) if args.json else
                  f"{row.id:>6}  {row.created_at[:19]}  seed {row.seed if row.seed is not None else '-'}  "
                  f"{'★ ' if row.favorite else ''}{row.prompt}")
        return 0
    if args.gallery_command == "export":
        written = gallery.export(args.ids, args.to, fmt=args.format, strip_metadata=args.strip_metadata,
                                 template=args.template)
        for path in written:
            print(path)
        return 0
    result = gallery.import_paths(args.paths)
    for path, reason in result.warnings:
        print(f"studio: warning: {path}: {reason}", file=sys.stderr)
    for path, reason in result.errors:
        print(f"studio: skipped {path}: {reason}", file=sys.stderr)
    print(f"imported {len(result)} image(s)")
    return 1 if result.errors and not len(result) else 0


def cmd_models(args: argparse.Namespace) -> int:
    from studio.engine import library
    from studio.paths import data_dir

    home = data_dir(args.data_dir)
    if args.models_command == "add":
        folder = library.add_folder(home, args.folder)
        print(f"added {folder}: {len(library.scan(home))} model file(s) in the library")
        return 0
    if args.models_command == "remove":
        library.remove_folder(home, args.folder)
        print(f"removed {args.folder} from the library (its files are untouched)")
        return 0
    items = _builtin_items() + library.scan(home)
    if args.kind:
        items = [i for i in items if i.kind.value == args.kind]
    if args.search:
        items = [i for i in items if args.search.lower() in i.name.lower()]
    if args.hash:
        library.hash_missing(home, items)
    for item in items:
        if args.json:
            print(json.dumps(item.as_dict()))
        else:
            native = f"{item.native_size}px" if item.native_size else "-"
            print(f"{item.name:<32} {item.kind.value:<10} {item.family or '-':<20} {native:>6} "
                  f"{library.size_text(item.size):>8}  {item.hash or '-':<10}  {item.path}")
    if not items and not args.json:
        print("no models: add a folder with `studio models add FOLDER` or put files in "
              f"{home / 'models'}")
    return 0


def _builtin_items() -> list[Any]:
    from studio.engine.library import LibraryItem
    from studio.resources import BUILTIN_MODEL, BUILTIN_MODEL_NAME

    if not (BUILTIN_MODEL / "model_index.json").exists():
        return []
    size = sum(f.stat().st_size for f in BUILTIN_MODEL.rglob("*") if f.is_file())
    return [LibraryItem(ItemKind.DIFFUSERS, BUILTIN_MODEL_NAME, BUILTIN_MODEL, size, "built-in (SD 1.x layout)", 64)]


def cmd_info(args: argparse.Namespace) -> int:
    from studio.engine.metadata import format_parameters, read_recipe

    _open_image(args.image, "the image")  # a clear message for a missing or corrupt file
    recipe = read_recipe(args.image)
    if recipe is None:
        raise CLIError(f"{args.image} carries no generation metadata")
    print(json.dumps(recipe, indent=None if args.json else 2) if args.json else format_parameters(recipe))
    return 0
