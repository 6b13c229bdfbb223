"""Diffusion: models, generation, previews. No Qt here; torch and diffusers load on first use."""

from __future__ import annotations

from typing import Any

from studio.recipe.request import GenerationRequest, GenerationResult, RequestError, StepInfo

__all__ = ["Cancelled", "Engine", "GenerationRequest", "GenerationResult", "ModelError", "RequestError", "StepInfo"]


def __getattr__(name: str) -> Any:
    # Engine pulls in torch via its callers' first use; importing the package stays cheap.
    if name in ("Engine", "Cancelled"):
        from studio.engine import generate

        return getattr(generate, name)
    if name == "ModelError":
        from studio.engine.models import ModelError

        return ModelError
    raise AttributeError(name)
