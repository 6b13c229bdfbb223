"""Hostile inputs made on the fly (no binary blobs in the repository) and the checks every case shares.

Each maker writes one file into a folder and returns its path. `assert_clear` is what "a clear message"
means in the hostile-input tests: something was said, it names what it is about, and it carries no
traceback and no Python class names (a designer cannot act on `UnidentifiedImageError`).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

# An exception class name (OSError, UnidentifiedImageError, SafetensorError) or a CamelCase identifier
# (HeaderTooLarge, StableDiffusionPipeline): words a person did not write for a person.
_CLASS_NAME = re.compile(r"\b[A-Z]\w*(?:Error|Exception|Warning)\b|\b[A-Z][a-z]+(?:[A-Z][a-z]+){2,}\b")


def assert_clear(message: str, *must_name: str, paths: tuple[Path, ...] = ()) -> None:
    """A message a designer can act on: present, no traceback, no class names, naming `must_name`."""
    text = message.strip()
    assert text, "no message at all"
    assert "Traceback" not in text and 'File "' not in text, text
    scrubbed = text
    for path in paths:  # the user's own file names may be CamelCase; they are not jargon
        scrubbed = scrubbed.replace(str(path), "").replace(path.name, "")
    assert not _CLASS_NAME.search(scrubbed), f"class name in: {text}"
    for name in must_name:
        assert name.lower() in text.lower(), f"{name!r} not named in: {text}"


# ----------------------------------------------------------------------------------- PNG by hand

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes) -> bytes:
    """A PNG from already filtered rows (each row: filter byte 0, then the samples)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw_rows, 9))
            + _chunk(b"IEND", b""))


def _gradient(size: int = 32) -> np.ndarray:
    x, y = np.meshgrid(np.arange(size), np.arange(size))
    return np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 120)], -1).astype(np.uint8)


def good_png(path: Path, size: int = 32) -> Path:
    Image.fromarray(_gradient(size), "RGB").save(path)
    return path


# ----------------------------------------------------------------------------------- hostile images

def corrupt(folder: Path) -> Path:
    """A PNG whose compressed pixel data is scrambled (signature and header intact)."""
    data = bytearray((good_png(folder / "source.png")).read_bytes())
    start = data.index(b"IDAT") + 4
    for i in range(start + 2, min(start + 200, len(data) - 16)):
        data[i] ^= 0x5A
    path = folder / "corrupt.png"
    path.write_bytes(bytes(data))
    return path


def truncated(folder: Path) -> Path:
    data = good_png(folder / "source.png").read_bytes()
    path = folder / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return path


def empty(folder: Path) -> Path:
    path = folder / "empty.png"
    path.write_bytes(b"")
    return path


def decompression_bomb(folder: Path) -> Path:
    """A valid 1-bit PNG of 14000x14000 pixels (196 Mpx) in about 20 KB: decoding it is the attack."""
    side = 14000
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    path = folder / "bomb.png"
    path.write_bytes(png_bytes(side, side, 1, 0, row * side))
    return path


def huge_header(folder: Path) -> Path:
    """A header claiming 20000x20000 RGB pixels, followed by a few rows of data."""
    path = folder / "huge-header.png"
    path.write_bytes(png_bytes(20000, 20000, 8, 2, (b"\x00" + b"\x80" * 60000) * 4))
    return path


def not_an_image(folder: Path) -> Path:
    path = folder / "notes.png"
    path.write_text("meeting notes, not a picture\n" * 20)
    return path


def grey_16bit(folder: Path) -> Path:
    values = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64).astype(np.uint16)
    path = folder / "grey16.png"
    Image.fromarray(values).save(path)  # uint16: mode "I;16"
    return path


def rgb_16bit(folder: Path) -> Path:
    """48-bit RGB (Pillow cannot write it; cameras and Photoshop do)."""
    samples = (_gradient().astype(">u2") * 257).tobytes()
    rows = b"".join(b"\x00" + samples[r * 32 * 6:(r + 1) * 32 * 6] for r in range(32))
    path = folder / "rgb48.png"
    path.write_bytes(png_bytes(32, 32, 16, 2, rows))
    return path


def cmyk(folder: Path) -> Path:
    path = folder / "print.jpg"
    Image.fromarray(_gradient(), "RGB").convert("CMYK").save(path, "JPEG", quality=95)
    return path


def palette_alpha(folder: Path) -> Path:
    """A palette PNG whose transparency is a per-entry alpha table (tRNS), as web tools write them."""
    image = Image.fromarray(_gradient(), "RGB").quantize(16)
    path = folder / "palette.png"
    image.save(path, transparency=bytes([0, 128] + [255] * 14))
    return path


BROKEN: dict[str, Callable[[Path], Path]] = {
    "corrupt": corrupt, "truncated": truncated, "empty": empty, "decompression-bomb": decompression_bomb,
    "20000x20000-header": huge_header, "not-an-image": not_an_image,
}
# What a person should read for each, in some form.
BROKEN_REASON = {
    "corrupt": "corrupt", "truncated": "cut short", "empty": "empty", "decompression-bomb": "too large",
    "20000x20000-header": "too large", "not-an-image": "not an image",
}
UNUSUAL: dict[str, Callable[[Path], Path]] = {
    "16-bit-grey": grey_16bit, "16-bit-rgb": rgb_16bit, "cmyk": cmyk, "palette-with-alpha": palette_alpha,
}


# ----------------------------------------------------------------------------------- model files

def truncated_safetensors(folder: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    whole = folder / "whole.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, str(whole))
    data = whole.read_bytes()
    path = folder / "cut.safetensors"
    path.write_bytes(data[: len(data) // 3])
    return path


def png_named_safetensors(folder: Path) -> Path:
    path = folder / "renamed.safetensors"
    path.write_bytes(good_png(folder / "source.png").read_bytes())
    return path


def wrong_architecture(folder: Path) -> Path:
    """A real safetensors file of something else (an image classifier's layers)."""
    import torch
    from safetensors.torch import save_file

    path = folder / "classifier.safetensors"
    save_file({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)}, str(path))
    return path


class _Payload:
    """Unpickling this writes a file: proof that code from the model file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.marker, "pwned"))


def pickle_with_code(folder: Path) -> Path:
    """A .ckpt whose unpickling would run code (writes a marker file next to it)."""
    import torch

    path = folder / "evil.ckpt"
    torch.save({"state_dict": {"x": _Payload(folder / "PWNED")}}, str(path))
    return path


def raw_pickle(folder: Path) -> Path:
    """A bare pickle (not torch's zip layout) named .pt."""
    path = folder / "bare.pt"
    path.write_bytes(pickle.dumps({"state_dict": _Payload(folder / "PWNED")}))
    return path


def empty_safetensors(folder: Path) -> Path:
    path = folder / "zero.safetensors"
    path.write_bytes(b"")
    return path


def giant_header_safetensors(folder: Path) -> Path:
    """A header length of 2**62 bytes: a reader that believes it allocates forever."""
    path = folder / "giant-header.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    return path


MODELS: dict[str, Callable[[Path], Path]] = {
    "truncated": truncated_safetensors, "png-renamed": png_named_safetensors,
    "wrong-architecture": wrong_architecture, "pickle-with-code": pickle_with_code, "bare-pickle": raw_pickle,
    "zero-bytes": empty_safetensors, "giant-header": giant_header_safetensors,
}


# ----------------------------------------------------------------------------------- the gallery

def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
