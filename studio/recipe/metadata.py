"""Recipes in image files: write Studio's own, read Studio, AUTOMATIC1111, ComfyUI and InvokeAI.

A *recipe* (schema 1) is the dict the engine makes for each image; it replays the image. In a PNG
it travels twice: as the AUTOMATIC1111 `parameters` text, which every other tool reads, and as a
`studio` iTXt chunk holding the full recipe as JSON. JPEG and WebP exports carry the `parameters`
text in the EXIF UserComment tag, as AUTOMATIC1111 does.

Everything read here is untrusted: chunk sizes are checked before they are read, JSON is bounded,
and every value is type-checked, so a hostile file gives a `MetadataError` (or None when it holds
no metadata at all), never another exception and never a hang. Pure Python + Pillow: no torch.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, PngImagePlugin

from studio.images import unreadable_reason
from studio.recipe import samplers
from studio.recipe.errors import StudioError
from studio.recipe.request import section

MAX_CHUNK = 1 << 20          # no honest recipe comes close to 1 MB of text
MAX_CHUNKS_SCANNED = 1_000_000  # a bound on the chunk walk (each step advances >= 12 bytes anyway)
SEED_MAX = 2**32 - 1
USER_COMMENT = 0x9286        # EXIF UserComment, in the Exif sub-IFD
EXIF_IFD = 0x8769
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UNICODE_PREFIX = b"UNICODE\0"
_ASCII_PREFIX = b"ASCII\0\0\0"
_TEXT_KEYS = ("studio", "parameters", "prompt", "workflow", "invokeai_metadata")

class MetadataError(StudioError, ValueError):
    """An image's metadata is present but unusable; the message says which part and why."""


# ----------------------------------------------------------------------------------- validation

def _is_int(v: Any) -> bool:
    return type(v) is int  # bool is an int subclass and never a valid count


