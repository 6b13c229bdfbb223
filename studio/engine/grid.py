"""Comparison grids (X/Y/Z plots): one request varied along up to three axes, every cell generated,
and one labelled grid image drawn with Pillow. No Qt here.

Axes are written as in `--x cfg=2,4,6` or `--y seed=1..4`: a kind, then values separated by commas
(CSV, so a value may be quoted) or an inclusive range `a..b` with an optional step `a..b:s`. The
prompt axis is A1111's Prompt S/R: its first value is the text searched for in the prompt, and every
value in turn replaces it (so the first cell keeps the prompt as written).
"""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from studio.recipe.request import SCHEDULERS, GenerationRequest, GenerationResult, RequestError, StepInfo

if TYPE_CHECKING:
    from studio.engine.generate import Engine, StepCallback, StopCheck

MAX_CELLS = 100
MIN_CELL_PX = 128  # small pictures are drawn larger in the grid image (nearest, so pixels stay pixels)
_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::[^>]*)?>", re.IGNORECASE)


class AxisKind(str, Enum):
    SEED = "seed"
    CFG = "cfg"
    STEPS = "steps"
    SAMPLER = "sampler"
    PROMPT = "prompt"  # search/replace
    MODEL = "model"
    LORA = "lora"  # the weight of every <lora:...> tag in the prompt
    DENOISE = "denoise"  # img2img strength, or the hires denoise with hires fix on


_NUMBERS: dict[AxisKind, type] = {AxisKind.SEED: int, AxisKind.STEPS: int, AxisKind.CFG: float,
                                  AxisKind.LORA: float, AxisKind.DENOISE: float}


@dataclass(frozen=True)
class Axis:
    kind: AxisKind
    values: tuple[Any, ...]

    def label(self, value: Any) -> str:
        text = f"{value:g}" if isinstance(value, float) else str(value)
        names = {AxisKind.SEED: "seed", AxisKind.CFG: "CFG", AxisKind.STEPS: "steps", AxisKind.LORA: "LoRA",
                 AxisKind.DENOISE: "denoise"}
        return f"{names[self.kind]} {text}" if self.kind in names else text

    def apply(self, request: GenerationRequest, value: Any) -> GenerationRequest:
        kind = self.kind
        if kind is AxisKind.SEED:
            return replace(request, seed=value)
        if kind is AxisKind.CFG:
            return replace(request, cfg=value)
        if kind is AxisKind.STEPS:
            return replace(request, steps=value)
        if kind is AxisKind.SAMPLER:
            return replace(request, scheduler=value)
        if kind is AxisKind.MODEL:
            return replace(request, model=value)
        if kind is AxisKind.PROMPT:
            return replace(request, prompt=request.prompt.replace(self.values[0], value))
        if kind is AxisKind.LORA:
            return replace(request, prompt=_LORA_TAG.sub(lambda m: f"<lora:{m.group(1)}:{value:g}>", request.prompt))
        if request.init_image is not None:  # DENOISE
            return replace(request, strength=value)
        return replace(request, hires_denoise=value)

    def as_dict(self) -> dict[str, Any]:
        return {"axis": self.kind.value, "values": list(self.values)}


def parse_axis(text: str) -> Axis:
    """`kind=v1,v2,...` or `kind=a..b[:step]` -> an Axis; a RequestError says what is wrong."""
    name, sep, rest = text.partition("=")
    kinds = ", ".join(k.value for k in AxisKind)
    try:
        kind = AxisKind(name.strip().lower())
    except ValueError:
        raise RequestError(f"unknown grid axis {name.strip()!r}: choose one of {kinds} (as in cfg=2,4,6)") from None
    if not sep or not rest.strip():
        raise RequestError(f"the {kind.value} axis has no values: write {kind.value}=v1,v2,... or a range a..b")
    convert = _NUMBERS.get(kind, str)
    values = _range(rest, convert) if ".." in rest and convert is not str else _list(rest, convert, kind)
    if not values:
        raise RequestError(f"the {kind.value} axis has no values")
    if kind is AxisKind.SAMPLER:
        for value in values:
            if value not in SCHEDULERS:
                raise RequestError(f"unknown sampler {value!r} on the sampler axis; "
                                   f"choose from {', '.join(SCHEDULERS)}")
    return Axis(kind, tuple(values))


