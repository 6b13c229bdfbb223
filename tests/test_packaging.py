"""The packaging files: desktop entry, AppStream metainfo, icons, PyInstaller spec (all fast)."""

from __future__ import annotations

import configparser
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from studio.resources import ICONS

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
SIZES = (16, 32, 48, 64, 128, 256)


def test_desktop_entry_has_the_required_keys():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in desktop entries
    parser.read(PACKAGING / "studio.desktop", encoding="utf-8")
    entry = parser["Desktop Entry"]
    for key in ("Type", "Name", "Comment", "Exec", "Icon", "Categories", "MimeType", "Keywords"):
        assert entry.get(key), key
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == "studio"
    assert entry["Icon"] == "studio"
    assert {"Graphics", "2DGraphics", "RasterGraphics"} <= set(entry["Categories"].rstrip(";").split(";"))
    assert {"image/png", "image/jpeg", "image/webp"} <= set(entry["MimeType"].rstrip(";").split(";"))


def test_metainfo_names_the_app_and_its_launcher():
    path = PACKAGING / "io.github.studio.Studio.metainfo.xml"
    root = ET.parse(path).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == "io.github.studio.Studio"
    assert path.name == f"{root.findtext('id')}.metainfo.xml"
    launchable = root.find("launchable")
    assert launchable is not None and launchable.get("type") == "desktop-id"
    assert launchable.text == "studio.desktop"
    assert (PACKAGING / launchable.text).exists()
    assert root.findtext("provides/binary") == "studio"
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert root.findtext("project_license") == "MIT"
    assert root.find("content_rating") is not None
    release = root.find("releases/release")
    assert release is not None and release.get("version") == "0.1.0"


@pytest.mark.parametrize("size", SIZES)
def test_icon_exists_at_each_size(size):
    with Image.open(ICONS / "hicolor" / f"{size}x{size}" / "apps" / "studio.png") as im:
        assert im.size == (size, size)
        assert im.mode == "RGBA"
        # rounded corners are transparent, the centre is opaque
        assert im.getpixel((0, 0))[3] < 128
        assert im.getpixel((size // 2, size // 2))[3] == 255


def test_main_icon_is_256_rgba():
    with Image.open(ICONS / "studio.png") as im:
        assert im.size == (256, 256) and im.mode == "RGBA"
    assert (ICONS / "studio.ico").stat().st_size > 0


def test_app_icon_loads(qapp):
    from studio.ui.icons import app_icon

    icon = app_icon()
    assert not icon.isNull()
    assert {s.width() for s in icon.availableSizes()} >= {16, 32, 256}


def test_spec_compiles_and_names_the_entry_point():
    text = (PACKAGING / "studio.spec").read_text(encoding="utf-8")
    compile(text, "studio.spec", "exec")
    assert '"studio" / "__main__.py"' in text or "studio/__main__.py" in text
    assert (ROOT / "studio" / "__main__.py").exists()
    for name in ("StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline", "console=False"):
        assert name in text


def test_every_package_is_listed_for_the_wheel():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "studio").rglob("__init__.py")}
    assert found | {"studio._resources"} == listed


@pytest.mark.slow
def test_a_wheel_alone_carries_the_builtin_model_and_the_model_skeletons(tmp_path):
    """Build the wheel, install it alone into a folder, and generate from outside the checkout: the
    built-in model, the icons, the single-file skeletons and the CLIP tokenizer all come with it."""
    import subprocess
    import sys

    from studio.bench import checkpoint_files as F

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "w"), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "w").glob("studio-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "t"),
                    str(wheel)], check=True, capture_output=True)
    sdxl = F.write_checkpoint(tmp_path / "mine.safetensors", "sdxl")
    env = {"PYTHONPATH": str(tmp_path / "t"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    for model in ("builtin", str(sdxl)):
        done = subprocess.run([sys.executable, "-m", "studio", "--data-dir", str(tmp_path / "home"), "generate",
                               "--prompt", "a red circle", "--steps", "2", "--width", "64", "--height", "64",
                               "--model", model, "--out", str(tmp_path / "out.png"), "--json"],
                              cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert Image.open(tmp_path / "out.png").size == (64, 64)
    probe = subprocess.run([sys.executable, "-c", "import studio.resources as r; print(r.ROOT)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == str(tmp_path / "t" / "studio" / "_resources")


def _validator(tool: str, package: str) -> str:
    import shutil

    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian/Ubuntu: apt-get install {package})")
    return path


def test_desktop_entry_passes_desktop_file_validate():
    import subprocess

    done = subprocess.run([_validator("desktop-file-validate", "desktop-file-utils"),
                           str(PACKAGING / "studio.desktop")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_metainfo_passes_appstreamcli_validate():
    import subprocess

    done = subprocess.run([_validator("appstreamcli", "appstream"), "validate", "--no-net",
                           str(PACKAGING / "io.github.studio.Studio.metainfo.xml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_license_file_is_the_license_the_metainfo_names():
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    named = ET.parse(PACKAGING / "io.github.studio.Studio.metainfo.xml").getroot().findtext("project_license")
    assert named == "MIT"
    assert license_text.startswith("MIT License") and "Permission is hereby granted, free of charge" in license_text
    assert "The Studio developers" in license_text  # the copyright holder the metainfo names
