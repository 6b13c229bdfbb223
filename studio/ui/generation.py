"""The window's generation flow: build a request from the controls and the canvas (or a gallery picture's
recipe), submit it as a job, and show its progress and results on the variation grid or the canvas.

Several jobs can run at once (on ComfyUI servers): each grid job fills its own tiles (a job that starts
while another grid job runs adds its tiles after that one's), the canvas shows the previews of the oldest
running canvas job, and the progress bar sums the running jobs' steps."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QPoint, Qt
from PySide6.QtWidgets import QMenu

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
        self.grid_results: list[GenerationResult | None] = []  # the grid's pictures by tile (None: not made)
        self._tiles: dict[Job, int] = {}  # each running grid job: its first tile
        self._progress: dict[Job, Progress] = {}  # each running job's latest step
        b = window.backend
        b.started.connect(self._on_started)
        b.step.connect(self._on_step)
        b.finished.connect(self._on_finished)
        b.failed.connect(self._on_failed)
        b.cancelled.connect(self._on_cancelled)
        window.grid.picked.connect(self.pick_variation)
        # A right-click on a running job's tile cancels that job alone (Cancel stops every running one), as a
        # click on a job in krita-ai-diffusion's queue does.
        window.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        window.grid.customContextMenuRequested.connect(self._tile_menu)
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
        """Every running job stops (krita-ai-diffusion's "cancel active"); the queued ones stay (Clear queue)."""
        if self.window.backend.running():
            self.window.backend.cancel_running()
            self._status("Cancelling…", 2000)

    def job_at(self, tile: int) -> Job | None:
        """The running job that tile `tile` of the grid belongs to."""
        return next((job for job, first in self._tiles.items() if first <= tile < first + len(job.seeds)), None)

    def _tile_menu(self, pos: QPoint) -> None:
        job = self.job_at(self.window.grid.index_at(pos.x(), pos.y()))
        if job is None:
            return
        menu = QMenu(self.window.grid)
        seeds = ", ".join(str(s) for s in job.seeds[:4]) + (" …" if len(job.seeds) > 4 else "")
        menu.addAction(f"Cancel this job (seed {seeds})", lambda: self.window.backend.cancel(job))
        menu.exec(self.window.grid.mapToGlobal(pos))

    # ------------------------------------------------------------------ a job's signals

    def _on_started(self, job: Job) -> None:
        if job.kind is not JobKind.GENERATE:
            return
        w = self.window
        if job.target is Target.GRID:
            if self._tiles:  # another grid job still runs: its tiles stay, this one's follow them
                self._tiles[job] = w.grid.add(job.seeds, job.labels)
                self.grid_results += [None] * len(job.seeds)
            else:
                w.grid.start(job.seeds, job.labels, job.aspect)
                self._tiles[job], self.grid_results = 0, [None] * len(job.seeds)
            w.center.setCurrentWidget(w.grid)
        else:
            w.center.setCurrentWidget(w.canvas)
        self._show_progress()

    def _on_step(self, job: Job, progress: Progress) -> None:
        w = self.window
        self._progress[job] = progress
        self._show_progress()
        if job in self._tiles:
            w.grid.set_previews(progress.previews, self._tiles[job] + progress.item)
        elif job.target is Target.CANVAS and progress.previews and job is self._canvas_job():
            w.canvas.show_preview(progress.previews[0], progress.region)

    def _canvas_job(self) -> Job | None:
        """The job whose previews the canvas shows: the oldest running one that paints there."""
        return next((j for j in self.window.backend.running() if j.target is Target.CANVAS), None)

    def _show_progress(self, ended: str = "") -> None:
        """The bar over every running job that makes pictures: steps summed, time left of the slowest.
        `ended` is what it says when none runs any more (a job just ended: "Done", "Failed", …)."""
        w = self.window
        jobs = [j for j in w.backend.running() if j.kind is not JobKind.LOAD_MODEL]
        if not jobs:
            if ended == "Done":
                w.progress.setValue(w.progress.maximum())
            if ended:
                w.progress.setFormat(ended)
            return
        seen = [self._progress[j] for j in jobs if j in self._progress]
        if not seen:
            w.progress.setValue(0)
            w.progress.setFormat("Starting…" if len(jobs) == 1 else f"{len(jobs)} jobs · starting…")
            return
        step, total = sum(p.step for p in seen), sum(p.total for p in seen)
        w.progress.setMaximum(total)
        w.progress.setValue(step)
        rates = [p.step / max(p.elapsed, 1e-6) for p in seen]
        left = max((p.total - p.step) / max(rate, 1e-6) for p, rate in zip(seen, rates))
        if len(jobs) == 1:
            w.progress.setFormat(f"Step {step}/{total}{_scale(jobs[0].request)} · {rates[0]:.1f} it/s · "
                                 f"{left:.1f} s left")
        else:
            w.progress.setFormat(f"{len(jobs)} jobs · step {step}/{total} · {sum(rates):.1f} it/s · "
                                 f"{left:.1f} s left")

    def _forget(self, job: Job) -> int | None:
        """A job ended: its progress goes; its first tile, when it had tiles."""
        self._progress.pop(job, None)
        return self._tiles.pop(job, None)

    def _on_finished(self, job: Job) -> None:
        first = self._forget(job)
        if job.kind is not JobKind.GENERATE:
            self._show_progress()  # the other running jobs' progress; the bar is left as it was if none
            return
        w, results = self.window, job.results
        _put_back(job.restore)
        seconds = time.perf_counter() - (job.started_at or time.perf_counter())
        w.timing_label.setText(f"{len(results)} image{'s' if len(results) > 1 else ''} in {seconds:.1f} s")
        self._show_progress("Done")
        if first is not None:
            for k, result in enumerate(results):  # what the tiles show: picked and kept by index
                self.grid_results[first + k] = result
                w.grid.set_final(first + k, pil_to_qimage(result.image))
        if len(results) == 1:
            if self._canvas_job() is None:
                w.canvas.show_preview(None)
            # An inpaint's mask stays on its result, so Generate again re-rolls it with another seed;
            # Clear mask (Ctrl+Shift+M) or Ctrl+Z is one step away.
            w.canvas.apply_result(results[0].image, f"Generate (seed {results[0].seed})",
                                  source_id=results[0].gallery_id)
            if not self._tiles:  # a grid job still running keeps the grid in view
                w.center.setCurrentWidget(w.canvas)
        self._show_new(results)

    def _show_new(self, results: list[GenerationResult]) -> None:
        panel = self.window.gallery_panel
        if panel is not None and results:
            panel.refresh()
            # The new pictures in view, the first one's settings shown.
            panel.show_new([r.gallery_id for r in results if r.gallery_id is not None])

    def _on_failed(self, job: Job) -> None:
        first = self._forget(job)
        if job.kind is not JobKind.GENERATE:
            self._show_progress()  # the other running jobs' progress; the bar is left as it was if none
            return
        w = self.window
        _put_back(job.restore)
        if first is not None and self._tiles:
            w.grid.stop(first, len(job.seeds), "failed")  # the other jobs' tiles still fill
        elif first is not None:
            w.center.setCurrentWidget(w.canvas)  # no tile will fill: show the picture, not blanks
        if self._canvas_job() is None:
            w.canvas.show_preview(None)
        self._show_progress("Failed")
        self._status(f"Generation failed: {job.error}", 15000)
        self._show_new(job.results)  # what was made before it failed (every server dropped out) is kept

    def _on_cancelled(self, job: Job) -> None:
        first = self._forget(job)
        if job.kind is not JobKind.GENERATE:
            self._show_progress()  # the other running jobs' progress; the bar is left as it was if none
            return
        _put_back(job.restore)
        began = job.started_at is not None  # a queued job never showed
        if first is not None:
            self.window.grid.stop(first, len(job.seeds))
        self._show_progress("Cancelled")
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
        result = results[index] if 0 <= index < len(results) else None
        if result is not None:
            w.canvas.apply_result(result.image, f"Keep variation (seed {result.seed})", source_id=result.gallery_id)
            w.center.setCurrentWidget(w.canvas)
            self.adopt_seed(result.seed)
            self._show_in_gallery(index)

    def _show_in_gallery(self, index: int) -> None:
        panel, results = self.window.gallery_panel, self.grid_results
        result = results[index] if 0 <= index < len(results) else None
        if panel is not None and result is not None and result.gallery_id is not None:
            panel.select_image(result.gallery_id)

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
    if request is not None and request.mode == "redraw":  # the count runs over every tile
        return f" (tiles of {request.redraw_denoise:g} × {request.steps})"
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