def _list(text: str, convert: type, kind: AxisKind) -> list[Any]:
    items = [v.strip() for v in next(csv.reader([text], skipinitialspace=True), []) if v.strip()]
    try:
        return [convert(v) for v in items]
    except ValueError:
        raise RequestError(f"the {kind.value} axis takes numbers (got {text.strip()!r})") from None


def _range(text: str, convert: type) -> list[Any]:
    span, _, step_text = text.partition(":")
    low_text, _, high_text = span.partition("..")
    try:
        low, high = convert(low_text.strip()), convert(high_text.strip())
        step = convert(step_text.strip()) if step_text.strip() else convert(1)
    except ValueError:
        raise RequestError(f"a range is written a..b or a..b:step (got {text.strip()!r})") from None
    if step <= 0 or high < low:
        raise RequestError(f"the range {text.strip()!r} is empty: write it from low to high with a positive step")
    count = int(math.floor((high - low) / step + 1e-9)) + 1
    if count > MAX_CELLS:
        raise RequestError(f"the range {text.strip()!r} has {count} values; a grid holds at most {MAX_CELLS} cells")
    return [convert(round(low + k * step, 10)) for k in range(count)]


@dataclass
class Cell:
    x: int
    y: int
    z: int
    request: GenerationRequest


@dataclass
class GridSpec:
    """A base request and its axes (x first; y and z may be absent)."""

    base: GenerationRequest
    axes: list[Axis]

    def shape(self) -> tuple[int, int, int]:
        sizes = [len(a.values) for a in self.axes] + [1, 1, 1]
        return sizes[0], sizes[1], sizes[2]

    def cells(self) -> list[Cell]:
        """Every cell, z then y then x (reading order), each a checked single-image request."""
        nx, ny, nz = self.shape()
        if nx * ny * nz > MAX_CELLS:
            raise RequestError(f"{nx} x {ny} x {nz} = {nx * ny * nz} cells; a grid holds at most {MAX_CELLS}")
        self._check_axes()
        out = []
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    request = replace(self.base, batch_size=1)
                    for axis, index in zip(self.axes, (x, y, z)):
                        request = axis.apply(request, axis.values[index])
                    out.append(Cell(x, y, z, request.validate()))
        return out

    def _check_axes(self) -> None:
        kinds = [a.kind for a in self.axes]
        if len(set(kinds)) != len(kinds):
            raise RequestError("each grid axis must vary something different (two axes are the same kind)")
        for axis in self.axes:
            if axis.kind is AxisKind.PROMPT and axis.values[0] not in self.base.prompt:
                raise RequestError(f"the prompt axis searches for {axis.values[0]!r}, which is not in the prompt")
            if axis.kind is AxisKind.LORA and not _LORA_TAG.search(self.base.prompt):
                raise RequestError("the LoRA axis sets the weight of the prompt's <lora:name:weight> tags; "
                                   "the prompt has none")
            if axis.kind is AxisKind.DENOISE and self.base.init_image is None and self.base.hires_scale is None:
                raise RequestError("the denoise axis needs a start image (image-to-image) or hires fix")

    def labels(self) -> tuple[list[str], list[str], list[str]]:
        axes = self.axes + [Axis(AxisKind.SEED, ())] * (3 - len(self.axes))
        return ([axes[0].label(v) for v in axes[0].values] or [""], [axes[1].label(v) for v in axes[1].values] or [""],
                [axes[2].label(v) for v in axes[2].values] or [""])

    def as_dict(self) -> dict[str, Any]:
        return {name: axis.as_dict() for name, axis in zip("xyz", self.axes)}


