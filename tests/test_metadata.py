"""Recipes in image files: the A1111 text, Studio's own chunk, other tools' metadata, hostile files."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import zlib
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from studio.recipe import metadata
from studio.recipe.metadata import MetadataError, format_parameters, parse_parameters, read_recipe


def make_recipe(**changes: Any) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "schema": 1, "app": "studio", "app_version": "0.1.0", "mode": "img2img",
        "prompt": "a lighthouse on a cliff, golden hour\nsecond line", "negative_prompt": "blurry, low quality",
        "steps": 20, "cfg": 7.0, "seed": 42, "width": 512, "height": 512, "scheduler": "DPM++ 2M Karras",
        "scheduler_class": "DPMSolverMultistepScheduler",
        "scheduler_config": {"use_karras_sigmas": True, "beta_schedule": "scaled_linear", "trained_betas": None},
        "strength": 0.75, "batch_size": 2, "batch_index": 1, "variation_seed": 1, "variation_strength": 0.3,
        "model": {"name": "studio-shapes", "hash": "abc1234567", "path": "/models/studio-shapes"},
        "init_image_hash": "0f1e2d3c4b", "mask_hash": None, "mask_grow": 4, "mask_feather": 8,
        "inpaint_area": "whole", "padding": 32, "outpaint": None, "device": "cpu", "dtype": "float32",
        "seconds": 1.25, "created_at": "2024-05-01T12:00:00.123456+00:00", "parent_id": None,
    }
    recipe.update(changes)
    return recipe


def png_with_chunks(chunks: list[tuple[bytes, bytes]], size: tuple[int, int] = (8, 8)) -> bytes:
    """A PNG with raw chunks inserted after IHDR (written by hand: Pillow refuses hostile ones)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, "PNG")
    data = buffer.getvalue()
    ihdr_end = 8 + 8 + 13 + 4
    raw = b"".join(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
                   for kind, body in chunks)
    return data[:ihdr_end] + raw + data[ihdr_end:]


