"""Schedulers by the names designers know (the AUTOMATIC1111 names), built from diffusers' own classes
(the table is the recipe's: `studio.recipe.samplers`)."""

from __future__ import annotations

from typing import Any

from studio.recipe import samplers
from studio.recipe.request import SCHEDULERS, RequestError


def make_scheduler(name: str, base_config: dict[str, Any]) -> Any:
    """A fresh scheduler (they hold per-run state) configured like the model's own."""
    import diffusers

    if "FlowMatch" in str(base_config.get("_class_name", "")):
        # Flow-matching models (FLUX, SD 3) sample with their own flow Euler and its shift; the
        # epsilon/v samplers above do not apply to them.
        return diffusers.FlowMatchEulerDiscreteScheduler.from_config(base_config)
    if name not in samplers.BY_NAME:
        raise RequestError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    sampler = samplers.BY_NAME[name]
    return getattr(diffusers, sampler.diffusers).from_config(base_config, **sampler.config)