@dataclass
class GridResult:
    grid: GenerationResult  # the labelled grid image
    cells: list[GenerationResult]  # reading order, z then y then x


def run(engine: Engine, spec: GridSpec, on_step: StepCallback | None = None, should_stop: StopCheck | None = None,
        on_cell: Callable[[int, GenerationResult], None] | None = None, preview_interval: float = 0.0) -> GridResult:
    """Every cell in turn (grouped by model, so each model loads once), progress counted over the grid."""
    cells = spec.cells()
    order = sorted(range(len(cells)), key=lambda k: _model_rank(spec, cells[k]))
    start = time.perf_counter()
    done: dict[int, GenerationResult] = {}
    for k in order:
        def step(info: StepInfo, k: int = k) -> None:
            if on_step is not None:
                on_step(replace(info, item=k, items=len(cells), elapsed=time.perf_counter() - start))

        [result] = engine.generate(cells[k].request, on_step=step, should_stop=should_stop,
                                   preview_interval=preview_interval)
        result.recipe["grid_cell"] = {"x": cells[k].x, "y": cells[k].y, "z": cells[k].z}
        done[k] = result
        if on_cell is not None:
            on_cell(k, result)
    results = [done[k] for k in range(len(cells))]
    image = draw_grid(spec, [r.image for r in results])
    recipe = {**{key: value for key, value in results[0].recipe.items() if key != "grid_cell"},
              "grid": spec.as_dict(), "seconds": round(time.perf_counter() - start, 3)}
    return GridResult(GenerationResult(image, results[0].seed, recipe, recipe["seconds"]), results)


def _model_rank(spec: GridSpec, cell: Cell) -> int:
    for axis in spec.axes:
        if axis.kind is AxisKind.MODEL:
            return axis.values.index(cell.request.model)
    return 0


# ---------------------------------------------------------------------------------- the grid image

def draw_grid(spec: GridSpec, images: list[Image.Image]) -> Image.Image:
    """The cells in rows (y) and columns (x), one block per z value side by side, labels on top and left."""
    nx, ny, nz = spec.shape()
    xs, ys, zs = spec.labels()
    first = images[0]
    zoom = max(1, math.ceil(MIN_CELL_PX / min(first.size)))
    cw, ch = first.width * zoom, first.height * zoom
    size = max(12, min(cw, ch) // 9)
    font, pad = _font(size), size // 2
    left = max(_text_width(font, t) for t in ys) + 2 * pad if ny > 1 else pad
    top = (size + 2 * pad) * (2 if nz > 1 else 1)
    block_w = left + nx * cw + pad
    canvas = Image.new("RGB", (block_w * nz, top + ny * ch + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for z in range(nz):
        x0 = z * block_w
        if nz > 1:
            _centred(draw, font, zs[z], x0 + left + nx * cw / 2, pad)
        for x in range(nx):
            _centred(draw, font, xs[x], x0 + left + x * cw + cw / 2, top - size - pad)
        for y in range(ny):
            if ny > 1:
                draw.text((x0 + pad, top + y * ch + ch / 2), ys[y], fill="black", font=font, anchor="lm")
            for x in range(nx):
                cell = images[(z * ny + y) * nx + x].convert("RGB")
                cell = cell.resize((cw, ch), Image.Resampling.NEAREST) if cell.size != (cw, ch) else cell
                canvas.paste(cell, (x0 + left + x * cw, top + y * ch))
    return canvas


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # FreeType's bundled font in Pillow >= 10.1
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def _text_width(font: Any, text: str) -> int:
    box = font.getbbox(text)
    return int(box[2] - box[0])


def _centred(draw: ImageDraw.ImageDraw, font: Any, text: str, cx: float, y: float) -> None:
    draw.text((cx, y), text, fill="black", font=font, anchor="ma")
