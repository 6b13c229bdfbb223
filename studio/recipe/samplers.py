"""The samplers, once: Studio's name (AUTOMATIC1111's), the diffusers scheduler that runs it, and the names
AUTOMATIC1111, ComfyUI and InvokeAI write for it, so recipes read and write in every dialect from one table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampler:
    name: str  # as Studio shows it and A1111 writes it in `Sampler:` (without the schedule)
    diffusers: str  # the scheduler class
    config: dict[str, Any] = field(default_factory=dict)  # overrides on the model's own scheduler config
    a1111: str = ""  # A1111's `Sampler:` value
    a1111_schedule: str | None = None  # A1111's `Schedule type:` (1.9+), None for its automatic one
    comfy: tuple[str, str] = ("", "normal")  # ComfyUI's (sampler_name, scheduler)
    invoke: str = ""  # InvokeAI's scheduler name


SAMPLERS: tuple[Sampler, ...] = (
    Sampler("Euler", "EulerDiscreteScheduler", a1111="Euler", comfy=("euler", "normal"), invoke="euler"),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler", a1111="Euler a", comfy=("euler_ancestral", "normal"),
            invoke="euler_a"),
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
            a1111="DPM++ 2M", comfy=("dpmpp_2m", "normal"), invoke="dpmpp_2m"),
    Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
            a1111="DPM++ 2M", a1111_schedule="Karras", comfy=("dpmpp_2m", "karras"), invoke="dpmpp_2m_k"),
    # SD's DDIM: no clipping of the predicted latent (latents are not confined to [-1, 1]).
    # A1111's DDIM steps on evenly spaced timesteps, which is ComfyUI's "ddim_uniform" schedule.
    Sampler("DDIM", "DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}, a1111="DDIM",
            comfy=("ddim", "ddim_uniform"), invoke="ddim"),
    Sampler("UniPC", "UniPCMultistepScheduler", a1111="UniPC", comfy=("uni_pc", "normal"), invoke="unipc"),
    Sampler("Heun", "HeunDiscreteScheduler", a1111="Heun", comfy=("heun", "normal"), invoke="heun"),
    Sampler("LMS", "LMSDiscreteScheduler", a1111="LMS", comfy=("lms", "normal"), invoke="lms"),
)
BY_NAME = {s.name: s for s in SAMPLERS}
NAMES = tuple(BY_NAME)
DEFAULT = "DPM++ 2M"


def from_a1111(sampler: str, schedule: str = "") -> str | None:
    """Studio's name for an A1111 `Sampler:` (+ `Schedule type:`); before A1111 1.9 the schedule was part
    of the name ("DPM++ 2M Karras")."""
    name, kind = sampler.strip(), schedule.strip().lower()
    if name.lower().endswith(" karras"):
        name, kind = name[:-7], "karras"
    kind = "" if kind in ("", "automatic") else kind
    for s in SAMPLERS:
        if s.a1111.lower() == name.lower() and (s.a1111_schedule or "").lower() == kind:
            return s.name
    return None


def from_comfy(sampler: str, scheduler: str = "normal") -> str | None:
    """Studio's name for a ComfyUI sampler and scheduler; None for the pairs Studio has no equivalent of
    (karras on Euler, exponential, …)."""
    sampler = {"uni_pc_bh2": "uni_pc"}.get(sampler, sampler)
    for s in SAMPLERS:
        own_sampler, own_schedule = s.comfy
        plain = own_schedule in ("normal", "ddim_uniform") and scheduler in ("normal", "simple")
        if own_sampler == sampler and (scheduler == own_schedule or plain):
            return s.name
    return None


def from_invoke(name: str) -> str | None:
    return next((s.name for s in SAMPLERS if s.invoke == name), None)
