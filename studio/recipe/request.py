"""The one record that carries a whole generation, and what comes back.

A `GenerationRequest` is immutable and validated up front, so nothing downstream has to guess: the
GUI, the CLI and a stored recipe all build the same record, and the same record replays an image.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from studio.recipe import samplers
from studio.recipe.errors import StudioError

if TYPE_CHECKING:
    from PIL import Image

Mode = Literal["txt2img", "img2img", "inpaint", "outpaint", "redraw"]
SEED_MAX = 2**32 - 1
SCHEDULERS = samplers.NAMES
FILLS = ("edge", "blur", "noise", "none")
BACKENDS = ("", "local", "comfyui")  # studio.backends.BackendKind's values, and "" for the default
HIRES_MAX_SCALE = 8.0  # hires fix and Upscale enlarge at most this much at once
MAX_PICTURE_SIDE = 16384  # the largest picture Upscale and tiled redraw write
_PNG_MODES = ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA")
# Both prompts are stored in each image's metadata, whose readers accept 1 MB per text chunk
# (metadata.MAX_CHUNK): half of it leaves room for the rest of the recipe. About 500,000 letters.
MAX_PROMPT_BYTES = 512 * 1024


class RequestError(StudioError, ValueError):
    """A request that cannot run, with a message meant for the person who made it."""


@dataclass(frozen=True)
class Knob:
    """What every face of a field shares: its label, its range or choices, and the noun messages use."""

    label: str
    noun: str = ""  # as a message names it ("guidance (CFG)"); the label in lower case by default
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low end itself is not allowed (strength > 0)
    step: float = 1  # the widgets' step; decimals follow from it
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def name_in_messages(self) -> str:
        return self.noun or self.label.lower()


def knob(default: Any, label: str, **kw: Any) -> Any:
    return field(default=default, metadata={"knob": Knob(label, **kw)})


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one generation needs; the mode follows from which images are given. Each field's default,
    range, choices and label are defined here once (`knobs()`), and the CLI, the settings, the window's
    widgets, `validate()` and the recipe read them from here."""

    prompt: str = knob("", "Prompt", help="what to draw")
    negative_prompt: str = knob("", "Negative prompt", help="what to keep out")
    steps: int = knob(20, "Steps", low=1, high=150, help="denoising steps")
    cfg: float = knob(7.0, "Guidance", noun="guidance (CFG)", low=1.0, high=30.0, step=0.5,
                      help="how strongly the picture follows the prompt (classifier-free guidance)")
    seed: int = knob(0, "Seed", noun="the seed", low=0, high=SEED_MAX, help="the noise the picture starts from")
    width: int | None = knob(None, "Width", low=16, high=4096, step=8, help="pixels, a multiple of 8")
    height: int | None = knob(None, "Height", low=16, high=4096, step=8, help="pixels, a multiple of 8")
    scheduler: str = knob(samplers.DEFAULT, "Sampler", noun="scheduler", choices=samplers.NAMES,
                          help="the sampler (A1111's names)")
    strength: float = knob(0.75, "Strength", low=0.0, high=1.0, low_open=True, step=0.01,
                           help="how much image-to-image, inpaint and outpaint change (denoising strength)")
    init_image: Image.Image | None = field(default=None, repr=False, compare=False)
    mask: Image.Image | None = field(default=None, repr=False, compare=False)
    mask_grow: int = knob(0, "Grow", noun="mask grow", low=-256, high=256, help="grow the mask by this many px")
    # Measured: the lowest seam ratio for only-masked inpaint (bench seams).
    mask_feather: int = knob(8, "Feather", noun="mask feather", low=0, high=256, help="soften the mask edge, px")
    inpaint_area: str = knob("whole", "Area", noun="inpaint area", choices=("whole", "masked"),
                             help="repaint the whole image, or only a box around the mask")
    padding: int = knob(32, "Padding", low=0, high=1024, help="px of context around the mask for 'masked'")
    outpaint: tuple[int, int, int, int] | None = None  # left, top, right, bottom in pixels
    outpaint_fill: str = knob("edge", "Outpaint fill", noun="outpaint fill", choices=FILLS,
                              help="how the new area is prefilled before it is repainted")
    # px the new area reaches into the old image; 16 beat 8 on every fill (bench seams).
    outpaint_overlap: int = knob(16, "Overlap", noun="outpaint overlap", low=0, high=256,
                                 help="px the new area reaches into the old picture")
    batch_size: int = knob(1, "Batch", noun="batch size", low=1, high=16, help="pictures per run (seed, seed+1, …)")
    variation_seed: int | None = knob(None, "Variation seed", noun="the variation seed", low=0, high=SEED_MAX,
                                      help="the second noise variations mix in")
    variation_strength: float = knob(0.0, "Variation", noun="variation strength", low=0.0, high=1.0, step=0.01,
                                     help="how far variations move from the seed's picture")
    model: str = knob("builtin", "Model", help="a model name from `studio models`, or a file or folder")
    vae: str = knob("", "VAE", help="a VAE from the library in place of the model's own")  # "" keeps its own
    parent_id: int | None = None
    # Where it runs: "local", "comfyui" (ComfyUI servers), or "" for the default (Regenerate keeps it).
    backend: str = ""
    # Hires fix (A1111's two passes): draw at the first size, upscale by hires_scale with hires_upscaler,
    # then repaint at that size as image-to-image with hires_denoise for hires_steps (0: as many as `steps`).
    hires_scale: float | None = knob(None, "Hires upscale", noun="hires scale", low=1.0, high=HIRES_MAX_SCALE,
                                     step=0.25, help="hires fix: draw at the model's size, then upscale by this "
                                     "factor and repaint (A1111's Hires upscale; default: off)")
    hires_steps: int = knob(0, "Hires steps", low=0, high=150, help="steps of the hires pass (0: as many as --steps)")
    # ComfyUI's hires example; A1111's 0.7 redraws the small model's shapes.
    hires_denoise: float = knob(0.5, "Hires denoise", low=0.0, high=1.0, low_open=True, step=0.01,
                                help="how much the hires pass repaints")
    hires_upscaler: str = knob("Lanczos", "Hires upscaler",
                               help="Lanczos, or an upscaler of the model library (`studio models --kind upscaler`)")
    # Tiled redraw (Ultimate SD Upscale's way): the init image upscaled by redraw_scale with redraw_upscaler,
    # then repainted tile by tile as image-to-image at redraw_denoise (studio/engine/tiled_redraw.py).
    redraw_scale: float | None = knob(None, "Redraw upscale", noun="redraw scale", low=1.0, high=HIRES_MAX_SCALE,
                                      step=0.25, help="tiled redraw: upscale the init image by this factor, then "
                                      "repaint it tile by tile for detail (default: off)")
    redraw_upscaler: str = knob("Lanczos", "Redraw upscaler",
                                help="Lanczos, or an upscaler of the model library, for the redraw's upscale")
    # ComfyUI's Ultimate SD Upscale node's default: each tile is a picture of its own to the model, and from
    # about 0.35 it draws the prompt's objects again in every tile (nine circles for one on the built-in model).
    redraw_denoise: float = knob(0.2, "Redraw denoise", low=0.0, high=1.0, low_open=True, step=0.01,
                                 help="how much each tile is repainted (image-to-image strength)")
    redraw_tile: int = knob(0, "Redraw tile", low=0, high=4096, step=8,
                            help="tile side in px the model repaints at once (0: the model's native size)")
    # 16 px: an 8 px cross-fade (the outer quarter of each side is skipped), as wide as the mask blur of Ultimate
    # SD Upscale (8 px blur); no seam shows on the built-in model's 64 px tiles (tested); more costs tiles.
    redraw_overlap: int = knob(16, "Redraw overlap", low=0, high=1024,
                               help="px neighbouring tiles share and cross-fade over")

    @property
    def mode(self) -> Mode:
        if self.redraw_scale is not None:
            return "redraw"
        if self.outpaint is not None:
            return "outpaint"
        if self.mask is not None:
            return "inpaint"
        if self.init_image is not None:
            return "img2img"
        return "txt2img"

    def varies(self) -> bool:
        return self.variation_seed is not None and self.variation_strength > 0

    def batch_seeds(self) -> list[int]:
        """Item k's seed: seed + k. With a variation every item keeps the seed and only the variation
        seed moves (variation_seed + k), so the batch is N variations of the seed's one image."""
        if self.varies():
            return [self.seed] * self.batch_size
        return [(self.seed + k) % (SEED_MAX + 1) for k in range(self.batch_size)]

    def item(self, k: int) -> GenerationRequest:
        """Batch item k as a single run that gives the same image."""
        vseed = self.variation_seed
        return replace(self, seed=self.batch_seeds()[k], batch_size=1,
                       variation_seed=(vseed + k) % (SEED_MAX + 1) if vseed is not None else None)

    def validate(self) -> GenerationRequest:
        """Raise RequestError with a precise reason for the first thing that is wrong."""
        _check(isinstance(self.prompt, str) and isinstance(self.negative_prompt, str), "the prompt must be text")
        _check_storable(self.prompt, "prompt")
        _check_storable(self.negative_prompt, "negative prompt")
        stored = len(json.dumps([self.prompt, self.negative_prompt], ensure_ascii=False).encode("utf-8"))
        _check(stored <= MAX_PROMPT_BYTES,
               f"the prompt and negative prompt are too long to be kept with the image: {stored // 1024} KB of "
               f"text, the limit is {MAX_PROMPT_BYTES // 1024} KB")
        for name, k in knobs().items():
            value = getattr(self, name)
            if value is None:
                continue
            if k.choices:
                _check(value in k.choices, f"unknown {k.name_in_messages} {value!r}; choose one of: "
                                           f"{', '.join(k.choices)}")
            elif k.low is not None and k.high is not None:
                _check_range(k, value)
        # Image-to-image and inpaint pipelines draw their noise inside diffusers, from the generator
        # alone: a variation seed could not reach it, and N "variations" would be N identical pictures.
        _check(not self.varies() or self.mode == "txt2img",
               "variations (a variation seed and strength) work in text-to-image only: set Variation to 0, "
               "or change the seed to get another picture")
        _check(self.backend in BACKENDS, f"backend must be one of: {', '.join(b or repr(b) for b in BACKENDS)}")
        if self.mask is not None:
            _check(self.init_image is not None, "a mask needs an image to repaint (give --init)")
            _check(self.mask.size == self.init_image.size,  # type: ignore[union-attr]
                   f"the mask is {self.mask.size[0]}x{self.mask.size[1]} but the image is "
                   f"{self.init_image.size[0]}x{self.init_image.size[1]}")  # type: ignore[union-attr]
        if self.hires_scale is not None:
            self._validate_hires()
        if self.redraw_scale is not None:
            self._validate_redraw()
        if self.outpaint is not None:
            _check(self.init_image is not None, "outpainting needs an image to extend (give --init)")
            _check(len(self.outpaint) == 4 and all(v >= 0 for v in self.outpaint) and any(self.outpaint),
                   "outpaint takes four pixel counts LEFT,TOP,RIGHT,BOTTOM, none negative, not all zero")
        return self

    def _validate_hires(self) -> None:
        """What the hires fields' ranges cannot say alone (each range is checked with the others above)."""
        scale, denoise = self.hires_scale or 0.0, self.hires_denoise
        _check(self.mode == "txt2img", "hires fix works in text-to-image (for a picture you have, use Upscale)")
        _check(bool(self.hires_upscaler.strip()), "name a hires upscaler (Lanczos, or one from the model library)")
        steps = pass_steps(self.hires_steps or self.steps, denoise)
        _check(steps <= 150, f"{self.hires_steps or self.steps} hires steps at denoise {denoise:g} take {steps} "
               "scheduler steps, more than 150: raise the denoise or lower the hires steps")
        for name, value in (("width", self.width), ("height", self.height)):
            if value is not None:
                _check(value * scale <= 4096, f"hires fix would make the {name} {int(value * scale)} px; "
                       "the most is 4096")

    def _validate_redraw(self) -> None:
        """A redraw repaints one picture it is given, at the size the scale makes."""
        _check(self.init_image is not None, "a tiled redraw needs a picture to upscale (give --init)")
        _check(self.mask is None and self.outpaint is None and self.hires_scale is None,
               "a tiled redraw repaints the whole picture: it takes no mask, outpaint or hires fix")
        _check(self.batch_size == 1, "a tiled redraw makes one picture (batch size 1)")
        _check(self.width is None and self.height is None,
               "a tiled redraw's size follows from the picture and the redraw scale (give no width or height)")
        _check(bool(self.redraw_upscaler.strip()), "name a redraw upscaler (Lanczos, or one from the model library)")
        _check(int(self.steps * self.redraw_denoise) >= 1,
               f"a redraw denoise of {self.redraw_denoise:g} at {self.steps} steps runs no step "
               "(image-to-image runs steps x denoise): raise one of them")
        width, height = (side * (self.redraw_scale or 1.0) for side in self.init_image.size)  # type: ignore[union-attr]
        _check(max(width, height) <= MAX_PICTURE_SIDE,
               f"a redraw to {int(width)} x {int(height)} px is larger than the {MAX_PICTURE_SIDE} px Studio writes")


