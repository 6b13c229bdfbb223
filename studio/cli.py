"""The `studio` command line: a thin face over the engine and the gallery (contract in DESIGN.md)."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

from studio import __version__
from studio.engine.library import ItemKind
from studio.engine.memory import MemoryPreset
from studio.gallery.records import SEARCH_SYNTAX
from studio.recipe.errors import StudioError
from studio.recipe.request import SEED_MAX, GenerationRequest, RequestError, from_recipe, knobs
from studio.recipe.request import default as field_default

# Request field -> CLI option (argparse dest), where the names differ.
OPTION_OF = {"negative_prompt": "negative", "batch_size": "batch"}
# What the CLI says of a default that is not a plain value.
CLI_DEFAULTS = {"cfg": "what the model suggests, else 7", "seed": "random", "steps": "20, or what the model suggests",
                "width": "the model's native size, or the init image's", "height": "as width"}


class CLIError(StudioError):
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
    for name, k in knobs().items():  # every request field, its range, choices and default from one place
        default = field_default(name)
        shown = CLI_DEFAULTS.get(name, default if default not in (None, "") else None)
        limits = f"{_plain(k.low)}..{_plain(k.high)}" if k.low is not None and k.high is not None else ""
        text = "; ".join(t for t in (k.help, limits, f"default: {shown}" if shown is not None else "") if t)
        gen.add_argument("--" + OPTION_OF.get(name, name).replace("_", "-"), dest=OPTION_OF.get(name, name),
                         type=type(default) if default is not None else float if k.step % 1 else int,
                         choices=k.choices or None,
                         default=keep, help=text)
    gen.add_argument("--init", type=Path, help="start image (img2img, inpaint, outpaint)")
    gen.add_argument("--mask", type=Path, help="mask image: white = repaint")
    gen.add_argument("--outpaint", default=keep, help="extend the canvas by LEFT,TOP,RIGHT,BOTTOM pixels")
    gen.add_argument("--out", type=Path, help="file or folder to write the PNG(s) to")
    gen.add_argument("--no-gallery", action="store_true", help="do not keep the images in the gallery")
    gen.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    gen.add_argument("--memory", default="auto", choices=[p.value for p in MemoryPreset],
                     help="GPU memory use: high keeps everything on the GPU; low offloads the model part by part; "
                          "lowest layer by layer; auto picks from the model's size and the GPU's memory")
    gen.add_argument("--server", action="append", metavar="URL",
                     help="run on this ComfyUI server (repeat for several: the images spread over them); "
                          "--model then names the server's checkpoint")
    gen.add_argument("--in-flight", type=int, default=1, metavar="N",
                     help="images each --server runs at once (default 1)")
    gen.add_argument("--local", action="store_true",
                     help="run on this computer even when the default backend (or --from's picture) is a server")
    gen.add_argument("--allow-pickle", action="store_true",
                     help="let a diffusers folder load .bin (pickle) weights: this can run code from the files")
    gen.add_argument("--json", action="store_true", help="one JSON object per image on stdout: path, seed, width, "
                     "height, model, gallery_id, seconds (this image's share: a batch is made together, so each "
                     "image gets batch_seconds / batch_size), batch_seconds, batch_size, batch_index")

    gal = sub.add_parser("gallery", parents=[common], help="list, export and import gallery images")
    gsub = gal.add_subparsers(dest="gallery_command", required=True)
    lst = gsub.add_parser("list", parents=[common])
    lst.add_argument("--search", help=f"full-text search over the prompts: {SEARCH_SYNTAX}")
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
    srv = sub.add_parser("servers", parents=[common], help="the ComfyUI servers jobs can run on")
    srv.add_argument("--json", action="store_true")
    ssub = srv.add_subparsers(dest="servers_command")
    sadd = ssub.add_parser("add", parents=[common], help="add a server (http://host:port or https://host/path)")
    sadd.add_argument("url")
    sadd.add_argument("--in-flight", type=int, default=1, help="images it runs at once (default 1)")
    sadd.add_argument("--default", action="store_true", help="run jobs on the servers unless told otherwise")
    srem = ssub.add_parser("remove", parents=[common], help="forget a server")
    srem.add_argument("url")
    sdef = ssub.add_parser("default", parents=[common], help="where jobs run when they do not say")
    sdef.add_argument("kind", choices=("local", "comfyui"))
    info = sub.add_parser("info", parents=[common], help="show the recipe stored in an image")
    info.add_argument("image", type=Path)
    info.add_argument("--json", action="store_true")
    from studio import cli_more

    cli_more.add_parsers(sub, common, gen)
    return parser


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from studio import cli_more

    handlers = {"generate": cmd_generate, "gallery": cmd_gallery, "models": cmd_models, "info": cmd_info,
                "servers": cmd_servers, "upscale": cli_more.cmd_upscale, "grid": cli_more.cmd_grid}
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
        from studio.recipe.errors import describe

        print(f"studio: error: {describe(exc)}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------- generate

def _open_image(path: Path, what: str) -> Any:
    from studio.images import ImageFileError, open_image

    try:
        return open_image(path)
    except ImageFileError as exc:
        if not path.exists():
            raise CLIError(f"{what} {path} does not exist") from exc
        raise CLIError(f"{what} {path} is not a readable image: {exc.reason}") from exc


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
    """The request the options describe; with --from, the recipe's request with any option given overriding
    its field. Replaying batch item k as it was (no new seed or batch size) runs its whole batch and keeps
    item k (`args.keep_index`), because a batch may round differently from a single run."""
    given = vars(args)
    values: dict[str, Any] = {}
    args.source_recipe, args.keep_index = None, None
    overrides = {name for name in (*knobs(), "outpaint") if OPTION_OF.get(name, name) in given}
    if getattr(args, "source", None):
        recipe = args.source_recipe = _recipe_of(args.source, args.data_dir)
        try:
            replay = from_recipe(recipe)
        except (RequestError, TypeError, ValueError) as exc:
            raise CLIError(f"{args.source}: its recipe cannot be replayed ({exc})") from exc
        index = min(int(recipe.get("batch_index") or 0), replay.batch_size - 1)
        if replay.batch_size > 1 and not overrides & {"seed", "batch_size", "variation_seed"}:
            args.keep_index = index
        else:
            replay = replay.item(index)
        values.update({name: getattr(replay, name) for name in (*knobs(), "outpaint", "backend", "parent_id")})
        values["init_image"], values["mask"] = _inputs_of(recipe, args)
    for name in overrides:
        option = OPTION_OF.get(name, name)
        values[name] = _outpaint(given[option]) if option == "outpaint" else given[option]
    if not values.get("prompt") and "prompt" not in overrides and not args.source_recipe:
        raise CLIError("give --prompt, or --from IMAGE|GALLERY_ID to replay a saved picture")
    values.setdefault("seed", random.randint(0, SEED_MAX))
    cfg, steps = _suggestions(values.get("model", field_default("model")), args)
    values.setdefault("cfg", cfg)
    if steps is not None:
        values.setdefault("steps", steps)
    if args.init:
        values["init_image"] = _open_image(args.init, "the init image")
    if args.mask:
        values["mask"] = _open_image(args.mask, "the mask")
    return GenerationRequest(**values).validate()


def _inputs_of(recipe: dict[str, Any], args: argparse.Namespace) -> tuple[Any, Any]:
    """A replayed picture's init image and mask, from the gallery's kept inputs (by content hash) unless
    --init / --mask give them; a missing one is named."""
    from studio.paths import data_dir

    wanted = {"init": recipe.get("init_image_hash"), "mask": recipe.get("mask_hash")}
    if not any(wanted.values()):
        return None, None
    gallery = _open_gallery(data_dir(args.data_dir))
    found = {}
    for what, digest in wanted.items():
        given = getattr(args, what)
        found[what] = gallery.input_image(digest) if digest and given is None else None
        if digest and given is None and found[what] is None:
            source = "a mask" if what == "mask" else "an input image"
            raise CLIError(f"that picture was made by {recipe.get('mode')} from {source} "
                           f"the gallery no longer keeps (inputs/{digest}.png): give it again with --{what}")
    return found["init"], found["mask"]


def _recipe_of(source: str, data_dir_option: str | None) -> dict[str, Any]:
    """The recipe in a PNG, or of a gallery image by id."""
    from studio.paths import data_dir
    from studio.recipe.metadata import read_recipe

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


def choose_backend(args: argparse.Namespace, home: Path, request: GenerationRequest) -> Any:
    """--local, else --server URLs, else a replayed picture's kind of backend, else the default in servers.json.
    A server is only ever one the user typed (here or into the servers list), never one read from an image."""
    from studio.backends import BackendKind, ServerConfig, recipe_server
    from studio.backends import settings as server_settings

    if args.local:
        return _local_backend(args, home)
    if args.server:
        return _pool([ServerConfig(url, args.in_flight, server_settings.token(url)) for url in args.server])
    configured = server_settings.load(home)
    recipe = getattr(args, "source_recipe", None)
    if recipe is not None and request.backend == BackendKind.COMFYUI.value:
        if not configured.servers:
            raise CLIError(f"that picture was made on a ComfyUI server ({recipe_server(recipe) or 'unknown'}): give "
                           "--server URL to make it there again, or --local to make it here (a different picture: "
                           "the noise differs)")
        return _pool(configured.servers)
    if recipe is None and configured.default is BackendKind.COMFYUI and configured.servers:
        return _pool(configured.servers)
    return _local_backend(args, home)


def _pool(configs: list[Any]) -> Any:
    from studio.backends.pool import ServerPool

    return ServerPool(configs)


def _local_backend(args: argparse.Namespace, home: Path) -> Any:
    from studio.backends.local import LocalBackend
    from studio.engine import Engine

    return LocalBackend(Engine(device=args.device, data_dir=home, memory=args.memory, allow_pickle=args.allow_pickle))


def cmd_generate(args: argparse.Namespace) -> int:
    from studio.backends import BackendKind
    from studio.backends.pool import JobIncomplete
    from studio.gallery.files import atomic_write
    from studio.paths import data_dir
    from studio.recipe.metadata import encode_png

    if args.no_gallery and args.out is None:
        raise CLIError("nothing would be kept: give --out, or drop --no-gallery")
    request = request_from_args(args)
    home = data_dir(args.data_dir)
    backend = choose_backend(args, home, request)
    if backend.kind is BackendKind.LOCAL:
        backend.engine.load(request.model)
    if not args.json:
        print(backend.describe(), file=sys.stderr)
    incomplete = None
    try:
        results = backend.generate(request, on_notice=lambda text: print(f"studio: {text}", file=sys.stderr))
    except JobIncomplete as exc:  # keep what was made before every server dropped out
        results, incomplete = exc.results, exc
    if args.keep_index is not None:  # --from batch item k: its batch ran again, item k is the picture
        results = [r for r in results if r.recipe.get("batch_index") == args.keep_index]
    batch_seconds = sum(r.seconds for r in results)  # the engine shares the run's time out evenly
    gallery = None if args.no_gallery else _open_gallery(home)
    for index, (result, out) in enumerate(zip(results, _out_paths(args.out, len(results)))):
        gallery_id, path = None, None
        if gallery is not None:
            gallery_id = gallery.save(result.image, result.recipe, parent_id=request.parent_id,
                                      inputs=(request.init_image, request.mask))
            path = gallery.get(gallery_id).file
        if out is not None:
            if out.name.startswith("studio-") and args.out.suffix == "":
                out = out.with_name(f"studio-{result.seed}.png")
            atomic_write(out, encode_png(result.image, result.recipe))  # a reader never sees half a PNG
            path = out
        record = {"path": str(path), "seed": result.seed, "width": result.image.width,
                  "height": result.image.height, "model": result.recipe["model"]["name"],
                  "gallery_id": gallery_id, "seconds": round(result.seconds, 3),
                  "backend": result.recipe["backend"]["kind"], "batch_seconds": round(batch_seconds, 3),
                  "batch_size": result.recipe.get("batch_size", len(results)),
                  "batch_index": result.recipe.get("batch_index", index)}
        batch = f" ({batch_seconds:.2f} s for the batch of {len(results)})" if len(results) > 1 else ""
        print(json.dumps(record) if args.json else f"{path}  seed {result.seed}  {result.seconds:.2f} s{batch}")
    if incomplete is not None:
        raise incomplete
    return 0


def cmd_servers(args: argparse.Namespace) -> int:
    from studio.backends import settings as server_settings
    from studio.backends.base import BackendKind
    from studio.backends.status import check
    from studio.paths import data_dir

    home = data_dir(args.data_dir)
    if args.servers_command == "add":
        server_settings.add(home, args.url, args.in_flight, args.default)
    elif args.servers_command == "remove":
        server_settings.remove(home, args.url)
    elif args.servers_command == "default":
        configured = server_settings.load(home)
        if args.kind == "comfyui" and not configured.servers:
            raise CLIError("add a server first: studio servers add URL")
        configured.default = BackendKind(args.kind)
        server_settings.save(home, configured)
    configured = server_settings.load(home)
    if args.servers_command is None:
        for server in configured.servers:
            status = check(server)
            record = {"url": server.url, "max_in_flight": server.max_in_flight, "up": status.up,
                      "status": status.text, "default": configured.default is BackendKind.COMFYUI}
            print(json.dumps(record) if args.json else
                  f"{'up  ' if status.up else 'DOWN'}  {server.url}  ({server.max_in_flight} at once)  {status.text}")
    if not args.json:
        print(f"default: {'the servers' if configured.default is BackendKind.COMFYUI else 'this computer'}"
              + ("" if configured.servers else " (no servers: studio servers add URL)"))
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
    for path, image_id in result.already:
        print(f"studio: {path} is already in the gallery (id {image_id}): not imported again", file=sys.stderr)
    print(result.summary())
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
    from studio.recipe.metadata import format_parameters, read_recipe

    _open_image(args.image, "the image")  # a clear message for a missing or corrupt file
    recipe = read_recipe(args.image)
    if recipe is None:
        raise CLIError(f"{args.image} carries no generation metadata")
    print(json.dumps(recipe, indent=None if args.json else 2) if args.json else format_parameters(recipe))
    return 0
