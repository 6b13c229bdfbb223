"""Hostile inputs through every way data gets in: each case ends with a clear message (or the input
working), no crash, and nothing already in the gallery lost.

The inputs are made by tests/hostile.py. The CLI runs in-process (as in test_cli.py); the `home`
fixture holds two images saved before each case and checks in its teardown that both are still listed
with byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.gallery import Gallery
from studio.recipe.request import GenerationRequest, RequestError
from tests import hostile
from tests.hostile import BROKEN, BROKEN_REASON, MODELS, UNUSUAL, assert_clear

OLD_PROMPTS = ("an old favourite lighthouse", "the client's approved logo")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(home: Path) -> dict[int, tuple[str, str]]:
    """Pre-existing images: id -> (path, sha256 of the file), read without Studio's code."""
    conn = sqlite3.connect(f"file:{home / 'gallery.sqlite3'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, path FROM images WHERE deleted_at IS NULL").fetchall()
    finally:
        conn.close()
    return {i: (p, hostile.file_digest(home / p)) for i, p in rows}


@pytest.fixture
def home(data_dir):
    """A data folder whose gallery already holds two images; nothing of them may be lost."""
    with Gallery(data_dir) as gallery:
        for seed, prompt in enumerate(OLD_PROMPTS, start=3):
            image = Image.fromarray(np.full((16, 16, 3), seed * 40, np.uint8), "RGB")
            gallery.save(image, {"schema": 1, "prompt": prompt, "seed": seed, "steps": 20, "cfg": 7.0,
                                 "mode": "txt2img"})
    before = _snapshot(data_dir)
    files = {p: digest for p, digest in before.values()}
    yield data_dir
    for relative, digest in files.items():  # the files survive whatever happened to the index
        assert (data_dir / relative).is_file() and hostile.file_digest(data_dir / relative) == digest
    if _readable_db(data_dir):
        after = _snapshot(data_dir)
        assert {i: after.get(i) for i in before} == before


def _readable_db(home: Path) -> bool:
    try:
        _snapshot(home)
    except sqlite3.Error:
        return False
    return True


@pytest.fixture
def gen(tiny_model, home):
    return ["generate", "--model", str(tiny_model), "--steps", "2", "--device", "cpu", "--data-dir", str(home)]


# =================================================================================== images

@pytest.mark.parametrize("kind", BROKEN)
def test_gallery_import_skips_a_broken_image_and_says_why(capsys, home, tmp_path, kind):
    path = BROKEN[kind](tmp_path)
    code, out, err = run(capsys, "gallery", "import", str(path), "--data-dir", str(home))
    assert code == 1 and "imported 0 images" in out
    assert_clear(err, path.name, BROKEN_REASON[kind], paths=(path,))
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", UNUSUAL)
def test_gallery_import_takes_an_unusual_image_and_its_thumbnail_shows_it(capsys, home, tmp_path, kind):
    path = UNUSUAL[kind](tmp_path)
    code, out, err = run(capsys, "gallery", "import", str(path), "--data-dir", str(home))
    assert code == 0 and "imported 1 image" in out, err
    with Gallery(home) as gallery:
        (new,) = [r for r in gallery.find() if r.prompt not in OLD_PROMPTS]
        assert (new.width, new.height) == (32, 32)
        with Image.open(gallery.thumbnail(new.id)) as thumb:
            grey = np.asarray(thumb.convert("L"), np.float64)
    # Every test picture is a gradient with a mid-grey mean: a thumbnail of clipped 16-bit values is
    # white, one of unapplied palette alpha or inverted CMYK is off by far more than this.
    assert 50 < grey.mean() < 200 and grey.std() > 20


@pytest.mark.parametrize("kind", BROKEN)
def test_generate_init_refuses_a_broken_image_by_name(capsys, gen, tmp_path, kind):
    path = BROKEN[kind](tmp_path)
    out_file = tmp_path / "never.png"
    code, out, err = run(capsys, *gen, "--prompt", "x", "--init", str(path), "--out", str(out_file))
    assert code == 1 and out == "" and not out_file.exists()
    assert err.startswith("studio: error:") and len(err.strip().splitlines()) == 1
    assert_clear(err, "init image", path.name, BROKEN_REASON[kind], paths=(path,))


