"""The procedural world the built-in model learns: coloured shapes and landscapes, with captions.

Everything is drawn at 4x the output size and box-filtered down, which gives clean anti-aliased
edges. A scene is fully determined by its `random.Random`, so the data set is reproducible.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

SIZE = 64  # the model's training resolution
SUPER = 4  # supersampling factor for anti-aliasing

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 220, 40),
    "green": (50, 170, 60),
    "blue": (40, 90, 220),
    "purple": (140, 60, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = {"small": 6.0, "large": 11.0}  # radius in output pixels
POSITIONS: dict[str, tuple[float, float]] = {
    "on the left": (16.0, 32.0),
    "on the right": (48.0, 32.0),
    "at the top": (32.0, 16.0),
    "at the bottom": (32.0, 48.0),
    "in the center": (32.0, 32.0),
}
# Two objects only in positions that cannot overlap, so each stays recognisable.
POSITION_PAIRS = (("on the left", "on the right"), ("at the top", "at the bottom"))
TIMES = ("day", "sunset", "night")
FEATURES = ("mountains", "hills", "a lake", "a forest", "clouds")
# Colour/shape pairs never shown in training, to measure how the model generalises.
HELD_OUT = frozenset({("purple", "star"), ("yellow", "square"), ("green", "triangle"), ("orange", "circle")})

SKY = {  # (top, horizon) colours
    "day": ((70, 130, 220), (170, 210, 240)),
    "sunset": ((60, 40, 110), (250, 140, 60)),
    "night": ((8, 10, 35), (30, 40, 80)),
}


@dataclass(frozen=True)
class ShapeObject:
    size: str
    colour: str
    shape: str
    position: str

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape} {self.position}"


@dataclass(frozen=True)
class ShapeScene:
    objects: tuple[ShapeObject, ...]
    background: str
    kind: str = field(default="shapes", init=False)

    def caption(self) -> str:
        return " and ".join(o.phrase() for o in self.objects) + f", {self.background} background"


@dataclass(frozen=True)
class LandscapeScene:
    time: str
    features: tuple[str, ...]
    kind: str = field(default="landscape", init=False)

    def caption(self) -> str:
        f = list(self.features)
        listed = f[0] if len(f) == 1 else ", ".join(f[:-1]) + " and " + f[-1]
        return f"a {self.time} landscape with {listed}"


Scene = ShapeScene | LandscapeScene


def vocabulary() -> list[str]:
    """Every word a caption can contain (the tokenizer is built from this)."""
    words: set[str] = {"a", "and", "background", "landscape", "with", ","}
    words.update(COLOURS, SHAPES, SIZES, TIMES)
    for text in (*POSITIONS, *FEATURES):
        words.update(text.split())
    return sorted(words)


def random_shape_object(rng: random.Random, position: str, avoid: str, allow_held_out: bool) -> ShapeObject:
    while True:
        colour = rng.choice([c for c in COLOURS if c != avoid])
        shape = rng.choice(SHAPES)
        if allow_held_out or (colour, shape) not in HELD_OUT:
            return ShapeObject(rng.choice(list(SIZES)), colour, shape, position)


def random_scene(rng: random.Random, allow_held_out: bool = False) -> Scene:
    """A training scene: 60% one shape, 15% two shapes, 25% landscape."""
    r = rng.random()
    if r < 0.75:
        background = rng.choice(list(COLOURS))
        positions = rng.choice(POSITION_PAIRS) if r >= 0.60 else (rng.choice(list(POSITIONS)),)
        if len(positions) == 2 and rng.random() < 0.5:
            positions = positions[::-1]
        objects = tuple(random_shape_object(rng, p, background, allow_held_out) for p in positions)
        return ShapeScene(objects, background)
    features = tuple(rng.sample(FEATURES, rng.choice((1, 2, 2, 3))))
    return LandscapeScene(rng.choice(TIMES), features)


def _jitter(colour: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)  # type: ignore[return-value]


def _lerp(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        h = 0.85 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        R = 1.2 * r
        return [(cx + R * math.cos(a), cy + 0.15 * r + R * math.sin(a))
                for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "star":
        pts = []
        for k in range(10):
            radius = 1.25 * r if k % 2 == 0 else 0.5 * r
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
        return pts
    raise ValueError(shape)


def _draw_shape(draw: ImageDraw.ImageDraw, obj: ShapeObject, rng: random.Random) -> None:
    cx, cy = POSITIONS[obj.position]
    cx += rng.uniform(-2, 2)
    cy += rng.uniform(-2, 2)
    r = SIZES[obj.size] * rng.uniform(0.92, 1.08)
    fill = _jitter(COLOURS[obj.colour], rng, 10)
    s = SUPER
    if obj.shape == "circle":
        draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=fill)
    else:
        draw.polygon([(x * s, y * s) for x, y in _shape_points(obj.shape, cx, cy, r)], fill=fill)


def _render_shapes(scene: ShapeScene, rng: random.Random) -> Image.Image:
    n = SIZE * SUPER
    base = _jitter(COLOURS[scene.background], rng, 8)
    img = Image.new("RGB", (n, n))
    draw = ImageDraw.Draw(img)
    shade = rng.uniform(0.0, 0.08)  # a soft top-to-bottom light falloff
    for y in range(0, n, SUPER):
        t = 1.0 - shade * y / n
        draw.rectangle([0, y, n, y + SUPER], fill=tuple(int(c * t + (1 - t) * 0) for c in base))
    for obj in scene.objects:
        _draw_shape(draw, obj, rng)
    return img


def _render_landscape(scene: LandscapeScene, rng: random.Random) -> Image.Image:
    # The scene is drawn twice as wide as the frame and cropped at a random offset: features run
    # past the edges, so outpainting has something to continue.
    s = SUPER
    w, h = 2 * SIZE * s, SIZE * s
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    top, horizon_colour = SKY[scene.time]
    top = _jitter(top, rng, 8)
    horizon_colour = _jitter(horizon_colour, rng, 8)
    horizon = rng.uniform(36, 42) * s
    for y in range(0, h, s):
        draw.rectangle([0, y, w, y + s], fill=_lerp(top, horizon_colour, min(1.0, y / horizon)))
    if scene.time == "night":
        for _ in range(rng.randint(20, 40)):
            x, y = rng.uniform(0, w), rng.uniform(0, horizon * 0.8)
            draw.rectangle([x, y, x + s, y + s], fill=(235, 235, 255))
        mx, my = rng.uniform(0.2, 0.8) * w, rng.uniform(8, 16) * s
        draw.ellipse([mx - 4 * s, my - 4 * s, mx + 4 * s, my + 4 * s], fill=(235, 235, 210))
    elif scene.time == "day":
        sx, sy = rng.uniform(0.2, 0.8) * w, rng.uniform(8, 16) * s
        draw.ellipse([sx - 5 * s, sy - 5 * s, sx + 5 * s, sy + 5 * s], fill=(255, 240, 150))
    else:
        sx = rng.uniform(0.2, 0.8) * w
        draw.ellipse([sx - 7 * s, horizon - 9 * s, sx + 7 * s, horizon + 5 * s], fill=(255, 110, 50))
    dim = {"day": 1.0, "sunset": 0.7, "night": 0.3}[scene.time]

    def tone(c: tuple[int, int, int]) -> tuple[int, int, int]:
        return _jitter(tuple(int(v * dim) for v in c), rng, 6)  # type: ignore[arg-type]

    if "clouds" in scene.features:
        cloud = {"day": (240, 240, 245), "sunset": (250, 180, 160), "night": (70, 70, 90)}[scene.time]
        for _ in range(rng.randint(3, 6)):
            cx, cy = rng.uniform(0, w), rng.uniform(6, 24) * s
            for _ in range(3):
                dx, rw, rh = rng.uniform(-6, 6) * s, rng.uniform(5, 9) * s, rng.uniform(2, 4) * s
                draw.ellipse([cx + dx - rw, cy - rh, cx + dx + rw, cy + rh], fill=cloud)
    if "mountains" in scene.features:
        pts = [(0.0, horizon)]
        x = -rng.uniform(0, 20) * s
        while x < w + 20 * s:
            peak = horizon - rng.uniform(12, 24) * s
            half = rng.uniform(10, 18) * s
            pts += [(x, horizon), (x + half, peak), (x + 2 * half, horizon)]
            x += rng.uniform(1.2, 1.8) * half
        pts.append((float(w), horizon))
        draw.polygon(pts, fill=tone((110, 115, 140)))
    ground = tone((90, 160, 70))
    draw.rectangle([0, horizon, w, h], fill=ground)
    if "hills" in scene.features:
        phase, amp, period = rng.uniform(0, 6.28), rng.uniform(4, 7) * s, rng.uniform(30, 50) * s
        pts = [(float(x), horizon - amp * (0.6 + 0.4 * math.sin(phase + 2 * math.pi * x / period)))
               for x in range(0, w + s, s)]
        draw.polygon([(0.0, float(h))] + pts + [(float(w), float(h))], fill=tone((60, 150, 70)))
    if "a forest" in scene.features:
        x = -rng.uniform(0, 4) * s
        base_y = horizon + 2 * s
        while x < w:
            tree_h, tree_w = rng.uniform(7, 11) * s, rng.uniform(2.5, 4) * s
            draw.polygon([(x - tree_w, base_y), (x, base_y - tree_h), (x + tree_w, base_y)], fill=tone((25, 90, 40)))
            x += rng.uniform(2, 4) * s
    if "a lake" in scene.features:
        lake_top = rng.uniform(48, 53) * s
        water = _lerp(horizon_colour, (30, 60, 140), 0.5)
        draw.rectangle([0, lake_top, w, h], fill=tone(water))
        for _ in range(6):
            y, x = rng.uniform(lake_top + s, h), rng.uniform(0, w)
            draw.rectangle([x, y, x + rng.uniform(4, 10) * s, y + s * 0.6], fill=_lerp(water, (255, 255, 255), 0.25))
    offset = int(rng.uniform(0, SIZE) * s)
    return img.crop((offset, 0, offset + SIZE * s, h))


def render(scene: Scene, rng: random.Random) -> Image.Image:
    """Render `scene` at SIZE x SIZE, anti-aliased, with small random jitter from `rng`."""
    big = _render_shapes(scene, rng) if isinstance(scene, ShapeScene) else _render_landscape(scene, rng)
    return big.resize((SIZE, SIZE), Image.Resampling.BOX)


def sample(seed: int, allow_held_out: bool = False) -> tuple[Scene, Image.Image]:
    """The scene and image of data-set item `seed`."""
    rng = random.Random(seed)
    scene = random_scene(rng, allow_held_out)
    return scene, render(scene, rng)
