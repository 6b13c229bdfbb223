"""The window's generation flow: build a request from the controls and the canvas (or a gallery picture's
recipe), submit it as a job, and show its progress and results on the variation grid or the canvas."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject

from studio.backends.base import BackendKind
from studio.recipe.request import (
    GenerationRequest,
    GenerationResult,
    RequestError,
    variation_seed_for,
)
from studio.ui.canvas_images import pil_to_qimage
from studio.ui.jobs import Job, JobKind, Progress, Target

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow


class GenerationController(QObject):
    """Generate, Regenerate and Variations, and what each job's signals change in the window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.grid_results: list[GenerationResult] = []  # the finished run the variation grid shows
        b = window.backend
        b.started.connect(self._on_started)
        b.step.connect(self._on_step)
        b.finished.connect(self._on_finished)
        b.failed.connect(self._on_failed)
        b.cancelled.connect(self._on_cancelled)
        window.grid.picked.connect(self.pick_variation)
        window.grid.chosen.connect(self.keep_variation)

    def _status(self, message: str, ms: int) -> None:
        self.window.statusBar().showMessage(message, ms)

    # ------------------------------------------------------------------ requests

    def build_request(self, **overrides: Any) -> GenerationRequest:
        w = self.window
        fields = w.controls.request_fields()
        where = BackendKind(overrides.get("backend") or w.run_on.kind.value)
        fields["backend"] = where.value  # the job keeps its place, whatever is chosen while it waits
        if where is BackendKind.COMFYUI:
            fields["model"] = w.run_on.server_model or w.models.wanted()
            fields["vae"] = ""  # a server decodes with its checkpoint's own VAE
        else:
            fields["model"] = w.models.wanted()
            fields["vae"] = w.models.vaes().get(str(fields["model"]), "")
        outpaint = w.canvas.outpaint()
        if outpaint is not None:  # the Extend tool's picture: an outpaint of the one before, as the CLI runs it
            source, extension = outpaint
            fields.update(init_image=source, outpaint=extension.extents, outpaint_fill=extension.fill,
                          outpaint_overlap=extension.overlap)
        elif w.canvas.has_image() and w.canvas.has_mask():
            fields["init_image"] = w.canvas.image()
            fields["mask"] = w.canvas.mask()
        elif w.canvas.has_image() and w.controls.from_canvas.isChecked():
            fields["init_image"] = w.canvas.image()
        if "init_image" in fields:
            fields["parent_id"] = w.canvas.source_id()  # the gallery links "made from" / "used for"
        fields.update(overrides)
        return GenerationRequest(**fields).validate()

    def generate(self) -> None:
        self.generate_batch(self.window.controls.batch.value())

    def generate_batch(self, count: int) -> Job | None:
        """Run a batch of `count` (Ctrl+4, Ctrl+9): the Batch field says so, as it says what Generate runs."""
        controls = self.window.controls
        controls.batch.setValue(count)
        controls.seed.before_run()
        try:
            request = self.build_request()
        except RequestError as exc:
            self._status(str(exc), 8000)
            return None
        return self.submit(request)

    def submit(self, request: GenerationRequest, restore: list[tuple[Any, float, float]] | None = None) -> Job:
        """Queue `request`; `restore` lists the fields to put back when it ends (widget, value before, value set)."""
        seeds = request.batch_seeds()
        # Text-to-image previews fill the preview grid (one tile, or one per variation); an inpaint
        # previews on the canvas, over the region it repaints.
        job = Job(JobKind.GENERATE, request=request, preview_all=request.batch_size > 1,
                  target=Target.GRID if request.batch_size > 1 or request.mode == "txt2img" else Target.CANVAS,
                  seeds=seeds, aspect=_picture_aspect(request), restore=restore or [],
                  labels=[f"seed {s} · variation {request.item(k).variation_seed}" if request.varies() else
                          f"seed {s}" for k, s in enumerate(seeds)])
        self.window.backend.submit(job)
        self.window.set_busy(True)
        return job

    def cancel(self) -> None:
        if self.window.backend.busy():
            self.window.backend.cancel_current()
            self._status("Cancelling…", 2000)

    # ------------------------------------------------------------------ a job's signals

    def _on_started(self, job: Job) -> None:
        if job.kind is not JobKind.GENERATE:
            return
        w = self.window
        if job.target is Target.GRID:
            self.grid_results = []
            w.grid.start(job.seeds, job.labels, job.aspect)
            w.center.setCurrentWidget(w.grid)
        else:
            w.center.setCurrentWidget(w.canvas)
        w.progress.setValue(0)
        w.progress.setFormat("Starting…")

    def _on_step(self, job: Job, progress: Progress) -> None:
        w = self.window
        w.progress.setMaximum(progress.total)
        w.progress.setValue(progress.step)
        rate = progress.step / max(progress.elapsed, 1e-6)
        left = (progress.total - progress.step) / max(rate, 1e-6)
        w.progress.setFormat(f"Step {progress.step}/{progress.total}{_scale(job.request)} · {rate:.1f} it/s · "
                             f"{left:.1f} s left")
        if job.target is Target.GRID:
            w.grid.set_previews(progress.previews)
        elif progress.previews:
            w.canvas.show_preview(progress.previews[0], progress.region)

    def _on_finished(self, job: Job) -> None:
        if job.kind is not JobKind.GENERATE:
            return
        w, results = self.window, job.results
        _put_back(job.restore)
        seconds = time.perf_counter() - (job.started_at or time.perf_counter())
        w.timing_label.setText(f"{len(results)} image{'s' if len(results) > 1 else ''} in {seconds:.1f} s")
        w.progress.setValue(w.progress.maximum())
        w.progress.setFormat("Done")
        if job.target is Target.GRID:
            self.grid_results = results  # what the tiles show: picked and kept by index
            for k, result in enumerate(results):
                w.grid.set_final(k, pil_to_qimage(result.image))
        if len(results) == 1:
            w.canvas.show_preview(None)
            # An inpaint's mask stays on its result, so Generate again re-rolls it with another seed;
            # Clear mask (Ctrl+Shift+M) or Ctrl+Z is one step away.
            w.canvas.apply_result(results[0].image, f"Generate (seed {results[0].seed})",
                                  source_id=results[0].gallery_id)
            w.center.setCurrentWidget(w.canvas)
        if w.gallery_panel is not None:
            w.gallery_panel.refresh()
            # The new pictures in view, the first one's settings shown.
            w.gallery_panel.show_new([r.gallery_id for r in results if r.gallery_id is not None])

    def _on_failed(self, job: Job) -> None:
        if job.kind is not JobKind.GENERATE:
            return
        w = self.window
        _put_back(job.restore)
        if job.target is Target.GRID:
            w.center.setCurrentWidget(w.canvas)  # no tile will fill: show the picture, not blanks
        w.canvas.show_preview(None)
        w.progress.setFormat("Failed")
        self._status(f"Generation failed: {job.error}", 15000)

    def _on_cancelled(self, job: Job) -> None:
        if job.kind is not JobKind.GENERATE:
            return
        _put_back(job.restore)
        began = job.started_at is not None  # a queued job never showed
        if job.target is Target.GRID and began:
            self.window.grid.stop()
        self.window.progress.setFormat("Cancelled")
        if began and not self.window.backend.busy():  # a queued job would replace it at once
            self._status("Cancelled — the last preview stays on screen", 5000)

    # ------------------------------------------------------------------ the variation grid

    def pick_variation(self, index: int) -> None:
        """A click on a tile: the seed field and the gallery name that picture. The seed counts as
        used, so an unlocked Generate still moves on to a new one."""
        seed = self.window.controls.seed
        seed.set_seed(self.window.grid.seed(index))
        seed.mark_used()
        self._show_in_gallery(index)

    def keep_variation(self, index: int) -> None:
        """A double-click on a finished tile: its picture goes on the canvas (one undo step) and its seed is kept."""
        w, results = self.window, self.grid_results
        if 0 <= index < len(results):
            w.canvas.apply_result(results[index].image, f"Keep variation (seed {results[index].seed})",
                                  source_id=results[index].gallery_id)
            w.center.setCurrentWidget(w.canvas)
            self.adopt_seed(results[index].seed)
            self._show_in_gallery(index)

    def _show_in_gallery(self, index: int) -> None:
        panel, results = self.window.gallery_panel, self.grid_results
        if panel is not None and 0 <= index < len(results) and results[index].gallery_id is not None:
            panel.select_image(results[index].gallery_id)

    # ------------------------------------------------------------------ from a gallery picture

    def adopt_seed(self, seed: int) -> None:
        controls = self.window.controls
        controls.seed.set_seed(seed)
        controls.seed.lock.setChecked(True)
        self._status(f"Seed set to {seed} (locked)", 4000)

    def reuse(self, recipe: dict[str, Any]) -> dict[str, Any]:
        """Reuse a recipe's settings; its LoRAs are looked up by hash where this library names them otherwise.
        Returns the recipe as it is reused."""
        from studio.engine.library import match_loras

        if recipe.get("loras"):
            recipe = {**recipe, "prompt": match_loras(str(recipe.get("prompt") or ""), recipe["loras"],
                                                      self.window.library_panel.items)}
        self.window.controls.apply_recipe(recipe)
        return recipe

    def _request_of(self, recipe: dict[str, Any]) -> GenerationRequest | None:
        """The request that made a gallery picture, whole: model, inpaint settings, variation, its init image
        and mask (kept by the gallery); None, with the reason in the status bar, when it cannot run again."""
        from studio.recipe.request import from_recipe

        gallery = self.window.gallery
        inputs = {}
        for what, key in (("init image", "init_image_hash"), ("mask", "mask_hash")):
            digest = recipe.get(key)
            inputs[what] = gallery.input_image(digest) if digest and gallery is not None else None
            if digest and inputs[what] is None:
                self._status(f"The {what} this picture was made from is no longer kept in the "
                             "gallery: open it on the canvas and generate from there", 10000)
                return None
        model = recipe.get("model") if isinstance(recipe.get("model"), dict) else {}
        loaded = self.window.models.info
        if not (model.get("name") or model.get("path")) and loaded:
            recipe = {**recipe, "model": {"name": loaded["ref"]}}  # a recipe naming none: this one
        try:
            request = from_recipe(recipe, inputs["init image"], inputs["mask"])
            return request.item(min(int(recipe.get("batch_index") or 0), request.batch_size - 1)).validate()
        except (RequestError, TypeError, ValueError) as exc:
            self._status(f"This picture cannot be made again: {exc}", 10000)
            return None

    def regenerate(self, recipe: dict[str, Any]) -> None:
        """The picture again from its whole recipe (not from the controls and the canvas): the same model,
        inpaint settings, variation and input images; the controls show its settings."""
        request = self._request_of(self.reuse(recipe))
        if request is not None:
            self.window.controls.seed.lock.setChecked(True)
            self.submit(request)

    def variations_of(self, recipe: dict[str, Any]) -> None:
        """Four small changes of one picture: its whole recipe, four variation seeds. While they run, the
        Batch and Variation fields show it; then they go back (unless changed meanwhile), so the next
        Generate is the plain seed again."""
        request = self._request_of(self.reuse(recipe))
        if request is None:
            return
        variation, batch = self.window.controls.variation, self.window.controls.batch
        strength = max(request.variation_strength, 0.15)
        restore = [(variation, variation.value(), strength), (batch, batch.value(), 4)]
        variation.setValue(strength)
        batch.setValue(4)
        try:
            varied = replace(request, batch_size=4, variation_strength=strength,
                             variation_seed=variation_seed_for(request.seed)).validate()
        except RequestError as exc:
            self._status(str(exc), 8000)
            _put_back(restore)
            return
        self.submit(varied, restore)


def _put_back(fields: list[tuple[Any, float, float]]) -> None:
    """(widget, value before, value set): each widget that still shows the value set gets its own back."""
    for widget, before, shown in fields:
        if widget.value() == shown:
            widget.setValue(before)


def _scale(request: GenerationRequest | None) -> str:
    """Image-to-image and inpaint run strength x steps: say so beside the step count."""
    if request is None or request.mode == "txt2img" or request.strength >= 1:
        return ""
    return f" ({request.strength:g} × {request.steps})"


def _picture_aspect(request: GenerationRequest) -> float:
    """Width / height of what `request` makes: its size, else its start image's (extended, for an
    outpaint), else square (a model's native size is square)."""
    if request.width and request.height:
        return request.width / request.height
    if request.init_image is not None:
        left, top, right, bottom = request.outpaint or (0, 0, 0, 0)
        return (request.init_image.width + left + right) / (request.init_image.height + top + bottom)
    return 1.0