@pytest.mark.parametrize("kind", BROKEN)
def test_generate_mask_refuses_a_broken_image_by_name(capsys, gen, tmp_path, kind):
    init = hostile.good_png(tmp_path / "init.png")
    path = BROKEN[kind](tmp_path)
    code, out, err = run(capsys, *gen, "--prompt", "x", "--init", str(init), "--mask", str(path),
                         "--out", str(tmp_path / "never.png"))
    assert code == 1 and not (tmp_path / "never.png").exists()
    assert_clear(err, "mask", path.name, BROKEN_REASON[kind], paths=(path,))


@pytest.mark.parametrize("kind", UNUSUAL)
def test_generate_takes_an_unusual_init_image(capsys, gen, tmp_path, kind):
    path = UNUSUAL[kind](tmp_path)
    code, out, err = run(capsys, *gen, "--prompt", "a cat", "--init", str(path), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert (record["width"], record["height"]) == (32, 32) and Path(record["path"]).is_file()


@pytest.mark.parametrize("kind", UNUSUAL)
def test_generate_takes_an_unusual_mask_as_grey_levels(capsys, gen, tmp_path, kind):
    """A mask in any of these modes means its grey levels (a gradient here): the top-left corner, black
    in every one of them, is kept exactly; the output has the init image's size."""
    init = hostile.good_png(tmp_path / "init.png")
    mask = UNUSUAL[kind](tmp_path)
    out_file = tmp_path / "out.png"
    code, _, err = run(capsys, *gen, "--prompt", "a cat", "--init", str(init), "--mask", str(mask),
                       "--mask-feather", "0", "--no-gallery", "--out", str(out_file))
    if kind == "16-bit-rgb" or kind == "cmyk" or kind == "palette-with-alpha":
        # colour masks (not grey): refused with the reason
        assert code == 1 and not out_file.exists()
        assert_clear(err, "mask", paths=(mask,))
        return
    assert code == 0, err
    out = np.asarray(Image.open(out_file).convert("RGB"))
    assert out.shape == (32, 32, 3)
    assert np.array_equal(out[0, 0], np.asarray(Image.open(init).convert("RGB"))[0, 0])


@pytest.mark.parametrize("kind", BROKEN)
def test_info_names_a_broken_image(capsys, tmp_path, kind):
    path = BROKEN[kind](tmp_path)
    code, out, err = run(capsys, "info", str(path))
    assert code == 1 and out == ""
    assert_clear(err, path.name, BROKEN_REASON[kind], paths=(path,))


@pytest.mark.parametrize("kind", UNUSUAL)
def test_info_on_an_unusual_image_without_metadata(capsys, tmp_path, kind):
    path = UNUSUAL[kind](tmp_path)
    code, _, err = run(capsys, "info", str(path))
    assert code == 1
    assert_clear(err, path.name, "carries no generation metadata", paths=(path,))


@pytest.fixture
def canvas(qtbot):
    from studio.ui.canvas import CanvasView

    view = CanvasView()
    qtbot.addWidget(view)
    return view


@pytest.mark.parametrize("kind", BROKEN)
def test_canvas_open_reports_a_broken_image_and_keeps_the_picture(qtbot, canvas, tmp_path, kind):
    assert canvas.open_file(str(hostile.good_png(tmp_path / "current.png")))
    before = np.asarray(canvas.image())
    path = BROKEN[kind](tmp_path)
    with qtbot.waitSignal(canvas.load_failed) as failed:
        assert not canvas.open_file(str(path))
    assert_clear(failed.args[0], path.name, BROKEN_REASON[kind], paths=(path,))
    assert np.array_equal(np.asarray(canvas.image()), before)


@pytest.mark.parametrize("kind", UNUSUAL)
def test_canvas_opens_an_unusual_image_as_it_looks(canvas, tmp_path, kind):
    path = UNUSUAL[kind](tmp_path)
    assert canvas.open_file(str(path))
    grey = np.asarray(canvas.image().convert("L"), np.float64)
    assert grey.shape == (32, 32)
    assert 50 < grey.mean() < 200 and grey.std() > 20  # the gradient, not a white or black sheet


# =================================================================================== masks

@pytest.mark.parametrize("size, mode, fill, reason", [
    ((16, 16), "L", 255, "16x16"),         # half the image's size
    ((32, 33), "L", 255, "32x33"),         # one row off
    ((32, 32), "L", 0, "empty"),           # nothing to repaint
    ((32, 32), "RGB", (255, 0, 0), "colour"),  # a colour picture passed as a mask
    ((32, 32), "RGBA", (0, 0, 0, 0), "empty"),  # a fully transparent layer
])
def test_a_mask_of_the_wrong_size_or_mode_is_refused_before_any_work(capsys, gen, tmp_path, size, mode, fill, reason):
    init = hostile.good_png(tmp_path / "init.png")
    mask = tmp_path / "mask.png"
    Image.new(mode, size, fill).save(mask)
    code, _, err = run(capsys, *gen, "--prompt", "x", "--init", str(init), "--mask", str(mask),
                       "--no-gallery", "--out", str(tmp_path / "never.png"))
    assert code == 1 and not (tmp_path / "never.png").exists()
    assert_clear(err, "mask", reason)


# =================================================================================== prompts

PROMPTS = {
    "100k-characters": "a lighthouse on a cliff, " * 4000,
    "control-characters": "a cat\x00 in\x07 a\x1b[31m red\r hat\x7f\u202e\tend",
    "emoji": "a 🐱 wearing a 🎩 under 🌈, 東京 at night, Zoë's café",
    "sql": "a cat'); DROP TABLE images; -- \" OR 1=1; DELETE FROM images_fts WHERE 'x'='x",
    "fts-syntax": 'NEAR(cat dog) AND "unclosed OR * ^prompt: -negative_prompt : {a b}',
}


@pytest.mark.parametrize("name", PROMPTS)
def test_a_hostile_prompt_validates_saves_reads_back_and_is_found(capsys, home, name):
    prompt = PROMPTS[name]
    request = GenerationRequest(prompt=prompt, negative_prompt=prompt[:100]).validate()
    assert request.prompt == prompt
    with Gallery(home) as gallery:
        image_id = gallery.save(Image.new("RGB", (8, 8), (10, 20, 30)),
                                {"schema": 1, "prompt": prompt, "negative_prompt": prompt[:100], "seed": 9})
        record = gallery.get(image_id)
        assert record.prompt == prompt
        from studio.recipe.metadata import read_recipe

        assert read_recipe(record.file)["prompt"] == prompt  # the file carries it too
        assert gallery.count() == len(OLD_PROMPTS) + 1
    for query in (prompt, prompt[:40]):
        code, out, err = run(capsys, "gallery", "list", "--search", query, "--json", "--data-dir", str(home))
        assert code == 0, err
        found = {json.loads(line)["id"] for line in out.splitlines()}
        assert found <= {image_id} | set(_snapshot(home))  # a hostile query is text, never syntax


@pytest.mark.parametrize("prompt, reason", [
    ("a cat \udcff in a hat", "cannot be saved"),  # undecodable bytes from a shell: surrogate escapes
    ("a lighthouse " * 50_000, "too long"),  # 650 KB: more than an image's metadata carries beside the recipe
])
def test_a_prompt_that_cannot_be_kept_is_refused_up_front(prompt, reason):
    with pytest.raises(RequestError) as caught:
        GenerationRequest(prompt=prompt).validate()
    assert_clear(str(caught.value), "prompt", reason)


def test_a_surrogate_prompt_from_the_shell_is_refused_before_generating(capsys, gen, tmp_path):
    code, out, err = run(capsys, *gen, "--prompt", "a cat \udcff", "--out", str(tmp_path / "x.png"))
    assert code == 1 and not (tmp_path / "x.png").exists()
    assert_clear(err, "prompt")


# =================================================================================== model files

@pytest.mark.parametrize("kind", MODELS)
def test_a_hostile_model_file_is_refused_by_name(capsys, gen, tmp_path, kind):
    path = MODELS[kind](tmp_path)
    argv = [a if a != gen[2] else str(path) for a in gen]
    code, out, err = run(capsys, *argv, "--prompt", "x", "--no-gallery", "--out", str(tmp_path / "never.png"))
    assert code == 1 and out == "" and not (tmp_path / "never.png").exists()
    assert_clear(err, path.name, paths=(path,))
    assert not (tmp_path / "PWNED").exists()  # no code from the file ran


@pytest.mark.parametrize("kind", MODELS)
def test_studio_models_lists_a_library_full_of_hostile_files(capsys, home, tmp_path, kind):
    folder = home / "models"
    folder.mkdir(exist_ok=True)
    MODELS[kind](folder)
    code, out, err = run(capsys, "models", "--json", "--hash", "--data-dir", str(home))
    assert code == 0, err
    assert not (folder / "PWNED").exists()
    names = [json.loads(line)["name"] for line in out.splitlines()]
    assert "studio-shapes" in names  # the library still lists what it can


def test_a_diffusers_folder_with_only_pickle_weights_is_refused_without_allow_pickle(capsys, gen, tiny_model, tmp_path):
    folder = tmp_path / "picklemodel"
    shutil.copytree(tiny_model, folder)
    for weights in folder.rglob("*.safetensors"):
        weights.rename(weights.with_name(weights.name.replace("model.safetensors", "pytorch_model.bin")
                                         .replace("diffusion_pytorch_model.safetensors",
                                                  "diffusion_pytorch_model.bin")))
    argv = [a if a != gen[2] else str(folder) for a in gen]
    code, _, err = run(capsys, *argv, "--prompt", "x", "--no-gallery", "--out", str(tmp_path / "never.png"))
    assert code == 1
    assert_clear(err, "picklemodel", paths=(folder,))


@pytest.mark.parametrize("index", ["{not json", "[1, 2]", "{}", '{"unet": ["diffusers", "UNet2DConditionModel"]}'])
def test_a_broken_pipeline_folder_is_refused_with_its_reason(capsys, gen, tiny_model, tmp_path, index):
    folder = tmp_path / "broken-folder"
    folder.mkdir()
    (folder / "model_index.json").write_text(index)
    argv = [a if a != gen[2] else str(folder) for a in gen]
    code, _, err = run(capsys, *argv, "--prompt", "x", "--no-gallery", "--out", str(tmp_path / "never.png"))
    assert code == 1
    assert_clear(err, "model_index.json" if index != '{"unet": ["diffusers", "UNet2DConditionModel"]}' else "unet",
                 paths=(folder,))


# =================================================================================== settings.ini

SETTINGS_FILES = {
    "binary-garbage": bytes(range(256)) * 8,
    "wrong-types": b"[General]\nsteps=many\ncfg=warm\nseed=-5\nwidth=@Variant(\\0\\0\\0\\x7f\\0\\0\\0)\nseed_locked=perhaps\n",
    "out-of-range": b"[General]\nsteps=999999\ncfg=1e308\nwidth=-64\nbatch=100000\nmask_feather=-1\n",
    "newer-version": b"[General]\nschema=99\nmemory=ultra\nscheduler=Euler Z\ninpaint_area=sideways\n"
                     b"outpaint_fill=plasma\nmodel=/gone/forever.safetensors\nvaes={not json\nnew_thing=1\n",
}


@pytest.mark.qt_log_ignore("QVariant::load")  # Qt says so about the unknown @Variant type, then reads on
@pytest.mark.parametrize("name", SETTINGS_FILES)
def test_a_corrupt_or_newer_settings_file_opens_the_window_with_safe_values(qtbot, home, name):
    from studio.recipe.request import SCHEDULERS
    from studio.ui.app import create_window

    (home / "settings.ini").write_bytes(SETTINGS_FILES[name])
    window = create_window(home, device="cpu")
    qtbot.addWidget(window)
    request = window.generation.build_request(prompt="a cat")  # validated: whatever the file said, a run would start
    assert request.scheduler in SCHEDULERS
    assert window.settings.get("memory") in ("auto", "high", "low", "lowest")
    window.close()


# =================================================================================== gallery.sqlite3

def _damage(home: Path, how: str) -> bytes:
    db = home / "gallery.sqlite3"
    for side in ("gallery.sqlite3-wal", "gallery.sqlite3-shm"):
        (home / side).unlink(missing_ok=True)
    data = db.read_bytes()
    if how == "garbage":
        data = os.urandom(len(data))
    elif how == "truncated":
        data = data[:1000]
    elif how == "zeroed-header":
        data = b"\0" * 100 + data[100:]
    elif how == "newer-schema":
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        return db.read_bytes()
    elif how == "other-app":
        db.unlink()
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE images (url TEXT, likes INTEGER)")
        conn.execute("INSERT INTO images VALUES ('http://example.com', 3)")
        conn.commit()
        conn.close()
        return db.read_bytes()
    db.write_bytes(data)
    return data


@pytest.mark.parametrize("how, reason", [
    ("garbage", "damaged"), ("truncated", "damaged"), ("zeroed-header", "damaged"),
    ("newer-schema", "newer Studio"), ("other-app", "not a Studio gallery"),
])
def test_a_damaged_or_newer_gallery_database_is_named_and_left_alone(capsys, home, how, reason):
    data = _damage(home, how)
    for argv in (["gallery", "list"], ["gallery", "import", str(hostile.good_png(home.parent / "new.png"))]):
        code, out, err = run(capsys, *argv, "--data-dir", str(home))
        assert code == 1 and out == ""
        assert_clear(err, "gallery.sqlite3", reason, paths=(home,))
        if how != "newer-schema":
            assert "images" in err  # where the pictures still are
    assert (home / "gallery.sqlite3").read_bytes() == data  # never overwritten: the user may recover it


# =================================================================================== a full or read-only data folder

def _fail_writes(monkeypatch, errno_code: int) -> None:
    """Every new file write in the data folder fails as the disk would (the fsync of a temp file)."""
    import errno as _errno

    from studio.gallery import files

    real = files.os.fsync

    def fsync(fd: int) -> None:
        raise OSError(errno_code, os.strerror(errno_code))

    monkeypatch.setattr(files.os, "fsync", fsync)
    assert real is not None and _errno.errorcode[errno_code]


@pytest.mark.parametrize("errno_name, reason", [("EDQUOT", "disk is full"), ("EACCES", "permission")])
def test_a_save_over_quota_or_without_permission_says_so_and_leaves_nothing(home, monkeypatch, errno_name, reason):
    import errno

    _fail_writes(monkeypatch, getattr(errno, errno_name))
    with Gallery(home) as gallery, pytest.raises(Exception) as caught:
        gallery.save(Image.new("RGB", (8, 8)), {"schema": 1, "prompt": "new", "seed": 1})
    from studio.recipe.errors import describe

    assert_clear(describe(caught.value), reason)
    assert not [p for p in (home / "images").rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("errno_name, reason", [("ENOSPC", "disk is full"), ("EROFS", "read-only")])
def test_generate_into_a_full_or_read_only_gallery_says_so_and_keeps_the_old(capsys, gen, home, monkeypatch,
                                                                              errno_name, reason):
    import errno

    _fail_writes(monkeypatch, getattr(errno, errno_name))
    code, out, err = run(capsys, *gen, "--prompt", "a cat")
    assert code == 1 and out == ""
    assert_clear(err, reason)
    assert not [p for p in (home / "images").rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("errno_name, reason", [("ENOSPC", "disk is full"), ("EROFS", "read-only")])
def test_import_into_a_full_or_read_only_gallery_says_so(capsys, home, tmp_path, monkeypatch, errno_name, reason):
    import errno

    path = hostile.good_png(tmp_path / "new.png")
    _fail_writes(monkeypatch, getattr(errno, errno_name))
    code, out, err = run(capsys, "gallery", "import", str(path), "--data-dir", str(home))
    assert code == 1
    assert_clear(err, reason)


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB filesystem (tmpfs), where the tests run as root and may mount one."""
    where = tmp_path / "small-disk"
    if not _mount_tmpfs(where, "1m"):
        pytest.skip("needs root and mount to make a 1 MB tmpfs (the injected ENOSPC cases cover the rest)")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_really_full_disk_keeps_every_saved_image(capsys, small_disk, tiny_model):
    """Generate into a 1 MB filesystem until it is full: the last run says the disk is full, and every
    image the gallery reported saved before it is there, whole."""
    home = small_disk / "home"
    saved: list[int] = []
    for attempt in range(200):
        with Gallery(home) as gallery:
            try:
                saved.append(gallery.save(Image.fromarray(np.random.default_rng(attempt).integers(
                    0, 255, (64, 64, 3), dtype=np.uint8)), {"schema": 1, "prompt": f"noise {attempt}",
                                                            "seed": attempt}))
            except Exception as exc:  # noqa: BLE001 - checked below
                failure = exc
                break
    else:
        pytest.fail("a 1 MB disk never filled up")
    assert_clear(str(failure), "disk is full")
    assert len(saved) > 3
    with Gallery(home) as gallery:
        assert [r.id for r in gallery.find(limit=1000)] == sorted(saved, reverse=True)
        for image_id in saved:
            with Image.open(gallery.get(image_id).file) as image:
                image.load()
    code, _, err = run(capsys, "generate", "--model", str(tiny_model), "--steps", "2", "--device", "cpu",
                       "--data-dir", str(home), "--prompt", "one more")
    assert code == 1
    assert_clear(err, "disk is full")


@pytest.fixture
def read_only_home(home, tmp_path):
    """The populated data folder on a read-only filesystem (a tmpfs remounted ro), where possible."""
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "16m"):
        pytest.skip("needs root and mount for a read-only filesystem (the injected EROFS cases cover the rest)")
    shutil.copytree(home, where / "home")
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
    yield where / "home"
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_read_only_data_folder_still_lists_and_says_why_it_cannot_save(capsys, read_only_home, gen, tmp_path):
    code, out, err = run(capsys, "gallery", "list", "--json", "--data-dir", str(read_only_home))
    assert code == 0, err
    assert {json.loads(line)["prompt"] for line in out.splitlines()} == set(OLD_PROMPTS)
    argv = [a if a != gen[-1] else str(read_only_home) for a in gen]
    code, out, err = run(capsys, *argv, "--prompt", "a cat")
    assert code == 1
    assert_clear(err, "read-only", paths=(read_only_home,))


# Not the 100k-character prompt: the tiny test model's 22-token window makes it 4,858 chunks (99 s);
# its storage and search are covered above, and a real CLIP window makes it about 320 chunks.
@pytest.mark.parametrize("name", ["control-characters", "emoji"])
def test_a_hostile_prompt_generates_and_its_image_replays_it(capsys, gen, home, name):
    code, out, err = run(capsys, *gen, "--prompt", PROMPTS[name], "--seed", "5", "--json")
    assert code == 0, err
    record = json.loads(out)
    code, out, err = run(capsys, "info", record["path"], "--json")
    assert code == 0 and json.loads(out)["prompt"] == PROMPTS[name]


@pytest.mark.parametrize("how", ["garbage", "newer-schema"])
def test_the_window_opens_without_its_gallery_when_the_database_cannot_be_used(qtbot, home, how):
    from studio.ui.app import create_window

    data = _damage(home, how)
    window = create_window(home, device="cpu")
    qtbot.addWidget(window)
    assert window.gallery is None and window.backend.use_gallery is False  # nothing writes into it
    assert_clear(window.statusBar().currentMessage(), "gallery.sqlite3", paths=(home,))
    window.close()
    assert (home / "gallery.sqlite3").read_bytes() == data
