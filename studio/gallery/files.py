"""Image files: atomic durable writes, file names, thumbnails, export. No database here.

Durable write = write a temporary file in the target folder, fsync it, rename it into place, fsync
the folder. After a crash a file is either absent or complete; a temporary file left behind starts
with `.tmp-` and is swept by the gallery's reconcile.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import re
import secrets
import shutil
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from studio.gallery.errors import GalleryError, translated
from studio.images import usable_mode
from studio.recipe import metadata

TEMP_PREFIX = ".tmp-"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
EXPORT_FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp"}
MAX_NAME_BYTES = 150  # well under every filesystem's 255-byte limit, leaving room for "-12.webp"
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # Windows: directory entries are durable once the rename returns
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; nothing more can be done there
    finally:
        os.close(fd)


def write_temp(folder: Path, data: bytes, suffix: str) -> Path:
    """Write `data` to a new fsynced temporary file in `folder`; on failure nothing is left."""
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}"
    try:
        with open(temp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def atomic_write(path: Path, data: bytes) -> None:
    """Durably put `data` at `path` (replacing it): temp file, fsync, rename, fsync folder."""
    temp = write_temp(path.parent, data, path.suffix)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------- names

def sanitize_name(text: str, fallback: str = "image") -> str:
    """A file name stem safe on every OS: no separators, control or reserved characters/names."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(c if c.isprintable() else " " for c in text)
    text = re.sub(r'[<>:"/\\|?*\x00-\x1f]', " ", text)
    text = re.sub(r"[\s,;]+", "_", text.strip())
    text = re.sub(r"_+", "_", text).strip("._- ")
    encoded = text.encode("utf-8")[:MAX_NAME_BYTES]
    text = encoded.decode("utf-8", errors="ignore").rstrip("._- ")
    if not text:
        return fallback
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = f"_{text}"
    return text


def expand_template(template: str, fields: Mapping[str, Any]) -> str:
    """Fill `{name}` fields; only plain names (no attribute or index access, unlike str.format)."""
    def field(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fields:
            raise GalleryError(f"unknown field {{{name}}} in the file name template; use: "
                               + ", ".join(f"{{{k}}}" for k in fields))
        return str(fields[name])

    return _TEMPLATE_FIELD.sub(field, template)


def image_folder(root: Path, created: dt.datetime) -> Path:
    """images/YYYY/MM: months keep folders small enough for file managers."""
    return root / "images" / f"{created:%Y}" / f"{created:%m}"


def input_path(root: Path, digest: str) -> Path:
    """inputs/<hash>.png: the init images and masks generations were made from, kept so recipes replay.
    Outside images/, so the reconcile scan never takes them for gallery pictures."""
    return root / "inputs" / f"{digest}.png"


def new_image_name(created: dt.datetime, seed: Any, suffix: str = ".png") -> str:
    """`YYYYMMDD-HHMMSS-<random>-<seed>.png`: sorts by date, unique without knowing the row id."""
    seed_part = f"-{seed}" if isinstance(seed, int) else ""
    return f"{created:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}{seed_part}{suffix}"


def unused_path(folder: Path, stem: str, suffix: str) -> Path:
    """`stem.suffix`, or `stem-1.suffix`, `stem-2.suffix`, ... : the first that does not exist."""
    candidate = folder / f"{stem}{suffix}"
    counter = 0
    while candidate.exists():
        counter += 1
        candidate = folder / f"{stem}-{counter}{suffix}"
    return candidate


def reserve_path(folder: Path, stem: str, suffix: str) -> Path:
    """Create an empty file at the first unused name, atomically (O_EXCL), so no one else takes it."""
    counter = 0
    while True:
        candidate = folder / (f"{stem}{suffix}" if counter == 0 else f"{stem}-{counter}{suffix}")
        try:
            with open(candidate, "xb"):
                return candidate
        except FileExistsError:
            counter += 1


# ----------------------------------------------------------------------------------- thumbnails

def thumbnail_path(cache: Path, relative: str, size: int) -> Path:
    key = hashlib.sha1(relative.encode("utf-8")).hexdigest()[:20]
    return cache / str(size) / key[:2] / f"{key}.jpg"


def remove_thumbnails(cache: Path, relative: str) -> None:
    """Drop an image's thumbnails at every size (the cache has one folder per size)."""
    if cache.is_dir():
        for size_dir in cache.iterdir():
            if size_dir.name.isdigit():
                thumbnail_path(cache, relative, int(size_dir.name)).unlink(missing_ok=True)


def make_thumbnail(source: Path, target: Path, size: int) -> Path:
    """A JPEG no larger than size x size; made once, remade if missing or older than the image."""
    try:
        if target.stat().st_mtime >= source.stat().st_mtime:
            return target
    except FileNotFoundError:
        pass
    with translated(f"make a thumbnail of {source.name}"):
        try:
            with Image.open(source) as image:
                image.draft("RGB", (size, size))  # JPEG decodes at reduced scale: much faster
                image.thumbnail((size, size), Image.Resampling.LANCZOS)
                thumb = _flatten(image)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise GalleryError(f"cannot read {source.name}: {exc}") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        # A cache: no fsync, but still write-then-rename so a reader never sees half a file.
        temp = target.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}.jpg")
        try:
            thumb.save(temp, "JPEG", quality=88)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    return target


def _flatten(image: Image.Image) -> Image.Image:
    image = usable_mode(image)  # a 16-bit grey would clip to white
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (128, 128, 128))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


# ----------------------------------------------------------------------------------- export

def export_bytes(source: Path, recipe: dict[str, Any], fmt: str, strip_metadata: bool) -> bytes:
    """The exported file's content. PNG keeps its chunks; JPEG/WebP get `parameters` in EXIF."""
    if fmt == "png" and not strip_metadata and source.suffix.lower() == ".png":
        return source.read_bytes()  # byte-exact copy: keeps every chunk, including other tools'
    with Image.open(source) as opened:
        image = opened.copy()
    buffer = io.BytesIO()
    has_recipe = bool(recipe) and not strip_metadata
    if fmt == "png":
        if has_recipe and recipe.get("source", "studio") == "studio":
            image.save(buffer, "PNG", pnginfo=metadata.png_info(recipe))
        elif has_recipe:
            info = metadata.PngImagePlugin.PngInfo()
            info.add_text("parameters", metadata.format_parameters(recipe))
            image.save(buffer, "PNG", pnginfo=info)
        else:
            image.save(buffer, "PNG")
        return buffer.getvalue()
    extra: dict[str, Any] = {}
    if has_recipe:
        extra["exif"] = metadata.exif_with_parameters(metadata.format_parameters(recipe))
    if fmt == "jpeg":
        _flatten(image).save(buffer, "JPEG", quality=95, **extra)
    else:
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if image.has_transparency_data else "RGB")
        image.save(buffer, "WEBP", quality=95, method=4, **extra)
    return buffer.getvalue()


def write_export(folder: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Write an export without ever overwriting: reserve a free name, then fill it atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    target = reserve_path(folder, stem, suffix)
    try:
        temp = write_temp(folder, data, suffix)
        os.replace(temp, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def copy_into(source: Path, folder: Path, name: str) -> Path:
    """Durably copy a file into `folder` under a fresh name (for imports)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = unused_path(folder, Path(name).stem, Path(name).suffix)
    temp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}{target.suffix}"
    try:
        shutil.copyfile(source, temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    return target