SCHEMA = 2  # 2: the request's own width/height for only-masked inpaint; `backend`; written by to_recipe()


def pass_steps(steps: int, denoise: float, flow: bool = False) -> int:
    """Scheduler steps N for which image-to-image at `denoise` runs exactly `steps` denoising steps, as
    A1111 and ComfyUI run the hires steps asked for. diffusers runs int(N x denoise) of N for SD models and
    N - int(N - N x denoise) for the flow models (FLUX, SD 3); the search follows its own float arithmetic."""
    n = steps
    while (n - int(max(n - n * denoise, 0)) if flow else min(int(n * denoise), n)) < steps:
        n += 1
    return n


def to_recipe(request: GenerationRequest, index: int = 0) -> dict[str, Any]:
    """The stored form of batch item `index` of `request`: every field (the item's seed and variation seed),
    the mode, and the input images by content hash. Backends add what they ran with (model hash, sampler
    class, device, time); `from_recipe(to_recipe(r)) == r`."""
    recipe: dict[str, Any] = {"schema": SCHEMA, "app": "studio", "mode": request.mode}
    recipe.update({name: getattr(request, name) for name in knobs()})
    item = request.item(index)
    recipe.update(seed=item.seed, variation_seed=item.variation_seed, batch_index=index,
                  cfg=float(request.cfg), model={"name": request.model},
                  vae={"name": request.vae} if request.vae else None,
                  strength=request.strength if request.mode not in ("txt2img", "redraw") else None,
                  outpaint=list(request.outpaint) if request.outpaint else None,
                  init_image_hash=image_hash(request.init_image), mask_hash=image_hash(request.mask),
                  parent_id=request.parent_id, backend={"kind": request.backend} if request.backend else None)
    if request.outpaint is None:  # the outpaint settings mean nothing without an outpaint
        recipe.update(outpaint_fill=None, outpaint_overlap=None)
    return recipe


