"""The local backend: Studio's own engine on this machine's device."""

from __future__ import annotations

from typing import Any

from studio.backends.base import BackendKind, NoticeCallback, StepCallback, StopCheck
from studio.recipe.request import GenerationRequest, GenerationResult


class LocalBackend:
    """Runs requests on an `Engine` (which loads the request's model on first use)."""

    kind = BackendKind.LOCAL

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def describe(self) -> str:
        model = self.engine.model
        if model is None:
            return "this computer"
        return f"{model.entry.name}: {model.label} on {model.device.type}, {model.memory.describe()}"

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None, on_notice: NoticeCallback | None = None,
                 **options: Any) -> list[GenerationResult]:
        results: list[GenerationResult] = self.engine.generate(request, on_step=on_step, should_stop=should_stop,
                                                               **options)
        for result in results:
            result.recipe["backend"] = local_backend_record()
        return results


def local_backend_record() -> dict[str, str]:
    return {"kind": BackendKind.LOCAL.value}