def png_with_info(**texts: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------- A1111 text

def test_format_parameters_matches_a1111_layout() -> None:
    text = format_parameters(make_recipe())
    assert text == (
        "a lighthouse on a cliff, golden hour\nsecond line\n"
        "Negative prompt: blurry, low quality\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, "
        "Model hash: abc1234567, Model: studio-shapes, Denoising strength: 0.75, Variation seed: 1, "
        "Variation seed strength: 0.3"
    )


def test_format_parameters_leaves_out_what_does_not_apply() -> None:
    text = format_parameters(make_recipe(mode="txt2img", strength=None, negative_prompt="", variation_seed=None,
                                         variation_strength=0.0, scheduler="Euler a", cfg=7.5,
                                         model={"name": "my, model: v2", "hash": "0123456789", "path": "x"}))
    assert text == ("a lighthouse on a cliff, golden hour\nsecond line\n"
                    'Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, '
                    'Model hash: 0123456789, Model: "my, model: v2"')
    assert "Negative prompt" not in text and "Denoising" not in text and "Variation" not in text


def test_parse_parameters_reads_its_own_output() -> None:
    recipe = make_recipe(cfg=6.5, model={"name": "a, b", "hash": "abc1234567", "path": "p"})
    parsed = parse_parameters(format_parameters(recipe))
    for key in ("prompt", "negative_prompt", "steps", "cfg", "seed", "width", "height", "scheduler", "strength",
                "variation_seed", "variation_strength", "mode"):
        assert parsed[key] == recipe[key], key
    assert parsed["model"] == {"name": "a, b", "hash": "abc1234567", "path": None}


WILD_A1111 = (
    "masterpiece, best quality, 1girl, <lora:detail:0.6>\n"
    "(cinematic lighting:1.2)\n"
    "Negative prompt: (worst quality, low quality:1.4), bad hands\n"
    "extra negative line\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 3937472611, Size: 512x768, "
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "detail: 1a2b3c4d5e6f, other: 0a0b", '
    'TI hashes: "easynegative: c74b4e810b03", Denoising strength: 0.52, Hires upscale: 2, Version: v1.6.0\n'
    "Template: masterpiece, {style}"
)


def test_parse_parameters_from_the_wild() -> None:
    parsed = parse_parameters(WILD_A1111)
    assert parsed["prompt"] == "masterpiece, best quality, 1girl, <lora:detail:0.6>\n(cinematic lighting:1.2)"
    assert parsed["negative_prompt"] == "(worst quality, low quality:1.4), bad hands\nextra negative line"
    assert (parsed["steps"], parsed["cfg"], parsed["seed"]) == (30, 7.5, 3937472611)
    assert (parsed["width"], parsed["height"]) == (512, 768)
    assert parsed["scheduler"] == "DPM++ 2M Karras"  # the pre-1.9 spelling, schedule inside the name
    assert parsed["model"] == {"name": "v1-5-pruned-emaonly", "hash": "6ce0161689", "path": None}
    assert parsed["loras"] == [{"name": "detail", "hash": "1a2b3c4d5e6f", "weight": None},
                               {"name": "other", "hash": "0a0b", "weight": None}]
    assert parsed["extra"]["TI hashes"] == "easynegative: c74b4e810b03"
    # Hires fix writes a denoising strength too; the image is still a txt2img one.
    assert parsed["mode"] == "txt2img" and "strength" not in parsed


@pytest.mark.parametrize(("sampler", "expected"), [
    ("Sampler: DPM++ 2M, Schedule type: Karras", "DPM++ 2M Karras"),
    ("Sampler: DPM++ 2M, Schedule type: Automatic", "DPM++ 2M"),
    ("Sampler: Euler a", "Euler a"),
    ("Sampler: UniPC", "UniPC"),
    ("Sampler: Euler, Schedule type: Karras", None),  # no equivalent here
    ("Sampler: DPM++ SDE", None),
])
def test_parse_parameters_maps_samplers(sampler: str, expected: str | None) -> None:
    parsed = parse_parameters(f"cat\nSteps: 20, {sampler}, CFG scale: 7, Seed: 1, Size: 64x64")
    assert parsed.get("scheduler") == expected
    if expected is None:
        assert "Sampler" in parsed["extra"]


def test_parse_parameters_without_prompt_and_big_seed() -> None:
    parsed = parse_parameters("Steps: 20, Sampler: Euler, CFG scale: 7, Seed: 18446744073709551615, Size: 64x64")
    assert parsed["prompt"] == "" and parsed["steps"] == 20
    assert "seed" not in parsed  # 64-bit seeds of other tools are kept as text only
    assert parsed["extra"]["original_seed"] == "18446744073709551615"


# ----------------------------------------------------------------------------------- Studio chunk

def test_studio_recipe_round_trips_exactly(tmp_path) -> None:
    recipe = make_recipe(prompt="ünïcødé 猫 prompt", outpaint=[0, 64, 128, 0], parent_id=7)
    data = metadata.encode_png(Image.new("RGB", (32, 24), (1, 2, 3)), recipe)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        got = read_recipe(source)
        assert got is not None and got.pop("source") == "studio"
        assert got == recipe
    with Image.open(path) as image:
        assert read_recipe(image) == {**recipe, "source": "studio"}
        # The parameters text (iTXt here, the prompt is not Latin-1) is what other tools read.
        assert parse_parameters(image.info["parameters"])["prompt"] == recipe["prompt"]


def test_broken_studio_chunk_falls_back_to_parameters() -> None:
    data = png_with_info(studio="{not json",
                         parameters="a cat\nSteps: 12, Sampler: Euler, CFG scale: 5, Seed: 9, Size: 16x16")
    got = read_recipe(data)
    assert got is not None and got["source"] == "a1111" and got["steps"] == 12 and got["prompt"] == "a cat"


def test_no_metadata_gives_none(tmp_path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert read_recipe(path) is None
    jpeg = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(jpeg)
    assert read_recipe(jpeg) is None


# ----------------------------------------------------------------------------------- other tools

def comfy_graph() -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15\\dreamshaper_8.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 640, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "CLIPTextEncode", "inputs": {"text": ["11", 0], "clip": ["4", 1]}},
        "9": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["8", 0]}},
        "10": {"class_type": "PrimitiveNode", "inputs": {"value": 123456}},
        "11": {"class_type": "PrimitiveNode", "inputs": {"value": "watercolor"}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": ["10", 0], "steps": 25, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras",
            "denoise": 1.0, "model": ["4", 0], "positive": ["9", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    }


def test_comfyui_prompt_graph() -> None:
    data = png_with_info(prompt=json.dumps(comfy_graph()), workflow=json.dumps({"nodes": []}))
    got = read_recipe(data)
    assert got is not None and got["source"] == "comfyui"
    assert got["prompt"] == "a red fox in snow\nwatercolor" and got["negative_prompt"] == "blurry"
    assert (got["seed"], got["steps"], got["cfg"]) == (123456, 25, 6.5)
    assert got["scheduler"] == "DPM++ 2M Karras" and got["mode"] == "txt2img"
    assert (got["width"], got["height"]) == (512, 640)
    assert got["model"]["name"] == "dreamshaper_8"


def test_comfyui_advanced_sampler_and_cycles_do_not_hang() -> None:
    graph = comfy_graph()
    graph["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "noise_seed": 77, "steps": 10, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
        "positive": ["20", 0], "negative": ["7", 0], "latent_image": ["5", 0], "model": ["4", 0]}}
    graph["20"] = {"class_type": "ConditioningConcat",
                   "inputs": {"conditioning_to": ["21", 0], "conditioning_from": ["6", 0]}}
    graph["21"] = {"class_type": "ConditioningConcat",
                   "inputs": {"conditioning_to": ["20", 0], "conditioning_from": ["20", 0]}}
    got = read_recipe(png_with_info(prompt=json.dumps(graph)))
    assert got is not None and got["seed"] == 77 and got["scheduler"] == "Euler" and got["prompt"] == "a red fox in snow"