def from_recipe(recipe: dict[str, Any], init_image: Image.Image | None = None,
                mask: Image.Image | None = None) -> GenerationRequest:
    """The request that made `recipe`'s image: for batch item k of N, the whole batch (its first seed), so
    that running it and keeping item k gives the very same pixels (a batched run may round differently
    from a single one). The model by path while that exists, else by name; the input images are the
    caller's to give (a recipe keeps their hashes)."""
    recipe = migrate(recipe)
    values = {name: recipe[name] for name in knobs() if recipe.get(name) is not None and name not in ("model", "vae")}
    if recipe.get("mode") == "redraw":  # its width and height are its picture's; the scale makes the size
        values.pop("width", None), values.pop("height", None)
    extra = section(recipe, "extra")
    for key in ("seed", "variation_seed"):  # another tool's 64-bit seed, folded the same way every time
        original = str(extra.get(f"original_{key}", ""))
        if key not in values and original.isdigit():
            values[key] = int(original) % (SEED_MAX + 1)
    if values.get("scheduler") not in SCHEDULERS:
        values.pop("scheduler", None)  # another tool's sampler Studio does not have: the default
    index = int(recipe.get("batch_index") or 0)
    if values.get("batch_size", 1) > 1 and index:
        if values.get("variation_seed") is not None and values.get("variation_strength"):
            values["variation_seed"] = (values["variation_seed"] - index) % (SEED_MAX + 1)
        elif "seed" in values:
            values["seed"] = (values["seed"] - index) % (SEED_MAX + 1)
    if recipe.get("outpaint"):
        values["outpaint"] = tuple(recipe["outpaint"])
    model = section(recipe, "model")
    if model.get("path") and Path(model["path"]).exists():
        values["model"] = model["path"]
    elif model.get("name"):
        values["model"] = model["name"]
    vae = section(recipe, "vae")
    if vae.get("name"):
        values["vae"] = Path(vae["name"]).stem  # the engine records the file's name; the library finds its stem
    backend = section(recipe, "backend")
    if backend.get("kind") in BACKENDS:  # a replay goes back to the same kind of backend
        values["backend"] = backend["kind"]
    if isinstance(recipe.get("parent_id"), int):
        values["parent_id"] = recipe["parent_id"]
    return GenerationRequest(**values, init_image=init_image, mask=mask)


