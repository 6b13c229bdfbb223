"""Draw the Studio application icon with Pillow and write it into resources/icons/.

The picture is the built-in model's procedural world at sunset (studio/builtin/world.py): a rounded
square holding a soft sky gradient, a low sun and a mountain silhouette. Every size is drawn at 4x
and downsampled (Lanczos) so edges are anti-aliased.

    python packaging/make_icon.py            # writes the files below (cheap: well under a second)

Output:
    resources/icons/studio.png                       256 x 256, the window icon
    resources/icons/hicolor/NxN/apps/studio.png      N in 16 32 48 64 128 256 (freedesktop theme layout)
    resources/icons/studio.ico                       Windows (16..256 in one file)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZES = (16, 32, 48, 64, 128, 256)
OVERSAMPLE = 4
ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"

# Sunset palette, after world.SKY["sunset"] = (top (60, 40, 110), horizon (250, 140, 60)), with a pink
# stop between them so the sky reads as a soft gradient rather than a hard purple/orange split.
SKY_STOPS = ((0.00, (60, 40, 110)), (0.42, (200, 88, 120)), (0.72, (250, 140, 60)))
SUN = (255, 214, 128)
SUN_GLOW = (255, 190, 110)
RANGE_BACK = (146, 78, 118)   # distant ridge, hazed towards the sky
RANGE_FRONT = (52, 34, 78)    # near ridge: the silhouette
SNOW = (236, 196, 200)        # a touch of sunset light on the highest peak


def _lerp(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, ...]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def _sky(t: float) -> tuple[int, ...]:
    for (t0, c0), (t1, c1) in zip(SKY_STOPS, SKY_STOPS[1:]):
        if t <= t1:
            return _lerp(c0, c1, max(0.0, (t - t0) / (t1 - t0)))
    return SKY_STOPS[-1][1]


def draw_icon(size: int) -> Image.Image:
    """The icon as an RGBA image of `size` x `size`."""
    s = size * OVERSAMPLE
    # Inset a little (the freedesktop guidelines leave room for the shape to breathe), none at 16 px.
    margin = 0 if size <= 16 else round(s / 32)
    box = s - 2 * margin

    def px(u: float, v: float) -> tuple[float, float]:
        """Unit coordinates inside the rounded square -> pixels on the canvas."""
        return margin + u * box, margin + v * box

    art = Image.new("RGB", (s, s))
    draw = ImageDraw.Draw(art)
    for y in range(s):
        draw.line([(0, y), (s, y)], fill=_sky((y - margin) / box))

    # The sun, low over the ridge, with a soft glow around it.
    cx, cy = px(0.62, 0.50)
    r = 0.17 * box
    glow = Image.new("L", (s, s), 0)
    ImageDraw.Draw(glow).ellipse([cx - 1.7 * r, cy - 1.7 * r, cx + 1.7 * r, cy + 1.7 * r], fill=110)
    glow = glow.filter(ImageFilter.GaussianBlur(0.45 * r))
    art.paste(Image.new("RGB", (s, s), SUN_GLOW), mask=glow)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=SUN)

    # Distant ridge, then the near silhouette in front of the sun's lower half.
    back = [(-0.05, 0.78), (0.10, 0.56), (0.22, 0.64), (0.38, 0.47), (0.55, 0.66), (0.70, 0.58),
            (0.86, 0.70), (1.05, 0.60), (1.05, 1.05), (-0.05, 1.05)]
    draw.polygon([px(u, v) for u, v in back], fill=RANGE_BACK)
    front = [(-0.05, 0.80), (0.16, 0.66), (0.30, 0.74), (0.50, 0.52), (0.64, 0.64), (0.74, 0.59),
             (1.05, 0.84), (1.05, 1.05), (-0.05, 1.05)]
    draw.polygon([px(u, v) for u, v in front], fill=RANGE_FRONT)
    if size >= 32:  # a snow cap: at 16 px it would only muddy the peak
        cap = [(0.50, 0.52), (0.555, 0.573), (0.525, 0.565), (0.50, 0.585), (0.47, 0.565), (0.44, 0.574)]
        draw.polygon([px(u, v) for u, v in cap], fill=SNOW)

    radius = round(0.22 * box)
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).rounded_rectangle([margin, margin, s - margin - 1, s - margin - 1],
                                           radius=radius, fill=255)
    icon = art.convert("RGBA")
    icon.putalpha(mask)
    return icon.resize((size, size), Image.Resampling.LANCZOS)


def write_icons(out: Path = ICONS) -> list[Path]:
    """Write every size under `out`; return the paths written."""
    written: list[Path] = []
    images = {n: draw_icon(n) for n in SIZES}
    for n, image in images.items():
        path = out / "hicolor" / f"{n}x{n}" / "apps" / "studio.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, optimize=True)
        written.append(path)
    main = out / "studio.png"
    images[256].save(main, optimize=True)
    written.append(main)
    ico = out / "studio.ico"
    images[256].save(ico, sizes=[(n, n) for n in SIZES])
    written.append(ico)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ICONS, help="icons folder (default: resources/icons)")
    args = parser.parse_args(argv)
    for path in write_icons(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