def test_invokeai_metadata() -> None:
    meta = {"positive_prompt": "a castle at dusk", "negative_prompt": "text", "seed": 99, "steps": 30,
            "cfg_scale": 7.5, "scheduler": "dpmpp_2m_k", "width": 768, "height": 512,
            "model": {"name": "juggernaut", "base": "sdxl"}, "generation_mode": "txt2img"}
    got = read_recipe(png_with_info(invokeai_metadata=json.dumps(meta)))
    assert got is not None and got["source"] == "invokeai"
    assert (got["prompt"], got["negative_prompt"], got["seed"], got["steps"], got["cfg"]) == \
        ("a castle at dusk", "text", 99, 30, 7.5)
    assert got["scheduler"] == "DPM++ 2M Karras" and (got["width"], got["height"]) == (768, 512)
    assert got["model"]["name"] == "juggernaut"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("prompt", ["plain ascii prompt", "non-ascii prompt: café 猫"])
def test_exif_user_comment(tmp_path, fmt: str, prompt: str) -> None:
    text = format_parameters(make_recipe(prompt=prompt))
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (16, 16)).save(path, fmt, exif=metadata.exif_with_parameters(text))
    got = read_recipe(path)
    assert got is not None and got["source"] == "a1111" and got["prompt"] == prompt and got["seed"] == 42


def test_user_comment_little_endian_is_recognised() -> None:
    text = "cat\nSteps: 5, Seed: 3, Size: 8x8"
    assert metadata.decode_user_comment(b"UNICODE\0" + text.encode("utf-16-le")) == text
    assert metadata.decode_user_comment(b"UNICODE\0" + text.encode("utf-16-be")) == text
    assert metadata.decode_user_comment(b"ASCII\0\0\0" + text.encode()) == text


# ----------------------------------------------------------------------------------- hostile files