def section(recipe: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A recipe's nested object (`model`, `vae`, `backend`, `extra`), or {} when it is absent or not an object."""
    value = recipe.get(key)
    return value if isinstance(value, dict) else {}


def migrate(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe in the current schema. Schema 1 (Studio before the recipe layer) wrote an only-masked
    inpaint's working size as its width and height, where the request had the model's native size: such
    a size is dropped, so the replay works at the native size as the original run did. Other tools'
    recipes (no schema) are read as they are. A recipe from a newer Studio is refused."""
    version = recipe.get("schema")
    if isinstance(version, int) and version > SCHEMA:
        raise RequestError(f"this picture was made by a newer Studio (recipe schema {version}; this one reads up "
                           f"to {SCHEMA}): update Studio to replay it")
    if version == 1 and recipe.get("inpaint_area") == "masked" and recipe.get("mode") == "inpaint":
        recipe = {**recipe, "width": None, "height": None, "schema": SCHEMA}
    return recipe


def knobs() -> dict[str, Knob]:
    """Every field that has a knob: name -> its label, range, choices."""
    return {f.name: f.metadata["knob"] for f in fields(GenerationRequest) if "knob" in f.metadata}


def default(name: str) -> Any:
    """A field's default, as the dataclass defines it."""
    return next(f.default for f in fields(GenerationRequest) if f.name == name)


def _check_range(k: Knob, value: float) -> None:
    low, high = k.low, k.high
    assert low is not None and high is not None
    ok = (low < value if k.low_open else low <= value) and value <= high
    if k.low_open:
        _check(ok, f"{k.name_in_messages} must be above {low:g} and at most {high:g} (got {value:g})")
    else:
        _check(ok, f"{k.name_in_messages} must be between {low:g} and {high:g} (got {value:g})")
    if k.step == 8:
        _check(value % 8 == 0, f"{k.name_in_messages} must be a multiple of 8 (got {value}; try {snap8(int(value))})")


def _check_storable(text: str, what: str) -> None:
    """Text that UTF-8 cannot hold (lone surrogates: a shell's undecodable bytes arrive as those) would
    fail only when the finished image is saved; refuse it before any work."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(f"the {what} has characters that cannot be saved (undecodable bytes at character "
                           f"{exc.start + 1}); type it again or remove them") from None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RequestError(message)


def snap8(value: int) -> int:
    return max(8, int(value / 8 + 0.5) * 8)  # half up: 100 -> 104


def variation_seed_for(seed: int) -> int:
    """The variation seed the window pairs with a seed (its own variations are seed + 1000 + k)."""
    return (seed + 1000) % (SEED_MAX + 1)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def content_hash(data: bytes) -> str:
    """The short hash recipes name input images by (of their PNG bytes)."""
    return hashlib.sha256(data).hexdigest()[:16]


def image_hash(image: Image.Image | None) -> str | None:
    """A short content hash of an input image, recorded in the recipe (the gallery keeps the image by it)."""
    if image is None:
        return None
    return content_hash(png_bytes(image))


@dataclass
class StepInfo:
    """Progress of a running generation, passed to `on_step` once per denoising step."""

    step: int  # 1-based
    total: int
    elapsed: float
    preview: Any = None  # numpy uint8 HxWx3 of the first image's predicted result, or None
    item: int = 0  # which batch item (sequential runs) this step belongs to
    items: int = 1
    # With preview_all, previews[i] is batch item (item + i)'s: every item's in a batched run (item 0), the
    # running item's alone in a run one item at a time (hires fix, the sequential fallback, a server).
    previews: list[Any] = field(default_factory=list)
    region: tuple[int, int, int, int] | None = None  # where on the input image the previews belong


@dataclass
class GenerationResult:
    image: Image.Image
    seed: int
    recipe: dict[str, Any]
    seconds: float
    gallery_id: int | None = None  # set by whoever keeps it in the gallery (the GUI's worker)
    path: str | None = None  # the gallery's file for it