def _is_num(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _is_model(v: Any) -> bool:
    return isinstance(v, dict) and all(v.get(k) is None or isinstance(v.get(k), str) for k in ("name", "hash", "path"))


def _is_box(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_is_int(x) and x >= 0 for x in v)


_FIELDS: dict[str, Callable[[Any], bool]] = {
    "schema": _is_int, "app": _opt(lambda v: isinstance(v, str)), "mode": _opt(lambda v: isinstance(v, str)),
    "prompt": lambda v: isinstance(v, str), "negative_prompt": lambda v: isinstance(v, str),
    "steps": _opt(lambda v: _is_int(v) and 0 < v <= 10_000), "cfg": _opt(_is_num),
    "seed": _opt(lambda v: _is_int(v) and 0 <= v <= SEED_MAX),
    "width": _opt(lambda v: _is_int(v) and 0 < v <= 65_535), "height": _opt(lambda v: _is_int(v) and 0 < v <= 65_535),
    "scheduler": _opt(lambda v: isinstance(v, str)), "scheduler_class": _opt(lambda v: isinstance(v, str)),
    "scheduler_config": _opt(lambda v: isinstance(v, dict)), "strength": _opt(_is_num),
    "batch_size": _opt(_is_int), "batch_index": _opt(_is_int),
    "variation_seed": _opt(lambda v: _is_int(v) and 0 <= v <= SEED_MAX), "variation_strength": _opt(_is_num),
    "model": _opt(_is_model), "init_image_hash": _opt(lambda v: isinstance(v, str)),
    "mask_hash": _opt(lambda v: isinstance(v, str)), "mask_grow": _opt(_is_int), "mask_feather": _opt(_is_int),
    "inpaint_area": _opt(lambda v: isinstance(v, str)), "padding": _opt(_is_int), "outpaint": _opt(_is_box),
    "device": _opt(lambda v: isinstance(v, str)), "dtype": _opt(lambda v: isinstance(v, str)),
    "seconds": _opt(_is_num), "created_at": _opt(lambda v: isinstance(v, str)),
    "parent_id": _opt(lambda v: _is_int(v) and v > 0), "extra": _opt(lambda v: isinstance(v, dict)),
    "vae": _opt(lambda v: isinstance(v, dict) and isinstance(v.get("name"), str)),
    "backend": _opt(lambda v: isinstance(v, dict) and isinstance(v.get("kind"), str)),
    "hires_scale": _opt(lambda v: _is_num(v) and 0 < v <= 64),
    "hires_steps": _opt(lambda v: _is_int(v) and 0 <= v <= 10_000),
    "hires_denoise": _opt(_is_num), "hires_upscaler": _opt(lambda v: isinstance(v, str)),
    "redraw_scale": _opt(lambda v: _is_num(v) and 0 < v <= 64), "redraw_denoise": _opt(_is_num),
    "redraw_upscaler": _opt(lambda v: isinstance(v, str)), "redraw_tile": _opt(lambda v: _is_int(v) and v >= 0),
    "redraw_overlap": _opt(lambda v: _is_int(v) and v >= 0),
    "upscale": _opt(lambda v: isinstance(v, dict) and isinstance(v.get("upscaler"), str) and _is_num(v.get("scale"))),
    "grid": _opt(lambda v: isinstance(v, dict)),
    "loras": _opt(lambda v: isinstance(v, list) and all(isinstance(x, dict) and isinstance(x.get("name"), str)
                                                       for x in v)),
}


def validate_recipe(recipe: Any, origin: str = "recipe") -> dict[str, Any]:
    """Check every known field's type and range; unknown keys pass (newer versions add fields)."""
    if not isinstance(recipe, dict):
        raise MetadataError(f"{origin}: expected a JSON object, got {type(recipe).__name__}")
    for key, check in _FIELDS.items():
        if key in recipe and not check(recipe[key]):
            raise MetadataError(f"{origin}: bad value for {key!r}: {_short(recipe[key])}")
    return recipe


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _loads(text: str, origin: str) -> Any:
    def no_constant(name: str) -> Any:
        raise MetadataError(f"{origin}: {name} is not a number")

    if len(text) > MAX_CHUNK:
        raise MetadataError(f"{origin}: {len(text)} characters is larger than the 1 MB limit")
    try:
        return json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; deep nesting recurses
        if isinstance(exc, MetadataError):
            raise
        raise MetadataError(f"{origin}: broken JSON ({str(exc)[:80]})") from None


# ----------------------------------------------------------------------------------- A1111 text

def _number_text(value: float) -> str:
    # A1111 prints CFG 7 as "7" and 7.5 as "7.5" (the slider's own value): whole floats lose ".0".
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _quote(value: Any) -> str:
    # The rule of A1111's generation_parameters_copypaste.quote: JSON-quote values that would
    # otherwise break the "key: value, key: value" line.
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",\n:") else text


def _split_params(line: str) -> list[tuple[str, str]]:
    """Split `key: value, key: "quoted, value", ...` in linear time (A1111's regex can backtrack)."""
    pairs: list[tuple[str, str]] = []
    pos, n = 0, len(line)
    while pos < n:
        colon, comma = line.find(":", pos), line.find(",", pos)
        if colon < 0:
            break
        if 0 <= comma < colon:  # a fragment with no key: skip it
            pos = comma + 1
            continue
        key = line[pos:colon].strip()
        pos = colon + 1
        while pos < n and line[pos] == " ":
            pos += 1
        if pos < n and line[pos] == '"':
            value, pos = _read_quoted(line, pos)
            comma = line.find(",", pos)
            pos = n if comma < 0 else comma + 1
        else:
            end = line.find(",", pos)
            end = n if end < 0 else end
            value, pos = line[pos:end].strip(), end + 1
        if key and (key[0].isalnum() or key[0] == "_"):
            pairs.append((key, value))
    return pairs


