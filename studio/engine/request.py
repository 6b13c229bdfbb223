"""The one record that carries a whole generation, and what comes back.

A `GenerationRequest` is immutable and validated up front, so nothing downstream has to guess: the
GUI, the CLI and a stored recipe all build the same record, and the same record replays an image.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from PIL import Image

Mode = Literal["txt2img", "img2img", "inpaint", "outpaint"]
SEED_MAX = 2**32 - 1
SCHEDULERS = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "Heun", "LMS")
FILLS = ("edge", "blur", "noise", "none")


class RequestError(ValueError):
    """A request that cannot run, with a message meant for the person who made it."""


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one generation needs; the mode follows from which images are given."""

    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    cfg: float = 7.0
    seed: int = 0
    width: int | None = None  # None: the model's native size (or the init image's)
    height: int | None = None
    scheduler: str = "DPM++ 2M"
    strength: float = 0.75  # img2img / inpaint denoising strength
    init_image: Image.Image | None = field(default=None, repr=False, compare=False)
    mask: Image.Image | None = field(default=None, repr=False, compare=False)
    mask_grow: int = 0
    mask_feather: int = 8  # measured: the lowest seam ratio for only-masked inpaint (bench seams)
    inpaint_area: Literal["whole", "masked"] = "whole"
    padding: int = 32
    outpaint: tuple[int, int, int, int] | None = None  # left, top, right, bottom in pixels
    outpaint_fill: str = "edge"
    outpaint_overlap: int = 16  # px the new area reaches into the old image; 16 beat 8 on every fill
    batch_size: int = 1
    variation_seed: int | None = None
    variation_strength: float = 0.0
    model: str = "builtin"
    vae: str = ""  # a VAE from the model library (name or path) in place of the model's own; "" keeps its own
    parent_id: int | None = None
    # Hires fix (A1111's two passes): draw at the first size, upscale by hires_scale with hires_upscaler,
    # then repaint at that size as image-to-image with hires_denoise for hires_steps (0: as many as `steps`).
    hires_scale: float | None = None  # None: off
    hires_steps: int = 0
    hires_denoise: float = 0.5  # ComfyUI's hires example; A1111's 0.7 redraws the small model's shapes
    hires_upscaler: str = "Lanczos"  # studio.engine.upscale.LANCZOS, or an upscaler of the model library

    @property
    def mode(self) -> Mode:
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
        _check(isinstance(self.prompt, str), "the prompt must be text")
        _check(1 <= self.steps <= 150, f"steps must be between 1 and 150 (got {self.steps})")
        _check(1.0 <= self.cfg <= 30.0, f"guidance (CFG) must be between 1 and 30 (got {self.cfg:g})")
        _check(0 <= self.seed <= SEED_MAX, f"the seed must be between 0 and {SEED_MAX} (got {self.seed})")
        _check(self.scheduler in SCHEDULERS,
               f"unknown scheduler {self.scheduler!r}; choose one of: {', '.join(SCHEDULERS)}")
        _check(0.0 < self.strength <= 1.0, f"strength must be above 0 and at most 1 (got {self.strength:g})")
        _check(1 <= self.batch_size <= 16, f"batch size must be between 1 and 16 (got {self.batch_size})")
        _check(0.0 <= self.variation_strength <= 1.0,
               f"variation strength must be between 0 and 1 (got {self.variation_strength:g})")
        if self.variation_seed is not None:
            _check(0 <= self.variation_seed <= SEED_MAX, f"the variation seed must be between 0 and {SEED_MAX}")
        # Image-to-image and inpaint pipelines draw their noise inside diffusers, from the generator
        # alone: a variation seed could not reach it, and N "variations" would be N identical pictures.
        _check(not self.varies() or self.mode == "txt2img",
               "variations (a variation seed and strength) work in text-to-image only: set Variation to 0, "
               "or change the seed to get another picture")
        for name, value in (("width", self.width), ("height", self.height)):
            if value is not None:
                _check(16 <= value <= 4096, f"{name} must be between 16 and 4096 pixels (got {value})")
                _check(value % 8 == 0, f"{name} must be a multiple of 8 (got {value}; try {snap8(value)})")
        _check(self.inpaint_area in ("whole", "masked"), "inpaint area must be 'whole' or 'masked'")
        _check(0 <= self.padding <= 1024, f"padding must be between 0 and 1024 pixels (got {self.padding})")
        _check(-256 <= self.mask_grow <= 256, f"mask grow must be between -256 and 256 (got {self.mask_grow})")
        _check(0 <= self.mask_feather <= 256, f"mask feather must be between 0 and 256 (got {self.mask_feather})")
        if self.mask is not None:
            _check(self.init_image is not None, "a mask needs an image to repaint (give --init)")
            _check(self.mask.size == self.init_image.size,  # type: ignore[union-attr]
                   f"the mask is {self.mask.size[0]}x{self.mask.size[1]} but the image is "
                   f"{self.init_image.size[0]}x{self.init_image.size[1]}")  # type: ignore[union-attr]
        if self.outpaint is not None:
            _check(self.init_image is not None, "outpainting needs an image to extend (give --init)")
            _check(len(self.outpaint) == 4 and all(v >= 0 for v in self.outpaint) and any(self.outpaint),
                   "outpaint takes four pixel counts LEFT,TOP,RIGHT,BOTTOM, none negative, not all zero")
            _check(self.outpaint_fill in FILLS, f"outpaint fill must be one of: {', '.join(FILLS)}")
            _check(0 <= self.outpaint_overlap <= 256, f"outpaint overlap must be 0..256 px (got {self.outpaint_overlap})")
        if self.hires_scale is not None:
            self._validate_hires()
        return self

    def _validate_hires(self) -> None:
        from studio.engine.enlarge import MAX_SCALE
        from studio.engine.hires import pass_steps

        scale, denoise = self.hires_scale or 0.0, self.hires_denoise
        _check(1.0 <= scale <= MAX_SCALE, f"hires scale must be between 1 and {MAX_SCALE:g} (got {scale:g})")
        _check(self.mode == "txt2img", "hires fix works in text-to-image (for a picture you have, use Upscale)")
        _check(0 <= self.hires_steps <= 150, f"hires steps must be between 0 and 150 (got {self.hires_steps})")
        _check(0.0 < denoise <= 1.0, f"hires denoise must be above 0 and at most 1 (got {denoise:g})")
        _check(bool(self.hires_upscaler.strip()), "name a hires upscaler (Lanczos, or one from the model library)")
        steps = pass_steps(self.hires_steps or self.steps, denoise)
        _check(steps <= 150, f"{self.hires_steps or self.steps} hires steps at denoise {denoise:g} take {steps} "
               "scheduler steps, more than 150: raise the denoise or lower the hires steps")
        for name, value in (("width", self.width), ("height", self.height)):
            if value is not None:
                _check(value * scale <= 4096, f"hires fix would make the {name} {int(value * scale)} px; "
                       "the most is 4096")


