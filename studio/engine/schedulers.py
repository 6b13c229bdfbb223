"""Schedulers by the names designers know (the AUTOMATIC1111 names), built from diffusers' own classes."""

from __future__ import annotations

from typing import Any

from studio.engine.request import SCHEDULERS, RequestError

# name -> (diffusers class name, config overrides)
_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                 "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "use_karras_sigmas": True}),
    # SD's DDIM: no clipping of the predicted latent (latents are not confined to [-1, 1]).
    "DDIM": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
}
assert tuple(_TABLE) == SCHEDULERS

# name -> (ComfyUI sampler_name, ComfyUI scheduler): the same sampler on a ComfyUI server (its KSampler node).
# A1111's DDIM steps on evenly spaced timesteps, which is ComfyUI's "ddim_uniform" schedule.
COMFYUI: dict[str, tuple[str, str]] = {
    "Euler": ("euler", "normal"), "Euler a": ("euler_ancestral", "normal"), "DPM++ 2M": ("dpmpp_2m", "normal"),
    "DPM++ 2M Karras": ("dpmpp_2m", "karras"), "DDIM": ("ddim", "ddim_uniform"), "UniPC": ("uni_pc", "normal"),
    "Heun": ("heun", "normal"), "LMS": ("lms", "normal"),
}
assert tuple(COMFYUI) == SCHEDULERS


def make_scheduler(name: str, base_config: dict[str, Any]) -> Any:
    """A fresh scheduler (they hold per-run state) configured like the model's own."""
    import diffusers

    if "FlowMatch" in str(base_config.get("_class_name", "")):
        # Flow-matching models (FLUX, SD 3) sample with their own flow Euler and its shift; the
        # epsilon/v samplers above do not apply to them.
        return diffusers.FlowMatchEulerDiscreteScheduler.from_config(base_config)
    if name not in _TABLE:
        raise RequestError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    class_name, overrides = _TABLE[name]
    cls = getattr(diffusers, class_name)
    return cls.from_config(base_config, **overrides)
