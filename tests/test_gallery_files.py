"""Image files in and out of the gallery: import from each tool's format, export, thumbnails, names."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from studio.gallery import Gallery, GalleryError, NotFoundError
from studio.gallery.files import sanitize_name
from studio.recipe import metadata
from tests.test_gallery_store import recipe, save
from tests.test_metadata import comfy_graph, png_with_chunks


@pytest.fixture
def gallery(data_dir: Path):
    with Gallery(data_dir) as opened:
        yield opened


def write_png(path: Path, color: tuple[int, int, int] = (90, 30, 200), **texts: str) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    Image.new("RGB", (24, 20), color).save(path, "PNG", pnginfo=info)
    return path


A1111_TEXT = ("a misty forest, volumetric light\nNegative prompt: text, watermark\n"
              "Steps: 28, Sampler: Euler a, CFG scale: 6, Seed: 1234, Size: 24x20, Model hash: 0123456789, "
              'Model: forest-model, Lora hashes: "moss: aa11, fog: bb22"')
INVOKE_META = {"positive_prompt": "an invoked castle", "negative_prompt": "", "seed": 55, "steps": 12,
               "cfg_scale": 4.5, "scheduler": "euler_a", "width": 24, "height": 20, "model": {"name": "inv-model"}}


def test_import_each_format(gallery: Gallery, tmp_path: Path) -> None:
    studio_recipe = recipe("a studio squirrel", 31337)
    studio_png = tmp_path / "studio.png"
    studio_png.write_bytes(metadata.encode_png(Image.new("RGB", (24, 20), (1, 1, 1)), studio_recipe))
    a1111 = write_png(tmp_path / "a1111.png", (2, 2, 2), parameters=A1111_TEXT)
    comfy = write_png(tmp_path / "comfy.png", (3, 3, 3), prompt=json.dumps(comfy_graph()), workflow="{}")
    invoke = write_png(tmp_path / "invoke.png", (4, 4, 4), invokeai_metadata=json.dumps(INVOKE_META))
    bare = write_png(tmp_path / "bare.png", (5, 5, 5))

    result = gallery.import_paths([studio_png, a1111, comfy, invoke, bare])
    assert len(result) == 5 and result.errors == [] and result.warnings == []
    rows = [gallery.get(i) for i in result]
    assert [r.recipe().get("source") for r in rows] == ["studio", "a1111", "comfyui", "invokeai", None]
    studio_row = rows[0].recipe()
    studio_row.pop("source")
    assert studio_row["prompt"] == "a studio squirrel" and studio_row["seed"] == 31337
    assert (rows[1].prompt, rows[1].seed, rows[1].steps, rows[1].cfg, rows[1].model_name) == \
        ("a misty forest, volumetric light", 1234, 28, 6.0, "forest-model")
    assert (rows[2].prompt, rows[2].seed, rows[2].scheduler) == ("a red fox in snow\nwatercolor", 123456,
                                                                 "DPM++ 2M Karras")
    assert (rows[3].prompt, rows[3].seed, rows[3].scheduler, rows[3].model_name) == \
        ("an invoked castle", 55, "Euler a", "inv-model")
    assert rows[4].prompt == "" and rows[4].seed is None and rows[4].width == 24
    for row, source in zip(rows, [studio_png, a1111, comfy, invoke, bare]):
        assert row.file.read_bytes() == source.read_bytes()  # a copy, byte for byte
        assert row.file.is_relative_to(gallery.images_dir)
    assert [r.id for r in gallery.find(search="forest")] == [rows[1].id]


def test_import_folder_skips_broken_files_and_duplicates(gallery: Gallery, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    good = write_png(folder / "good.png", parameters=A1111_TEXT)
    write_png(folder / "sub" / "nested.png", (9, 9, 9))
    (folder / "fake.png").write_text("this is not a PNG")
    truncated = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(truncated, "PNG")
    (folder / "truncated.png").write_bytes(truncated.getvalue()[:60])
    (folder / "notes.txt").write_text("ignored: not an image name")

    result = gallery.import_paths([folder, tmp_path / "nope.png"])
    assert len(result) == 2
    failed = {path.name: message for path, message in result.errors}
    assert set(failed) == {"fake.png", "truncated.png", "nope.png"}
    assert "not a readable image" in failed["fake.png"] and "no such file" in failed["nope.png"]
    again = gallery.import_paths([good])
    assert list(again) == [result[0]]  # the same file twice is one image
    assert again.added == 0 and again.already == [(good, result[0])] and result.added == 2
    assert gallery.count() == 2


def test_import_with_hostile_metadata_keeps_the_pixels(gallery: Gallery, tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.png"
    hostile.write_bytes(png_with_chunks([(b"tEXt",
                                          b'studio\0{"schema": 1, "prompt": "x", "negative_prompt": "", "steps": [1]}')]))
    result = gallery.import_paths([hostile])
    assert len(result) == 1 and result.errors == []
    assert len(result.warnings) == 1 and "metadata ignored" in result.warnings[0][1]
    assert gallery.get(result[0]).recipe()["created_at"]  # imported with an empty recipe


def test_export_png_keeps_every_chunk(gallery: Gallery, tmp_path: Path) -> None:
    image_id = save(gallery, "a fox / in: the *snow*", seed=9)
    (out,) = gallery.export([image_id], tmp_path / "out")
    assert out.read_bytes() == gallery.get(image_id).file.read_bytes()
    assert out.name.endswith("-9-a_fox_in_the_snow.png")
    got = metadata.read_recipe(out)
    assert got is not None and got.pop("source") == "studio" and got == gallery.get(image_id).recipe()


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_export_jpeg_webp_carry_parameters(gallery: Gallery, tmp_path: Path, fmt: str) -> None:
    image_id = save(gallery, "a café fox 猫", seed=123, steps=31)
    (out,) = gallery.export([image_id], tmp_path, fmt=fmt)
    assert out.suffix == (".jpg" if fmt == "jpeg" else ".webp")
    with Image.open(out) as image:
        assert image.format == fmt.upper()
    got = metadata.read_recipe(out)
    assert got is not None and got["source"] == "a1111"
    assert (got["prompt"], got["seed"], got["steps"], got["scheduler"]) == ("a café fox 猫", 123, 31, "Euler a")
    # Re-importing an export gives the image back with its settings.
    reimported = gallery.get(gallery.import_paths([out])[0])
    assert (reimported.prompt, reimported.seed) == ("a café fox 猫", 123)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_export_strip_metadata(gallery: Gallery, tmp_path: Path, fmt: str) -> None:
    image_id = save(gallery, "secret prompt")
    (out,) = gallery.export([image_id], tmp_path, fmt=fmt, strip_metadata=True)
    assert metadata.read_recipe(out) is None
    assert b"secret" not in out.read_bytes()


def test_export_never_overwrites_and_names_are_safe(gallery: Gallery, tmp_path: Path) -> None:
    image_id = save(gallery, "line\nbreak\x07 ../../etc/passwd " + "long " * 100, seed=5)
    (tmp_path / "taken.png").write_text("someone else's file")
    outs = gallery.export([image_id, image_id, image_id], tmp_path, template="taken")
    assert [p.name for p in outs] == ["taken-1.png", "taken-2.png", "taken-3.png"]
    assert (tmp_path / "taken.png").read_text() == "someone else's file"
    (out,) = gallery.export([image_id], tmp_path / "x", template="{prompt}")
    assert out.parent == tmp_path / "x" and "/" not in out.name and "\n" not in out.name
    assert len(out.name.encode()) <= 160
    (con,) = gallery.export([image_id], tmp_path, template="CON")
    assert con.name == "_CON.png"
    with pytest.raises(GalleryError, match="unknown field"):
        gallery.export([image_id], tmp_path, template="{prompt.__class__}")
    with pytest.raises(GalleryError, match="format"):
        gallery.export([image_id], tmp_path, fmt="bmp")
    gallery.get(image_id).file.unlink()
    with pytest.raises(NotFoundError, match="missing"):
        gallery.export([image_id], tmp_path)


@pytest.mark.parametrize(("raw", "expected"), [
    ("a cat, on a mat", "a_cat_on_a_mat"), ("../../x", "x"), ("nul", "_nul"), ("COM1.txt", "_COM1.txt"),
    ("", "image"), ("...", "image"), ("tab\there", "tab_here"), ("a<b>c:d|e?f*g", "a_b_c_d_e_f_g"),
])
def test_sanitize_name(raw: str, expected: str) -> None:
    assert sanitize_name(raw) == expected


def test_sanitize_name_caps_bytes_on_a_character_boundary() -> None:
    name = sanitize_name("猫" * 200)
    assert len(name.encode()) <= 150 and name == "猫" * (len(name))


def test_thumbnails_are_cached(gallery: Gallery) -> None:
    image_id = gallery.save(Image.new("RGBA", (600, 300), (255, 0, 0, 128)), recipe())
    thumb = gallery.thumbnail(image_id)
    with Image.open(thumb) as image:
        assert max(image.size) == 256 and image.size == (256, 128) and image.mode == "RGB"
    stamp = thumb.stat().st_mtime_ns
    assert gallery.thumbnail(image_id) == thumb and thumb.stat().st_mtime_ns == stamp  # made once
    assert gallery.thumbnail(gallery.get(image_id).path) == thumb  # by relative path too
    assert gallery.thumbnail(image_id, size=64) != thumb
    thumb.unlink()
    assert gallery.thumbnail(image_id).exists()  # remade when the cache lost it
    gallery.get(image_id).file.unlink()
    with pytest.raises(NotFoundError):
        gallery.thumbnail(image_id)


def test_an_imported_image_comes_first_and_keeps_its_own_date(gallery: Gallery, tmp_path: Path) -> None:
    made_here = [save(gallery, "made today", seed=s) for s in (1, 2)]
    old = tmp_path / "old.png"
    old.write_bytes(metadata.encode_png(Image.new("RGB", (24, 20), (7, 7, 7)),
                                        recipe("painted in 2019", 5, created_at="2019-05-04T10:00:00+00:00")))
    (imported,) = gallery.import_paths([old])
    assert [r.id for r in gallery.find()] == [imported, *made_here[::-1]]  # newest in the gallery first
    assert [r.id for r in gallery.find(sort="oldest")] == [*made_here, imported]
    record = gallery.get(imported)
    assert record.created_at.startswith("2019-05-04T10:00:00") and record.recipe()["created_at"].startswith("2019-05-04")
