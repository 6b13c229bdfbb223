"""The engine: one loaded pipeline, and `generate(request) -> results` with progress, previews and cancel.

The GUI's worker thread and the CLI both drive this class; it has no Qt in it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from studio import __version__
from studio.engine import canvas_ops, library, memory, models, prompts
from studio.engine.library import ItemKind, LibraryIndex
from studio.engine.memory import MemoryPreset
from studio.engine.networks import AppliedLora, Networks
from studio.engine.preview import PreviewSource, choose_preview
from studio.engine.schedulers import make_scheduler
from studio.engine.upscale import UpscalerCache
from studio.paths import cache_dir
from studio.recipe.request import GenerationRequest, GenerationResult, RequestError, StepInfo, snap8, to_recipe

StepCallback = Callable[[StepInfo], None]
StopCheck = Callable[[], bool]


class Cancelled(Exception):
    """The run was stopped by its caller; nothing was decoded or saved."""


@dataclass
class PreparedJob:
    """What one pipeline call needs, after the request's images were prepared."""

    mode: str
    width: int
    height: int
    kwargs: dict[str, Any]
    finish: Callable[[Image.Image], Image.Image]  # pipeline output -> final image (paste-back)
    region: tuple[int, int, int, int] | None = None  # the crop the pipeline works on, if any
    prompt: str = ""  # the prompts without their <lora:...> tags
    negative: str = ""
    loras: list[AppliedLora] = field(default_factory=list)
    vae: dict[str, str] | None = None  # the library VAE in use: name and short hash