# The recipe fields that replay as they are (images are not stored in a recipe, only their hashes).
RECIPE_FIELDS = ("prompt", "negative_prompt", "steps", "cfg", "seed", "width", "height", "scheduler", "strength",
                 "variation_seed", "variation_strength", "mask_grow", "mask_feather", "inpaint_area", "padding",
                 "outpaint_fill", "outpaint_overlap", "hires_scale", "hires_steps", "hires_denoise", "hires_upscaler")


def fields_from_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """GenerationRequest keyword arguments that replay a stored recipe (its model by path when that
    still exists, else by name; its library VAE by name). The input images are the caller's to give."""
    from pathlib import Path

    out = {k: recipe[k] for k in RECIPE_FIELDS if recipe.get(k) is not None}
    if recipe.get("outpaint"):
        out["outpaint"] = tuple(recipe["outpaint"])
    if out.get("scheduler") not in SCHEDULERS:
        out.pop("scheduler", None)
    model = recipe.get("model") if isinstance(recipe.get("model"), dict) else {}
    if model.get("path") and Path(model["path"]).exists():
        out["model"] = model["path"]
    elif model.get("name"):
        out["model"] = model["name"]
    vae = recipe.get("vae") if isinstance(recipe.get("vae"), dict) else None
    if vae and vae.get("name"):
        out["vae"] = Path(vae["name"]).stem
    return out


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RequestError(message)


def snap8(value: int) -> int:
    return max(8, int(value / 8 + 0.5) * 8)  # half up: 100 -> 104


def image_hash(image: Image.Image | None) -> str | None:
    """A short content hash of an input image, recorded in the recipe (the image itself is not)."""
    if image is None:
        return None
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return hashlib.sha256(buf.getvalue()).hexdigest()[:16]


@dataclass
class StepInfo:
    """Progress of a running generation, passed to `on_step` once per denoising step."""

    step: int  # 1-based
    total: int
    elapsed: float
    preview: Any = None  # numpy uint8 HxWx3 of the first image's predicted result, or None
    item: int = 0  # which batch item (sequential runs) this step belongs to
    items: int = 1
    previews: list[Any] = field(default_factory=list)  # every batch item's preview, with preview_all
    region: tuple[int, int, int, int] | None = None  # where on the input image the previews belong


@dataclass
class GenerationResult:
    image: Image.Image
    seed: int
    recipe: dict[str, Any]
    seconds: float
