"""Fuzzing the metadata readers with hypothesis: whatever an image file carries, reading it raises
nothing but a StudioError (MetadataError) or gives a recipe, and every valid recipe written comes
back equal. The examples are derandomized (the same ones each run) so a failure always reproduces;
STUDIO_FUZZ_EXAMPLES=5000 searches further (150 per test keeps the suite fast)."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from studio.recipe import metadata
from studio.recipe.errors import StudioError
from studio.recipe.request import SCHEMA

FUZZ = settings(max_examples=int(os.environ.get("STUDIO_FUZZ_EXAMPLES", "150")), deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_PARAM_KEYS = ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model",
               "Denoising strength", "Variation seed", "Variation seed strength", "VAE", "VAE hash",
               "Lora hashes", "Hires upscale", "Clip skip"]
_text = st.text(st.characters(codec="utf-8"), max_size=60)
_tricky = st.lists(st.sampled_from(list(':,"\\\n\r ') + ["Steps:", "Negative prompt:", "x", "7", "-", "1e999",
                                                           "nan", "512x512", "Euler a", "\u2028", "\x00"]),
                   max_size=30).map("".join)


def _reads_or_refuses(read, *args):
    """The contract: a result or a StudioError, never anything else (the test fails on any other)."""
    try:
        return read(*args)
    except StudioError:
        return None


# ----------------------------------------------------------------------------------- A1111 text

@FUZZ
@given(st.one_of(_text, _tricky, st.lists(st.tuples(st.sampled_from(_PARAM_KEYS), st.one_of(_text, _tricky)))
                 .map(lambda pairs: "a prompt\nNegative prompt: bad\n" + ", ".join(f"{k}: {v}" for k, v in pairs))))
def test_a1111_parser_raises_only_studio_errors(text):
    parsed = _reads_or_refuses(metadata.parse_parameters, text)
    if parsed is not None:
        # What it returns is a recipe Studio accepts: the same checks as a file's own recipe.
        metadata.validate_recipe(parsed)
        json.dumps(parsed, allow_nan=False)


def test_metadata_error_is_a_studio_error():
    assert issubclass(metadata.MetadataError, StudioError)


# ----------------------------------------------------------------------------------- recipe JSON

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _text,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                     max_leaves=20)
_recipe_keys = st.sampled_from(["schema", "prompt", "negative_prompt", "steps", "cfg", "seed", "width", "height",
                                "scheduler", "model", "outpaint", "loras", "vae", "parent_id", "created_at"])


@FUZZ
@given(st.one_of(
    st.dictionaries(_recipe_keys, _json, max_size=8).map(lambda d: json.dumps(d, allow_nan=True)),
    _json.map(lambda v: json.dumps(v, allow_nan=True)),
    st.text(max_size=200),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),  # nesting that recursion cannot follow
))
def test_studio_recipe_reader_raises_only_studio_errors(text):
    png = _png_with({"studio": text})
    recipe = _reads_or_refuses(metadata.read_recipe, png)
    if recipe is not None:
        assert recipe["source"] == "studio" and recipe["schema"] >= 1


# ----------------------------------------------------------------------------------- PNG chunks

def _png_with(texts: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


_chunk_kinds = st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IDAT", b"IEND", b"xYzW"])
_keys = st.sampled_from([b"studio", b"parameters", b"prompt", b"workflow", b"invokeai_metadata", b"other"])


@st.composite
def _text_chunk_payload(draw):
    key = draw(_keys)
    body = draw(st.binary(max_size=120))
    kind = draw(st.sampled_from(["plain", "zlib", "itxt", "itxt-zlib", "raw"]))
    if kind == "plain":
        return b"tEXt", key + b"\0" + body
    if kind == "zlib":
        return b"zTXt", key + b"\0\0" + (zlib.compress(body) if draw(st.booleans()) else body)
    if kind.startswith("itxt"):
        packed = zlib.compress(body) if kind == "itxt-zlib" and draw(st.booleans()) else body
        return b"iTXt", key + b"\0" + (b"\1\0" if kind == "itxt-zlib" else b"\0\0") + b"en\0\0" + packed
    return draw(_chunk_kinds), body


@FUZZ
@given(st.lists(_text_chunk_payload(), max_size=6), st.booleans(), st.integers(0, 400), st.booleans())
def test_png_chunk_reader_raises_only_studio_errors(chunks, good_crc, cut, lie_about_length):
    """A real PNG with fuzzed text chunks spliced in before IEND, bad CRCs, lying lengths, cut short."""
    base = _png_with({})
    end = base.rindex(b"IEND") - 4
    extra = b""
    for kind, data in chunks:
        chunk = _chunk(kind, data)
        if not good_crc:
            chunk = chunk[:-4] + b"\0\0\0\0"
        if lie_about_length:
            chunk = struct.pack(">I", len(data) * 7 + 3) + chunk[4:]
        extra += chunk
    data = base[:end] + extra + base[end:]
    data = data[: len(data) - cut] if cut else data
    for read in (metadata.read_text_chunks, metadata.read_recipe):
        _reads_or_refuses(read, data)
    _reads_or_refuses(metadata.read_recipe, Image.open(io.BytesIO(base)))


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_at_all_raise_only_studio_errors(blob):
    for data in (blob, b"\x89PNG\r\n\x1a\n" + blob):
        _reads_or_refuses(metadata.read_recipe, data)


# ----------------------------------------------------------------------------------- round trip

_prompt = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)
_name = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)
_number = st.floats(0.1, 30, allow_nan=False).map(lambda x: round(x, 3))
_valid_recipes = st.fixed_dictionaries(
    {"schema": st.just(SCHEMA), "prompt": _prompt, "negative_prompt": _prompt,
     "steps": st.integers(1, 150), "cfg": _number, "seed": st.integers(0, metadata.SEED_MAX),
     "width": st.integers(1, 4096), "height": st.integers(1, 4096),
     "scheduler": st.sampled_from(["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC"]),
     "mode": st.sampled_from(["txt2img", "img2img", "inpaint", "outpaint"])},
    optional={"strength": st.floats(0.01, 1.0), "variation_seed": st.integers(0, metadata.SEED_MAX),
              "variation_strength": st.floats(0, 1), "model": st.fixed_dictionaries(
                  {"name": _name, "hash": st.none() | st.text("0123456789abcdef", min_size=10, max_size=10),
                   "path": st.none() | _name}),
              "outpaint": st.lists(st.integers(0, 512), min_size=4, max_size=4),
              "loras": st.lists(st.fixed_dictionaries({"name": _name, "weight": _number,
                                                        "hash": st.text("0123456789abcdef", min_size=12,
                                                                        max_size=12)}), max_size=3),
              "extra": st.dictionaries(_name, _prompt, max_size=3), "parent_id": st.integers(1, 10**9)})


@FUZZ
@given(_valid_recipes)
def test_a_valid_recipe_written_reads_back_equal(recipe):
    png = metadata.encode_png(Image.new("RGB", (4, 4)), recipe)
    assert metadata.read_recipe(png) == {**recipe, "source": "studio"}
    assert metadata.read_recipe(Image.open(io.BytesIO(png))) == {**recipe, "source": "studio"}


_line = _prompt.filter(lambda t: "\n" not in t and "\r" not in t and not t.strip().startswith("Negative prompt:"))


@FUZZ
@given(_valid_recipes, _line, _line)
def test_a_recipe_through_the_a1111_text_keeps_what_that_text_can_say(recipe, prompt, negative):
    """The `parameters` text alone (what other tools read and write) gives back the fields it holds.
    One-line prompts: A1111's layout joins lines, and strips the whole text, by design."""
    recipe = {**recipe, "prompt": prompt, "negative_prompt": negative}
    parsed = metadata.parse_parameters(metadata.format_parameters(recipe))
    assert (parsed["prompt"], parsed["negative_prompt"]) == (prompt.strip(), negative.strip())
    for key in ("steps", "seed", "width", "height", "scheduler"):
        assert parsed[key] == recipe[key]
    assert parsed["cfg"] == float(recipe["cfg"])