def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE = {
    "huge tEXt chunk": [(b"tEXt", b"parameters\0" + b"a" * (metadata.MAX_CHUNK + 10))],
    "zTXt bomb": [(b"zTXt", b"parameters\0\0" + zlib.compress(b"a" * (50 << 20), 9))],
    "iTXt bomb": [(b"iTXt", b"studio\0\1\0\0\0" + zlib.compress(b" " * (50 << 20), 9))],
    "broken JSON": [(b"tEXt", b"studio\0{\"schema\": 1, \"steps\": ")],
    "steps as text": [(b"tEXt", b'studio\0{"schema": 1, "prompt": "x", "negative_prompt": "", "steps": "abc"}')],
    "list for a number": [(b"tEXt", b'studio\0{"schema": 1, "prompt": "x", "negative_prompt": "", "cfg": [1, 2]}')],
    "bool for a number": [(b"tEXt", b'studio\0{"schema": 1, "prompt": "x", "negative_prompt": "", "seed": true}')],
    "NaN": [(b"tEXt", b'studio\0{"schema": 1, "prompt": "x", "negative_prompt": "", "cfg": NaN}')],
    "seed out of range": [(b"tEXt", b'studio\0{"schema": 1, "prompt": "x", "negative_prompt": "", "seed": -5}')],
    "not an object": [(b"tEXt", b"studio\0[1, 2, 3]")],
    "deep nesting": [(b"tEXt", b"studio\0" + _deep_json(200_000).encode())],
    "A1111 steps abc": [(b"tEXt", b"parameters\0cat\nSteps: abc, Sampler: Euler, CFG scale: 7, Seed: 1")],
    "A1111 size nonsense": [(b"tEXt", b"parameters\0cat\nSteps: 5, Size: 99999999999x2, Seed: 1")],
    "comfy not a graph": [(b"tEXt", b'prompt\0"just a string"')],
    "comfy wrong types": [(b"tEXt",
                           b'prompt\0{"1": {"class_type": "KSampler", "inputs": {"steps": "many", "seed": [1]}}}')],
    "invokeai wrong types": [(b"tEXt", b'invokeai_metadata\0{"positive_prompt": 5, "seed": "x"}')],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_metadata_is_rejected_cleanly(name: str) -> None:
    data = png_with_chunks(HOSTILE[name])
    start = time.perf_counter()
    with pytest.raises(MetadataError):
        read_recipe(data)
    assert time.perf_counter() - start < 2.0


def test_hostile_text_parses_in_linear_time() -> None:
    # A1111's own regex backtracks quadratically on long lines without colons; ours must not.
    for text in ("word " * 200_000, "a:" * 200_000, 'Steps: 1, k: "' + "\\" * 300_000, "x, " * 300_000):
        start = time.perf_counter()
        parse_parameters(text)
        assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\xff" * 40,
                                  b"\xff\xd8\xff\xe0" + b"\0" * 30])
def test_garbage_files(data: bytes) -> None:
    try:
        assert read_recipe(data) is None
    except MetadataError:
        pass  # either answer is clean; any other exception fails the test


def test_truncated_png_keeps_chunks_before_the_cut() -> None:
    data = metadata.encode_png(Image.new("RGB", (64, 64)), make_recipe())
    got = read_recipe(data[: len(data) // 2 + 200])
    assert got is not None and got["seed"] == 42


def test_metadata_module_stays_light() -> None:
    code = "import sys, studio.recipe.metadata; print(any(m in sys.modules for m in ('torch', 'diffusers', 'PySide6')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_64_bit_a1111_seed_survives_other_unknown_keys():
    """Every real A1111 image has `Version:`; a seed past 32 bits must still be kept beside it."""
    text = ("a cat\\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 18446744073709551615, Size: 512x512, "
            "Version: v1.10.1").replace("\\n", "\n")
    parsed = parse_parameters(text)
    assert parsed["extra"]["original_seed"] == "18446744073709551615"
    assert parsed["extra"]["Version"] == "v1.10.1"
    assert "seed" not in parsed