def _read_quoted(line: str, start: int) -> tuple[str, int]:
    """Read a JSON string starting at `start`; return its value and the index after it."""
    pos = start + 1
    while True:
        end = line.find('"', pos)
        if end < 0:  # unterminated: take the rest as it is
            return line[start + 1:], len(line)
        backslashes = 0
        while line[end - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            raw = line[start:end + 1]
            try:
                return str(json.loads(raw)), end + 1
            except ValueError:
                return raw[1:-1], end + 1
        pos = end + 1


def _to_int(key: str, value: str, low: int = 0, high: int = 2**63 - 1) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise MetadataError(f"parameters: {key} is not a whole number: {_short(value)}") from None
    if not low <= number <= high:
        raise MetadataError(f"parameters: {key} {number} is out of range")
    return number


def _to_float(key: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise MetadataError(f"parameters: {key} is not a number: {_short(value)}") from None
    if not math.isfinite(number):
        raise MetadataError(f"parameters: {key} is not a finite number")
    return number


def _split_prompt_lines(text: str) -> tuple[list[str], str]:
    """Prompt/negative lines and the parameters line (the last one starting with `Steps:`)."""
    lines = text.strip().split("\n")
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].lstrip().startswith("Steps:"):
            # Lines after it (extensions add "Template: ..." there) are not part of the prompt.
            return lines[:index], lines[index]
    if len(_split_params(lines[-1])) >= 3:
        return lines[:-1], lines[-1]
    return lines, ""


def parse_parameters(text: str) -> dict[str, Any]:
    """Parse AUTOMATIC1111 `parameters` text into a recipe-shaped partial dict.

    Known keys map to recipe fields; any other key lands in `extra` as text. A malformed value of
    a known key raises `MetadataError`.
    """
    if not isinstance(text, str):
        raise MetadataError("parameters: not text")
    if len(text) > MAX_CHUNK:
        raise MetadataError("parameters: larger than the 1 MB limit")
    prompt_lines, params_line = _split_prompt_lines(text.replace("\r\n", "\n"))
    prompt: list[str] = []
    negative: list[str] = []
    for line in prompt_lines:
        if not negative and line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:"):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    out: dict[str, Any] = {"prompt": "\n".join(prompt).strip(), "negative_prompt": "\n".join(negative).strip()}
    _apply_params(out, dict(_split_params(params_line)))
    return out


@dataclass(frozen=True)
class A1111Keys:
    """One group of keys of the A1111 `parameters` line: how a recipe writes them and how they read back
    (`read` pops its keys from the parsed pairs). `KEYS` lists the groups in the order A1111 writes them."""

    names: tuple[str, ...]
    write: Callable[[Mapping[str, Any]], list[tuple[str, Any]]]
    read: Callable[[dict[str, str], dict[str, Any]], None]


def _scalar(name: str, field: str, parse: Callable[[str, str], Any], show: Callable[[Any], Any] = str) -> A1111Keys:
    def write(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return [(name, show(r[field]))] if r.get(field) is not None else []

    def read(params: dict[str, str], out: dict[str, Any]) -> None:
        if name in params:
            out[field] = parse(name, params.pop(name))

    return A1111Keys((name,), write, read)


def _ints(low: int, high: int) -> Callable[[str, str], int]:
    return lambda key, value: _to_int(key, value, low, high)


def _write_sampler(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
    sampler = samplers.BY_NAME.get(r.get("scheduler") or "")
    if sampler is None:
        return []
    return [("Sampler",
             sampler.a1111)] + ([("Schedule type", sampler.a1111_schedule)] if sampler.a1111_schedule else [])


def _read_sampler(params: dict[str, str], out: dict[str, Any]) -> None:
    if "Sampler" in params:
        scheduler = samplers.from_a1111(params["Sampler"], params.get("Schedule type", ""))
        if scheduler:  # another tool's sampler Studio does not have stays in `extra`, as it was written
            out["scheduler"] = scheduler
            params.pop("Sampler"), params.pop("Schedule type", None)


def _write_size(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [("Size", f"{r['width']}x{r['height']}")] if r.get("width") and r.get("height") else []


def _read_size(params: dict[str, str], out: dict[str, Any]) -> None:
    if "Size" in params:
        width, _, height = params.pop("Size").partition("x")
        out["width"], out["height"] = _to_int("Size", width, 1, 65_535), _to_int("Size", height, 1, 65_535)


def _write_model(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
    model = section(r, "model")
    return [(key, model[field]) for key, field in (("Model hash", "hash"), ("Model", "name")) if model.get(field)]


def _read_model(params: dict[str, str], out: dict[str, Any]) -> None:
    if "Model" in params or "Model hash" in params:
        out["model"] = {"name": params.pop("Model", None), "hash": params.pop("Model hash", None), "path": None}


def _write_strength(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
    if r.get("hires_scale"):  # hires fix writes its second pass's denoise under this key
        return [("Denoising strength", _number_text(r["hires_denoise"]))] if r.get("hires_denoise") is not None else []
    if r.get("redraw_scale"):  # a tiled redraw is an image-to-image per tile, at this denoise
        denoise = r.get("redraw_denoise")
        return [("Denoising strength", _number_text(denoise))] if denoise is not None else []
    if r.get("strength") is not None and r.get("mode", "img2img") != "txt2img":
        return [("Denoising strength", _number_text(r["strength"]))]
    return []


def _read_strength(params: dict[str, str], out: dict[str, Any]) -> None:
    if "Denoising strength" in params:
        strength = _to_float("Denoising strength", params.pop("Denoising strength"))
        # Hires fix also writes a denoising strength: its second pass's; that image is still a txt2img one.
        if "Hires upscale" in params:
            out["hires_denoise"] = strength
        elif not any(k.startswith("Hires") for k in params):
            out["strength"], out["mode"] = strength, "img2img"


def _write_hires(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Hires fix as A1111 writes it: its scale, steps (when not 0: "as many as the first pass"), upscaler."""
    if not r.get("hires_scale"):
        return []
    return ([("Hires upscale", _number_text(r["hires_scale"]))]
            + ([("Hires steps", r["hires_steps"])] if r.get("hires_steps") else [])
            + ([("Hires upscaler", r["hires_upscaler"])] if r.get("hires_upscaler") else []))


def _read_hires(params: dict[str, str], out: dict[str, Any]) -> None:
    if "Hires upscale" in params:
        out["hires_scale"] = _to_float("Hires upscale", params.pop("Hires upscale"))
        out["hires_steps"] = _to_int("Hires steps", params.pop("Hires steps", "0"), 0, 10_000)
        out["hires_upscaler"] = params.pop("Hires upscaler", "Latent")  # A1111's default when none is written


def _write_postprocess(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """An upscaled copy, as A1111's Extras tab writes one (read back into `extra`, as A1111's own)."""
    done = section(r, "upscale")
    if not done:
        return []
    return [("Postprocess upscale by", _number_text(done["scale"])), ("Postprocess upscaler", done["upscaler"])]


def _write_variation(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
    if r.get("variation_seed") is None or not r.get("variation_strength"):
        return []
    return [("Variation seed", r["variation_seed"]), ("Variation seed strength", _number_text(r["variation_strength"]))]


def _read_variation(params: dict[str, str], out: dict[str, Any]) -> None:
    if "Variation seed" in params:
        out["variation_seed"] = _to_int("Variation seed", params.pop("Variation seed"), 0, 2**64 - 1)
        out["variation_strength"] = _to_float("Variation seed strength", params.pop("Variation seed strength", "0"))


def _write_vae(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
    vae = section(r, "vae")
    return [("VAE hash", vae.get("hash")), ("VAE", vae.get("name"))] if vae else []


def _read_vae(params: dict[str, str], out: dict[str, Any]) -> None:
    if "VAE" in params:
        out["vae"] = {"name": params.pop("VAE"), "hash": params.pop("VAE hash", None)}


def _write_loras(r: Mapping[str, Any]) -> list[tuple[str, Any]]:
    loras = [lora for lora in r.get("loras") or [] if lora.get("name") and lora.get("hash")]
    return [("Lora hashes", ", ".join(f"{lora['name']}: {lora['hash']}" for lora in loras))] if loras else []


def _read_loras(params: dict[str, str], out: dict[str, Any]) -> None:
    if "Lora hashes" in params:
        pairs = (item.rpartition(":") for item in params.pop("Lora hashes").split(","))
        out["loras"] = [{"name": name.strip(), "hash": digest.strip(), "weight": None}
                        for name, _, digest in pairs if name.strip()]


def _nothing(params: dict[str, str], out: dict[str, Any]) -> None:
    """Keys Studio writes but keeps, when read back, as A1111 text in `extra` (Postprocess …)."""


KEYS: tuple[A1111Keys, ...] = (
    _scalar("Steps", "steps", _ints(1, 10_000)),
    A1111Keys(("Sampler", "Schedule type"), _write_sampler, _read_sampler),
    _scalar("CFG scale", "cfg", _to_float, _number_text),
    _scalar("Seed", "seed", _ints(0, 2**64 - 1)),
    A1111Keys(("Size",), _write_size, _read_size),
    A1111Keys(("Model hash", "Model"), _write_model, _read_model),
    A1111Keys(("Denoising strength",), _write_strength, _read_strength),
    A1111Keys(("Hires upscale", "Hires steps", "Hires upscaler"), _write_hires, _read_hires),
    A1111Keys(("Postprocess upscale by", "Postprocess upscaler"), _write_postprocess, _nothing),
    A1111Keys(("Variation seed", "Variation seed strength"), _write_variation, _read_variation),
    A1111Keys(("VAE hash", "VAE"), _write_vae, _read_vae),
    A1111Keys(("Lora hashes",), _write_loras, _read_loras),
)


def format_parameters(recipe: Mapping[str, Any]) -> str:
    """The AUTOMATIC1111 `parameters` text for a recipe (keys only when they apply)."""
    params = ", ".join(f"{key}: {_quote(value)}" for keys in KEYS for key, value in keys.write(recipe))
    negative = recipe.get("negative_prompt") or ""
    text = str(recipe.get("prompt") or "")
    if negative:
        text += f"\nNegative prompt: {negative}"
    # A1111 strips the whole text, so an empty prompt starts straight with the parameters line.
    return f"{text}\n{params}".strip()


def _apply_params(out: dict[str, Any], params: dict[str, str]) -> None:
    for keys in KEYS:
        keys.read(params, out)
    out.setdefault("mode", "txt2img")
    if params:
        out["extra"] = params
    _fit_seeds(out)


def _fit_seeds(out: dict[str, Any]) -> None:
    # Other tools allow 64-bit seeds; ours are 32-bit, so a bigger one is kept as text only.
    for key in ("seed", "variation_seed"):
        if isinstance(out.get(key), int) and out[key] > SEED_MAX:
            out.setdefault("extra", {})[f"original_{key}"] = str(out.pop(key))


# ----------------------------------------------------------------------------------- writing

def png_info(recipe: Mapping[str, Any]) -> PngImagePlugin.PngInfo:
    """PNG text chunks: A1111 `parameters` (tEXt, or iTXt when not Latin-1) and `studio` (iTXt JSON)."""
    clean = {k: v for k, v in recipe.items() if k != "source"}
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", format_parameters(clean))
    info.add_itxt("studio", json.dumps(clean, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
    return info


def encode_png(image: Image.Image, recipe: Mapping[str, Any], compress_level: int = 4) -> bytes:
    """The image as PNG bytes with the recipe's chunks (level 4: near-best size, fast to write)."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=png_info(recipe), compress_level=compress_level)
    return buffer.getvalue()


def exif_with_parameters(text: str) -> Image.Exif:
    """EXIF holding `text` as UserComment, encoded the way A1111 (via piexif) writes it."""
    exif = Image.Exif()
    try:
        payload = _ASCII_PREFIX + text.encode("ascii")
    except UnicodeEncodeError:
        payload = _UNICODE_PREFIX + text.encode("utf-16-be")
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = payload
    return exif


def decode_user_comment(data: bytes | str) -> str:
    """Text of an EXIF UserComment: 8-byte charset prefix, then ASCII or UTF-16 of either order."""
    if isinstance(data, str):
        return data
    prefix, body = data[:8], data[8:]
    if prefix == _UNICODE_PREFIX:
        # piexif writes big-endian; some writers use little-endian. Plain text in UTF-16 has its
        # zero bytes first (BE) or second (LE), which tells them apart.
        even_zeros = body[0::2].count(0)
        odd_zeros = body[1::2].count(0)
        return body.decode("utf-16-le" if odd_zeros > even_zeros else "utf-16-be", errors="replace")
    if prefix in (_ASCII_PREFIX, b"\0" * 8):
        return body.decode("utf-8", errors="replace").rstrip("\0")
    return data.decode("utf-8", errors="replace").rstrip("\0")


# ----------------------------------------------------------------------------------- reading

def _inflate(data: bytes, origin: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CHUNK + 1)
    except zlib.error:
        raise MetadataError(f"{origin}: corrupt compressed text") from None
    if len(out) > MAX_CHUNK or inflater.unconsumed_tail:
        raise MetadataError(f"{origin}: decompressed text is larger than the 1 MB limit")
    return out


def _decode_text_chunk(kind: bytes, data: bytes) -> tuple[str, str] | None:
    key, sep, rest = data.partition(b"\0")
    if not sep:
        return None
    name = key.decode("latin-1")
    if kind == b"tEXt":
        return name, rest.decode("latin-1")
    if kind == b"zTXt":
        return name, _inflate(rest[1:], name).decode("latin-1")
    if len(rest) < 2:
        return None
    compressed, body = rest[0], rest[2:]
    parts = body.split(b"\0", 2)
    if len(parts) != 3:
        return None
    text = _inflate(parts[2], name) if compressed else parts[2]
    return name, text.decode("utf-8", errors="replace")


def _png_text(stream: BinaryIO) -> dict[str, str]:
    """Text chunks of a PNG, read chunk by chunk so that huge ones are refused before reading."""
    if stream.read(8) != _PNG_SIGNATURE:
        raise MetadataError("not a PNG file")
    texts: dict[str, str] = {}
    for _ in range(MAX_CHUNKS_SCANNED):
        header = stream.read(8)
        if len(header) < 8:
            break  # truncated file: keep what was read
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            break
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            if length > MAX_CHUNK:
                raise MetadataError(f"a {kind.decode()} chunk of {length} bytes is larger than the 1 MB limit")
            decoded = _decode_text_chunk(kind, stream.read(length))
            if decoded and decoded[0] in _TEXT_KEYS:
                texts.setdefault(decoded[0], decoded[1])
            stream.seek(4, os.SEEK_CUR)
        else:
            stream.seek(length + 4, os.SEEK_CUR)
    return texts


def _exif_text(image: Image.Image) -> dict[str, str]:
    try:
        comment = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises many types on broken data
        raise MetadataError("unreadable EXIF data") from None
    if not isinstance(comment, (bytes, str)) or not comment:
        return {}
    if len(comment) > MAX_CHUNK:
        raise MetadataError("EXIF UserComment is larger than the 1 MB limit")
    return {"parameters": decode_user_comment(comment)}


def _image_text(image: Image.Image) -> dict[str, str]:
    info: dict[str, Any] = {str(k): v for k, v in image.info.items()}
    if image.format == "PNG" and hasattr(image, "text"):
        try:  # chunks after the image data only show up in `text`, which decodes the image
            info.update({k: v for k, v in image.text.items() if k not in info})
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types on broken data
            raise MetadataError(f"unreadable PNG: {unreadable_reason(exc)}") from None
    texts: dict[str, str] = {}
    for key in _TEXT_KEYS:
        value = info.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            if len(value) > MAX_CHUNK:
                raise MetadataError(f"{key}: larger than the 1 MB limit")
            texts[key] = str(value)
    if "parameters" not in texts and image.format in ("JPEG", "WEBP", "MPO", "TIFF"):
        texts.update(_exif_text(image))
    return texts


def read_text_chunks(source: Image.Image | str | os.PathLike[str] | bytes) -> dict[str, str]:
    """The metadata texts of an image (PNG chunks, or EXIF UserComment as `parameters`)."""
    if isinstance(source, Image.Image):
        return _image_text(source)
    try:
        stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as exc:
        raise MetadataError(f"cannot read {source!s}: {exc.strerror or exc}") from None
    with stream:
        if stream.read(8) == _PNG_SIGNATURE:
            stream.seek(0)
            return _png_text(stream)
        stream.seek(0)
        try:
            with Image.open(stream) as image:
                return _image_text(image)
        except MetadataError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow raises a zoo of types for broken files
            raise MetadataError(f"not a readable image: {unreadable_reason(exc)}") from None


def read_recipe(source: Image.Image | str | os.PathLike[str] | bytes) -> dict[str, Any] | None:
    """The recipe stored in an image, with a `source` key, or None when it holds none.

    Readers are tried in order Studio, A1111, ComfyUI, InvokeAI; a broken one falls through to the
    next, and if none succeeds the first error is raised as `MetadataError`.
    """
    texts = read_text_chunks(source)
    readers: list[tuple[str, str, Callable[[dict[str, str]], dict[str, Any]]]] = [
        ("studio", "studio", _from_studio), ("parameters", "a1111", lambda t: parse_parameters(t["parameters"])),
        ("prompt", "comfyui", _from_comfyui), ("invokeai_metadata", "invokeai", _from_invokeai),
    ]
    first_error: MetadataError | None = None
    for key, name, reader in readers:
        if key not in texts:
            continue
        try:
            recipe = validate_recipe(reader(texts), name)
        except MetadataError as exc:
            first_error = first_error or exc
            continue
        recipe["source"] = name
        return recipe
    if first_error:
        raise first_error
    return None


def _from_studio(texts: dict[str, str]) -> dict[str, Any]:
    recipe = validate_recipe(_loads(texts["studio"], "studio"), "studio")
    if recipe.get("schema", 0) < 1:
        raise MetadataError("studio: missing or invalid schema version")
    return dict(recipe)


def _comfy_input(graph: dict[str, Any], value: Any, want: tuple[str, ...], depth: int = 0) -> Any:
    """A literal input value; a link `[node_id, slot]` is followed to a node holding one of `want`."""
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))):
        return value
    if depth > 8:
        return None
    node = graph.get(str(value[0]))
    inputs = node.get("inputs") if isinstance(node, dict) else None
    if not isinstance(inputs, dict):
        return None
    for key in want:
        if key in inputs:
            return _comfy_input(graph, inputs[key], want, depth + 1)
    return None


def _comfy_text(graph: dict[str, Any], link: Any) -> str:
    """Text of the CLIPTextEncode nodes feeding a conditioning input (through combine/apply nodes)."""
    texts: list[str] = []
    queue, seen = [link], set[str]()
    while queue and len(seen) < 200:
        current = queue.pop(0)
        if not (isinstance(current, list) and len(current) == 2) or str(current[0]) in seen:
            continue
        seen.add(str(current[0]))
        node = graph.get(str(current[0]))
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        inputs = node["inputs"]
        if str(node.get("class_type", "")).startswith("CLIPTextEncode"):
            for key in ("text", "text_g", "text_l"):
                text = _comfy_input(graph, inputs.get(key), ("text", "value", "string"))
                if isinstance(text, str) and text and text not in texts:
                    texts.append(text)
            continue
        queue.extend(v for k, v in inputs.items() if "conditioning" in k.lower() or k in ("positive", "negative"))
    return "\n".join(texts)


def _from_comfyui(texts: dict[str, str]) -> dict[str, Any]:
    graph = _loads(texts["prompt"], "comfyui")
    if not isinstance(graph, dict):
        raise MetadataError("comfyui: the prompt graph is not an object")
    nodes = [n for n in graph.values()
             if isinstance(n, dict) and n.get("class_type") in ("KSampler", "KSamplerAdvanced")
                and isinstance(n.get("inputs"), dict)]
    if not nodes:
        raise MetadataError("comfyui: no KSampler node in the prompt graph")
    inputs = nodes[0]["inputs"]

    def get(key: str, want: tuple[str, ...] | None = None) -> Any:
        return _comfy_input(graph, inputs.get(key), want or (key, "value"))

    sampler, schedule = get("sampler_name"), get("scheduler")
    out: dict[str, Any] = {
        "prompt": _comfy_text(graph, inputs.get("positive")),
        "negative_prompt": _comfy_text(graph, inputs.get("negative")),
        "steps": get("steps"), "cfg": get("cfg"), "seed": get("seed", ("seed", "noise_seed", "value")),
        "mode": "txt2img",
    }
    if out["seed"] is None:
        out["seed"] = get("noise_seed", ("noise_seed", "seed", "value"))
    out["scheduler"] = (samplers.from_comfy(sampler, schedule if isinstance(schedule, str) else "normal")
                        if isinstance(sampler, str) else None)
    out["extra"] = {"sampler_name": str(sampler), "scheduler": str(schedule)}
    _comfy_size_and_model(graph, inputs, out)
    denoise = get("denoise")
    if _is_num(denoise) and denoise < 1:
        out["strength"], out["mode"] = float(denoise), "img2img"
    _fit_seeds(out)
    return {k: v for k, v in out.items() if v is not None}


def _comfy_size_and_model(graph: dict[str, Any], inputs: dict[str, Any], out: dict[str, Any]) -> None:
    latent = inputs.get("latent_image")
    width = _comfy_input(graph, latent, ("width",))
    height = _comfy_input(graph, latent, ("height",))
    if _is_int(width) and _is_int(height):
        out["width"], out["height"] = width, height
    name = _comfy_input(graph, inputs.get("model"), ("ckpt_name", "unet_name", "model"))
    if isinstance(name, str):
        out["model"] = {"name": Path(name.replace("\\", "/")).stem, "hash": None, "path": name}


def _from_invokeai(texts: dict[str, str]) -> dict[str, Any]:
    meta = _loads(texts["invokeai_metadata"], "invokeai")
    if not isinstance(meta, dict):
        raise MetadataError("invokeai: metadata is not an object")
    model = meta.get("model")
    name = model.get("name") or model.get("model_name") if isinstance(model, dict) else model
    out: dict[str, Any] = {
        "prompt": meta.get("positive_prompt", ""), "negative_prompt": meta.get("negative_prompt", ""),
        "seed": meta.get("seed"), "steps": meta.get("steps"), "cfg": meta.get("cfg_scale"),
        "width": meta.get("width"), "height": meta.get("height"),
        "scheduler": samplers.from_invoke(meta["scheduler"]) if isinstance(meta.get("scheduler"), str) else None,
        "model": {"name": name, "hash": None, "path": None} if isinstance(name, str) else None,
        "mode": "txt2img",
    }
    strength = meta.get("strength")
    if _is_num(strength) and meta.get("generation_mode", "txt2img") != "txt2img":
        out["strength"], out["mode"] = float(strength), "img2img"  # type: ignore[arg-type]  # _is_num checked it
    if isinstance(meta.get("scheduler"), str) and out["scheduler"] is None:
        out["extra"] = {"scheduler": meta["scheduler"]}
    _fit_seeds(out)
    return {k: v for k, v in out.items() if v is not None}