class Engine:
    """Owns one loaded model; every generation in the process goes through `generate`."""

    def __init__(self, device: str = "auto", data_dir: Path | None = None,
                 memory: MemoryPreset | str = MemoryPreset.AUTO, allow_pickle: bool = False) -> None:
        self.device_request = device
        self.data_dir = data_dir
        self.memory = MemoryPreset(memory)
        self.allow_pickle = allow_pickle
        self.model: models.LoadedModel | None = None
        self.rgb_map: PreviewSource | None = None
        self.networks = Networks()
        self.library = LibraryIndex(data_dir)  # LoRAs, VAEs and embeddings by name, scanned now and then
        self.upscalers = UpscalerCache()  # the last upscaler file used (hires fix, Upscale)

    # ------------------------------------------------------------------ loading

    def load(self, ref: str | Path = "builtin", on_progress: Callable[[str], None] | None = None,
             should_stop: StopCheck | None = None, reload: bool = False) -> models.LoadedModel:
        """Load a model by name or path, replacing the current one; raise ModelError or Cancelled.
        `reload` loads even the current model again (after a change of memory preset)."""
        say = on_progress or (lambda _msg: None)
        entry = models.resolve(ref, self.data_dir, self.allow_pickle)
        if self.model is not None and self.model.entry.path == entry.path and not reload:
            return self.model
        if reload:
            self.model = None  # free the old copy first: a preset change is often about memory
        say(f"Loading {entry.name}…")
        loaded = models.load(entry, self.device_request, self.memory, self.allow_pickle,
                             hash_cache=cache_dir(self.data_dir), data_dir=self.data_dir)
        if should_stop is not None and should_stop():
            raise Cancelled()
        self.model = None  # drop the old pipeline before keeping the new one
        self.model, self.networks = loaded, Networks()
        say("Preparing previews…")
        self._refit_previews(loaded)
        parts = f", with {loaded.parts}" if loaded.parts else ""
        say(f"{entry.name} ({loaded.label}{parts}) ready on {loaded.device.type}, {loaded.memory.describe()}")
        return loaded

    def _use_vae(self, model: models.LoadedModel, ref: str) -> dict[str, str] | None:
        """Put the request's VAE (or the model's own) in place; refit the preview map when it changes."""
        from studio.engine import hashes

        if not ref:
            if model.vae_name:
                model.use_vae(None, "")
                self._refit_previews(model)
            return None
        path = Path(ref).expanduser()
        item_path = path if path.is_file() else self.library.find(ItemKind.VAE, ref).path
        if model.vae_name != str(item_path):
            model.use_vae(models.load_vae(item_path, model), str(item_path))
            if model.memory.preset is not MemoryPreset.HIGH:
                models.apply_memory(model.pipe, model.device, model.memory)  # offload hooks and tiling for it too
            self._refit_previews(model)
        return {"name": item_path.name, "hash": hashes.short_hash(item_path, cache_dir(self.data_dir))}

    def _refit_previews(self, model: models.LoadedModel) -> None:
        import torch

        # A learned decoder in the model's folder belongs to its own VAE; fp32 on a CPU (its fp16 convs are slow).
        own = model.entry.path if not model.vae_name and model.entry.path.is_dir() else None
        dtype = model.dtype if model.device.type != "cpu" else torch.float32
        self.rgb_map = choose_preview(model.pipe.vae, float(model.pipe.vae.config.scaling_factor),
                                      cache_dir(self.data_dir), own, library.folders(self.data_dir),
                                      model.device, dtype)

    def ensure_loaded(self, ref: str) -> models.LoadedModel:
        """The model the request names: the loaded one when it is that model ("builtin" included)."""
        if self.model is not None and ref in (self.model.entry.name, str(self.model.entry.path)):
            return self.model
        return self.load(ref)  # resolves the name; returns at once when it is the loaded model

    # ------------------------------------------------------------------ generation

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None, preview: bool = True,
                 sequential: bool = False, preview_all: bool = False,
                 preview_interval: float = 0.0) -> list[GenerationResult]:
        """Run `request`; item k of a batch equals `request.item(k)` run alone (seed + k, or with a
        variation the same seed and variation seed + k), to one level of 255 where batched kernels round
        their last bit differently from single ones.

        Previews are computed at most every `preview_interval` seconds (and on the last step), so a
        caller that can only show ~20 frames a second does not pay for more.
        """
        request.validate()
        if request.hires_scale is not None:  # two passes, each of them a generate() of its own
            from studio.engine import hires

            return hires.generate(self, request, on_step, should_stop, preview, preview_interval, preview_all)
        if request.redraw_scale is not None:  # an upscale, then an image-to-image per tile
            from studio.engine import tiled_redraw

            return tiled_redraw.generate(self, request, on_step, should_stop, preview, preview_interval)
        model = self.ensure_loaded(request.model)
        job = self._prepare(request, model)
        job.prompt, tags = prompts.split_loras(request.prompt)
        job.negative, negative_tags = prompts.split_loras(request.negative_prompt)
        job.loras = self.networks.apply_loras(model.pipe, self.library, tags + negative_tags)
        job.vae = self._use_vae(model, request.vae)
        self.networks.load_embeddings(model.pipe, self.library, job.prompt, job.negative)
        seeds = request.batch_seeds()
        run = _RunOptions(on_step, should_stop, preview and self.rgb_map is not None, preview_all,
                          preview_interval, time.perf_counter())
        images: list[Image.Image] = []
        if not sequential and request.batch_size > 1:
            try:
                images = self._run(model, request, job, seeds, run, (0, 1))
            except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
                if not memory.is_out_of_memory(exc):
                    raise
                memory.free_device_memory()  # one forward pass for N latents did not fit: go one by one
        out_of_memory = False
        if not images:
            try:
                for k, seed in enumerate(seeds):
                    images += self._run(model, request.item(k), job, [seed], run, item=(k, len(seeds)))
            except (RuntimeError, MemoryError) as exc:
                if not memory.is_out_of_memory(exc):
                    raise
                out_of_memory = True  # freed below, once no frame holds the failed run's tensors
        if out_of_memory:
            memory.free_device_memory()
            raise memory.OutOfMemory(memory.out_of_memory_message(model.memory, model.device.type, job.width,
                                                                  job.height, request.batch_size))
        seconds = (time.perf_counter() - run.start) / len(images)
        scheduler = make_scheduler(request.scheduler, model.scheduler_config)  # for the recipe
        return [GenerationResult(job.finish(img), seed, self._recipe(request, model, job, scheduler, seed, k, seconds),
                                 seconds)
                for k, (img, seed) in enumerate(zip(images, seeds))]

    def _run(self, model: models.LoadedModel, request: GenerationRequest, job: PreparedJob, seeds: list[int],
             run: _RunOptions, item: tuple[int, int]) -> list[Image.Image]:
        import torch

        pipe = model.variant(job.mode)
        pipe.scheduler = make_scheduler(request.scheduler, model.scheduler_config)
        capture = _X0Capture(pipe.scheduler)
        run.check_stop()

        def callback(p: Any, i: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            run.check_stop()  # raising skips the remaining steps and the VAE decode
            if run.on_step is not None:
                total, now = p.num_timesteps, time.perf_counter()
                shown: list[Any] = []
                if run.preview and self.rgb_map is not None and (
                        now - run.last_preview >= run.preview_interval or i + 1 == total):
                    run.last_preview = now
                    x0 = capture.x0 if capture.x0 is not None else tensors["latents"]
                    if model.flux:  # FLUX keeps its latents packed 2x2 into tokens
                        x0 = type(pipe)._unpack_latents(x0, job.height, job.width, pipe.vae_scale_factor)
                    shown = [self.rgb_map.to_rgb(x0[k]) for k in range(x0.shape[0] if run.preview_all else 1)]
                run.on_step(StepInfo(i + 1, total, now - run.start, shown[0] if shown else None, *item,
                                     previews=shown, region=job.region))
            return tensors

        kwargs = dict(job.kwargs)
        if job.mode == "txt2img":
            kwargs["latents"] = self._initial_noise(model, request, job, seeds)
        # The generators also drive the noise ancestral samplers (Euler a) add at every step: without them
        # those steps drew from torch's global generator and the same seed gave another picture each time.
        kwargs["generator"] = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        # A stop check before every UNet or transformer block lands a cancel inside the running step.
        hooks = [b.register_forward_pre_hook(lambda *_: run.check_stop()) for b in model.blocks()]
        try:
            with torch.inference_mode():
                out = pipe(**_text(model, pipe, job),
                           num_inference_steps=request.steps, guidance_scale=request.cfg,
                           num_images_per_prompt=len(seeds), width=job.width, height=job.height,
                           callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"],
                           output_type="pil", **kwargs)
        finally:
            for hook in hooks:
                hook.remove()
        return list(out.images)

    def _initial_noise(self, model: models.LoadedModel, request: GenerationRequest, job: PreparedJob,
                       seeds: list[int]) -> Any:
        """Noise from CPU generators (same on every machine), then moved to the device."""
        import torch

        pipe = model.pipe
        scale = pipe.vae_scale_factor
        if model.flux:  # FLUX's latent sides are even, so that they pack into 2x2 tokens
            channels, rows, cols = pipe.vae.config.latent_channels, job.height // (2 * scale), job.width // (2 * scale)
            shape = (1, channels, 2 * rows, 2 * cols)
        else:
            shape = (1, pipe.vae.config.latent_channels, job.height // scale, job.width // scale)
        noises = []
        for k, seed in enumerate(seeds):
            noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
            if request.variation_seed is not None and request.variation_strength > 0:
                other_seed = (request.variation_seed + k) % 2**32
                other = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(other_seed))
                noise = slerp(request.variation_strength, noise, other)
            if model.flux:
                noise = type(pipe)._pack_latents(noise, 1, shape[1], shape[2], shape[3])
            noises.append(noise)
        return torch.cat(noises).to(model.device, model.dtype)

    # ------------------------------------------------------------------ preparing inputs

    def _prepare(self, request: GenerationRequest, model: models.LoadedModel) -> PreparedJob:
        job = prepare_inputs(request, model.native_size)
        if model.inpainting and "mask_image" not in job.kwargs:
            # An inpainting UNet always reads an image and a mask: text-to-image repaints a blank
            # picture whole, image-to-image repaints the whole picture at the request's strength.
            size = (job.width, job.height)
            job.kwargs.setdefault("image", Image.new("RGB", size, (127, 127, 127)))
            job.kwargs["mask_image"] = Image.new("L", size, 255)
            job.kwargs.setdefault("strength", 1.0)
        return job

    # ------------------------------------------------------------------ recipe

    def _recipe(self, request: GenerationRequest, model: models.LoadedModel, job: PreparedJob, scheduler: Any,
                seed: int, index: int, seconds: float) -> dict[str, Any]:
        """The request's recipe for item `index`, and what this run used: the model's hash and family, the
        sampler's class and config, the LoRAs and VAE with their hashes, the device."""
        recipe = to_recipe(request, index)
        assert recipe["seed"] == seed
        if request.mode != "inpaint" or request.inpaint_area != "masked":
            recipe.update(width=job.width, height=job.height)  # the size "native" or the init image came to
        recipe.update(
            app_version=__version__, scheduler_class=type(scheduler).__name__,
            scheduler_config=_jsonable(dict(scheduler.config)),
            model={"name": model.entry.name, "hash": model.weights_hash, "path": str(model.entry.path),
                   "family": model.label},
            loras=[{"name": lora.name, "weight": lora.weight, "hash": lora.hash} for lora in job.loras],
            vae=job.vae, device=model.device.type, dtype=str(model.dtype).replace("torch.", ""),
            seconds=round(seconds, 3), created_at=_dt.datetime.now(_dt.timezone.utc).isoformat())
        return recipe


def prepare_inputs(request: GenerationRequest, native: int) -> PreparedJob:
    """The images a pipeline works on, at their working size, and how its output becomes the final image
    (paste-back into the original for inpaint and outpaint). Shared by every backend, so a ComfyUI server
    repaints exactly the region the local engine would and the pixels outside it stay the original's."""
    if request.mode == "txt2img":
        return PreparedJob("txt2img", request.width or native, request.height or native, {}, lambda im: im)
    init = request.init_image.convert("RGB")  # type: ignore[union-attr]
    if request.mode == "img2img":
        width = request.width or snap8(init.width)
        height = request.height or snap8(init.height)
        image = init.resize((width, height), Image.Resampling.LANCZOS) if init.size != (width, height) else init
        return PreparedJob("img2img", width, height, {"image": image, "strength": request.strength}, lambda im: im)
    return _prepare_inpaint(request, init, native)


def _prepare_inpaint(request: GenerationRequest, init: Image.Image, native: int) -> PreparedJob:
    if request.outpaint is not None:
        left, top, right, bottom = request.outpaint
        init, mask = canvas_ops.extend_canvas(init, left, top, right, bottom, overlap=request.outpaint_overlap,
                                              fill=request.outpaint_fill, seed=request.seed)
    else:
        try:
            mask = canvas_ops.validate_mask(request.mask, init.size)  # type: ignore[arg-type]
        except canvas_ops.MaskError as exc:
            raise RequestError(str(exc)) from exc
    # An extension's mask already ramps softly into the old image; feathering it again would
    # reach further in and repaint pixels the designer did not ask to change.
    soft = mask if request.outpaint is not None else canvas_ops.grow_and_feather(
        mask, request.mask_grow, request.mask_feather)
    box = None
    if request.inpaint_area == "masked":
        box = canvas_ops.crop_box(soft, request.padding)
        region, region_mask = init.crop(box), soft.crop(box)
        width, height = _working_size(region.size, request.width or native, request.height or native)
    else:
        region, region_mask = init, soft
        width, height = request.width or snap8(init.width), request.height or snap8(init.height)
    kwargs = {"image": region.resize((width, height), Image.Resampling.LANCZOS),
              "mask_image": region_mask.resize((width, height), Image.Resampling.BILINEAR),
              "strength": request.strength}
    size = region.size

    def finish(generated: Image.Image) -> Image.Image:
        if generated.size != size:
            generated = generated.resize(size, Image.Resampling.LANCZOS)
        return canvas_ops.paste_back(init, generated, soft, box)

    return PreparedJob("inpaint", width, height, kwargs, finish, box)


@dataclass
class _RunOptions:
    """How one generate() call reports progress and stops."""

    on_step: StepCallback | None
    should_stop: StopCheck | None
    preview: bool
    preview_all: bool
    preview_interval: float
    start: float
    last_preview: float = float("-inf")

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled()


class _X0Capture:
    """Wraps a scheduler's `step` to keep the model's prediction of the clean latent (x0).

    Euler, Heun, LMS and DDIM return it as `pred_original_sample`; the multistep solvers (DPM++,
    UniPC) keep it as their latest converted model output. Either way the scheduler did the
    epsilon/v-prediction arithmetic itself, so the preview is right for both parameterisations.
    """

    def __init__(self, scheduler: Any) -> None:
        self.x0: Any = None
        original = scheduler.step

        # wraps: the pipeline reads step's signature to decide whether to pass the generator (ancestral
        # samplers draw noise with it); a bare wrapper hid it, and Euler a used the global generator.
        @functools.wraps(original)
        def step(*args: Any, return_dict: bool = True, **kwargs: Any) -> Any:
            flow_x0 = _flow_x0(scheduler, *args, **kwargs)  # before the step moves the sigma on
            out = original(*args, return_dict=True, **kwargs)
            x0 = flow_x0 if flow_x0 is not None else getattr(out, "pred_original_sample", None)
            outputs = getattr(scheduler, "model_outputs", None)
            if x0 is None and outputs and outputs[-1] is not None:
                x0 = outputs[-1]
            self.x0 = x0
            return out if return_dict else (out.prev_sample,)

        scheduler.step = step


def _flow_x0(scheduler: Any, model_output: Any = None, timestep: Any = None, sample: Any = None,
             *_: Any, **kwargs: Any) -> Any:
    """x0 for a flow-matching step: x_t = (1 - s) x0 + s noise and the model predicts v = noise - x0,
    so x0 = x_t - s v. None for the other schedulers (they return x0 themselves)."""
    if "FlowMatch" not in type(scheduler).__name__:
        return None
    model_output = kwargs.get("model_output", model_output)
    sample = kwargs.get("sample", sample)
    if scheduler.step_index is None:
        scheduler._init_step_index(timestep)
    sigma = scheduler.sigmas[scheduler.step_index]
    return sample - sigma * model_output


def _text(model: models.LoadedModel, pipe: Any, job: PreparedJob) -> dict[str, Any]:
    """The prompt arguments: A1111-weighted where the model reads CLIP alone (SD 1.x, 2.x, XL); as text for
    the T5 models (FLUX, SD 3); FLUX has no negative prompt (its guidance is distilled into the model)."""
    if not model.flow:
        return prompts.conditioning(pipe, job.prompt, job.negative)
    if model.flux:
        return {"prompt": job.prompt}
    return {"prompt": job.prompt, "negative_prompt": job.negative or None}


def slerp(t: float, a: Any, b: Any) -> Any:
    """Spherical interpolation of two noise tensors (Shoemake 1985), as AUTOMATIC1111 mixes variation seeds."""
    import torch

    a_flat, b_flat = a.flatten(), b.flatten()
    dot = torch.clamp((a_flat / a_flat.norm()) @ (b_flat / b_flat.norm()), -1.0, 1.0)
    if abs(float(dot)) > 0.9995:
        return (1 - t) * a + t * b
    omega = math.acos(float(dot))
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)


def _working_size(size: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """Scale a crop to about the model's working area, keeping its aspect, sides a multiple of 8."""
    scale = math.sqrt(width * height / (size[0] * size[1]))
    return snap8(round(size[0] * scale)), snap8(round(size[1] * scale))


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key.startswith("_"):
            continue
        if isinstance(value, (list, tuple)):
            value = [v for v in value if isinstance(v, (int, float, str, bool))]
        elif isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # JSON has no inf/nan; "-inf" reads back unambiguously
        elif not isinstance(value, (int, float, str, bool, type(None))):
            value = str(value)
        out[key] = value
    return out
