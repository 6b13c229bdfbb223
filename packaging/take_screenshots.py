"""Retake the README's screenshots of the real Studio window with the built-in model.

The script opens the same window the app opens (`studio.ui.app.create_window`, Fusion style, dark
palette) at the size of a first start on CPU, in a fresh temporary data folder, and drives it the way a designer
would: typing the prompt, setting the spin boxes, clicking Generate, the canvas tool bar's Extend
buttons and the gallery's search box. It waits on the app's own signals (model loaded, step,
finished), never on fixed sleeps, and grabs the window with `QWidget.grab()`.

Run it from the repository root under a virtual X server:

    xvfb-run -a -s "-screen 0 1600x950x24" python packaging/take_screenshots.py OUTDIR [--model NAME_OR_PATH]

It writes, into OUTDIR:

    variations-mid-generation.png   a batch of 4 half-way, the 2x2 grid of live previews
    outpaint.png                    a night landscape extended left and right, outpainted
    gallery.png                     ~30 images, searched for "landscape", the first result selected
    builtin-held-out-pair.png       "a large purple star on the left, orange background" on the canvas
    builtin-held-out-orange.png     "a large orange circle in the center, blue background", seeds 7..10
    library.png                     the Library tab over an AUTOMATIC1111 models folder added in place
    library-servers.png             the same with two ComfyUI servers configured: a stand-in that lists
                                    two checkpoints and a LoRA (up), and an address nothing answers at
                                    (not reachable); a server checkpoint chosen, so Run on says servers
    flux-single-file.png            a FLUX transformer file opened with CLIP-L, T5 and VAE from a ComfyUI
                                    models folder (tiny random weights: the picture is noise; the window
                                    shows FLUX's knobs and where each part came from)
    hires-fix.png                   a 64 px picture and the same seed brought to 256 px by hires fix, side
                                    by side in the gallery's before/after view
    redraw-mid.png                  that 64 px picture being redrawn x2 in 64 px tiles (tiled diffusion): a
                                    tile's live preview over its box on the canvas
    redraw.png                      the redraw beside its 64 px picture in the before/after view
    grid-cfg-seed.png               the comparison grid dialog: CFG 1, 2, 4 x seeds 1..4, every cell done
    grid-cfg-seed-image.png         the labelled grid image that run saved in the gallery

`--only hires,grid` takes just the named shots (library, variations, outpaint, gallery, held-out, flux,
hires, redraw, grid).

and prints each file with the generation time the app reported. It exits 1 when the model does not
load or a generation fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, Qt, QTimer, SignalInstance
from PySide6.QtWidgets import QApplication

from studio.ui.app import apply_look, create_window
from studio.ui.gallery_view import DETAIL_SIZE, GalleryPanel
from studio.ui.icons import app_icon
from studio.ui.main_window import MainWindow
from studio.ui.thumbnails import MissingRole

LOAD_TIMEOUT_S = 600  # torch and diffusers import on the backend thread: slow on a busy machine
RUN_TIMEOUT_S = 600
SETTLE_MS = 250  # a last repaint after everything is in place (layouts, thumbnails, status text)
POLL_MS = 50
EXTEND_PX = 32  # per side: a 64 px picture becomes 128 x 64, half of it outpainted
NIGHT = "a night landscape with mountains and a lake"
ORANGE = "a large orange circle in the center, blue background"
PURPLE = "a large purple star on the left, orange background"
HIRES_PROMPT = "a day landscape with mountains and a lake"
HIRES_DENOISE = 0.3  # the built-in model keeps its 64 px shapes at 0.3 and adds its own texture above it
# x2, not x4: at x4 most of the built-in model's 64 px tiles are flat sky or grass, which its VAE (trained on
# whole scenes) cannot encode; it makes grass of them.
REDRAW_SCALE = 2.0
GRID_PROMPT = "a large red triangle at the bottom, white background"
# The gallery shot's images: (prompt, first seed), four each. The last batch is landscapes, so the
# variation grid beside the gallery shows what its search finds.
GALLERY_BATCHES = (
    ("a large yellow star on the right, green background", 41),
    ("a day landscape with mountains and a lake", 11),
    ("a large red triangle at the bottom, white background", 51),
    ("a night landscape with a forest and a lake", 31),
    ("a day landscape with hills and clouds", 61),
    ("a sunset landscape with mountains and clouds", 21),
)


class ShotError(RuntimeError):
    """The app could not do what a screenshot needs (model load, generation, a wait timed out)."""


# ---------------------------------------------------------------------------------------- waiting


def wait_first(signals: dict[str, SignalInstance], trigger: Callable[[], object] | None = None,
               until: Callable[[str, tuple], bool] | None = None,
               timeout_s: float = RUN_TIMEOUT_S) -> tuple[str, tuple]:
    """Run the event loop until one of `signals` (name -> signal) fires with arguments that `until`
    accepts; return its name and arguments. `trigger` runs once everything is connected, so a
    signal it causes cannot be missed."""
    loop = QEventLoop()
    got: list[tuple[str, tuple]] = []
    slots = {}
    for name, signal in signals.items():
        def slot(*args: Any, name: str = name) -> None:
            if not got and (until is None or until(name, args)):
                got.append((name, args))
                loop.quit()
        slots[name] = slot
        signal.connect(slot)
    timer = QTimer(singleShot=True, interval=int(timeout_s * 1000))
    timer.timeout.connect(loop.quit)
    timer.start()
    try:
        if trigger is not None:
            trigger()
        if not got:
            loop.exec()
    finally:
        timer.stop()
        for name, signal in signals.items():
            signal.disconnect(slots[name])
    if not got:
        raise ShotError(f"timed out after {timeout_s:.0f} s waiting for {' or '.join(signals)}")
    return got[0]


def wait_until(ready: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Poll `ready` from a QTimer for state that has no signal of its own (layout, many thumbnails)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise ShotError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        pause(POLL_MS)


def pause(ms: int) -> None:
    """Let the event loop run for `ms` milliseconds (paints, queued signals)."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


# ---------------------------------------------------------------------------------------- the app


def start_app() -> QApplication:
    """The QApplication as `studio.ui.app.run_app` sets it up (name, style, palette, icon)."""
    app = QApplication([sys.argv[0]])
    app.setApplicationName("Studio")
    app.setWindowIcon(app_icon())
    apply_look(app)
    return app


def open_window(home: Path, model: str | None) -> MainWindow:
    """The real window as a first start lays it out, shown; its model is not loaded yet."""
    window = create_window(home, device="cpu", model=model)
    window.show()
    return window


def load_model(window: MainWindow) -> None:
    """Start the backend and load the model, as the app does once its window is on screen."""
    b = window.backend
    name, args = wait_first({"loaded": b.model_loaded, "failed": b.model_failed},
                            trigger=lambda: (b.start(), window.models.load(window.startup_model)),
                            timeout_s=LOAD_TIMEOUT_S)
    if name == "failed":  # the app would fall back to the built-in model: not what was asked for
        raise ShotError(f"the model {window.startup_model!r} did not load: {args[0]}")
    info = args[0]
    print(f"model: {info['name']} ({info['path']}) on {info['device']}, {info['native_size']} px native",
          flush=True)


def set_recipe(window: MainWindow, prompt: str, seed: int, batch: int = 1, cfg: float = 2.0,
               steps: int = 20) -> None:
    """Fill the controls like a designer: prompt, steps, guidance, batch, and the seed typed and locked
    (an unlocked seed that made the picture on screen moves on at the next click)."""
    c = window.controls
    c.prompt.setPlainText(prompt)
    c.steps.setValue(steps)
    c.cfg.setValue(cfg)
    c.batch.setValue(batch)
    c.seed.set_seed(seed)
    c.seed.lock.setChecked(True)


def generate(window: MainWindow, on_step: Callable[[int, int, list], bool] | None = None) -> str:
    """Click Generate and wait until the run ends; return the time the status bar reports.

    `on_step(step, total, previews)` sees each step signal; when it returns True the wait returns
    early, mid-run (see `finish`)."""
    b = window.backend

    def click() -> None:
        window.generate_button.click()
        if not b.busy():  # the request was refused before reaching the backend
            raise ShotError(f"Generate did nothing: {window.statusBar().currentMessage() or 'no reason shown'}")

    def until(name: str, args: tuple) -> bool:
        if name != "step" or on_step is None:
            return True  # the end of the run, whatever it was
        _job, progress = args
        return on_step(progress.step, progress.total, progress.previews)

    signals = {"finished": b.finished, "failed": b.failed, "cancelled": b.cancelled}
    if on_step is not None:
        signals["step"] = b.step
    name, args = wait_first(signals, trigger=click, until=until)
    return "" if name == "step" else _ended(window, name, args)


def finish(window: MainWindow) -> str:
    """Wait for the running generation to end; return the time the status bar reports."""
    b = window.backend
    name, args = wait_first({"finished": b.finished, "failed": b.failed, "cancelled": b.cancelled})
    return _ended(window, name, args)


def _ended(window: MainWindow, name: str, args: tuple) -> str:
    if name == "failed":
        raise ShotError(f"generation failed: {args[0].error}")
    if name == "cancelled":
        raise ShotError("generation was cancelled")
    return window.timing_label.text()  # "4 images in 3.6 s": the main window set it before we ran


def gallery_shown(panel: GalleryPanel) -> bool:
    """Every thumbnail in view and the detail picture decoded (asking for one queues its decoding)."""
    view, model = panel.view, panel.model
    area = view.viewport().rect()
    rows = [model.index(r) for r in range(model.rowCount())]
    shown = [i for i in rows if view.visualRect(i).intersects(area)]
    if rows and not shown:
        return False  # the grid is not laid out yet
    if not all(i.data(Qt.ItemDataRole.DecorationRole) is not None or i.data(MissingRole) for i in shown):
        return False
    record = panel.current_record()
    return (record is None or panel.loader.pixmap(record.id, record.file, DETAIL_SIZE) is not None
            or panel.loader.failed(record.id, DETAIL_SIZE))


def save(window: MainWindow, out: Path, name: str, settle: bool = True) -> Path:
    """Grab the window into out/name; `settle` first waits for the gallery's pictures and a last paint."""
    if settle:
        if window.gallery_panel is not None:
            wait_until(lambda: gallery_shown(window.gallery_panel), "the gallery's thumbnails")
        pause(SETTLE_MS)
    path = out / name
    if not window.grab().save(str(path)):
        raise ShotError(f"could not write {path}")
    return path


def report(path: Path, note: str) -> None:
    print(f"{path}  ({note})", flush=True)


# ---------------------------------------------------------------------------------------- the shots


def shot_variations(window: MainWindow, out: Path) -> None:
    """Batch 4 half-way through: the grid with four live previews, the progress bar mid-run."""
    set_recipe(window, ORANGE, seed=7, batch=4)
    # The batch runs as one, so all four tiles are half done together. Previews are throttled: a
    # step that carries them has just refreshed the grid (the last step always does, so a model
    # without previews is still grabbed before the end).
    generate(window, on_step=lambda step, total, previews: step >= total // 2 and (bool(previews) or step == total))
    path = save(window, out, "variations-mid-generation.png", settle=False)  # now, while it runs
    grabbed_at = window.progress.format()
    report(path, f"grabbed at {grabbed_at}; the run: {finish(window)}")


def shot_outpaint(window: MainWindow, out: Path) -> None:
    """A night landscape, extended left and right with the tool bar's Extend buttons, outpainted."""
    set_recipe(window, NIGHT, seed=3)
    print(f"  the landscape to extend: {generate(window)}", flush=True)
    bar = window.canvas_toolbar
    bar.extend_by.setValue(EXTEND_PX)
    bar.actions_by_name["extend_left"].trigger()
    bar.actions_by_name["extend_right"].trigger()
    if not window.canvas.has_mask():
        raise ShotError("extending the canvas left no outpaint mask")
    timing = generate(window)
    report(save(window, out, "outpaint.png"), f"the outpaint: {timing}")
    bar.actions_by_name["clear_mask"].trigger()  # the mask stays after a run; the next shots are text-to-image


def shot_gallery(window: MainWindow, out: Path) -> None:
    """Two dozen more images, then the search "landscape" and its first result selected."""
    for prompt, seed in GALLERY_BATCHES:
        set_recipe(window, prompt, seed=seed, batch=4)
        print(f"  {prompt!r}, seeds {seed}..{seed + 3}: {generate(window)}", flush=True)
    panel = window.gallery_panel
    if panel is None:
        raise ShotError("the window has no gallery")
    search(panel, "landscape")
    panel.view.setCurrentIndex(panel.model.index(0))  # the first result, as a click selects it
    report(save(window, out, "gallery.png"), f"{panel.count_label.text()} match \"landscape\"")


def search(panel: GalleryPanel, text: str) -> None:
    """Type into the search box and wait for the debounced query to reload the grid."""
    if panel.search.text() == text:
        return
    wait_first({"reset": panel.model.modelReset}, trigger=lambda: panel.search.setText(text),
               until=lambda _n, _a: panel.model.query.search == text, timeout_s=30)


def shot_held_out_pair(window: MainWindow, out: Path) -> None:
    """A held-out colour/shape pair on the canvas."""
    set_recipe(window, PURPLE, seed=7)
    timing = generate(window)
    report(save(window, out, "builtin-held-out-pair.png"), timing)


def shot_held_out_orange(window: MainWindow, out: Path) -> None:
    """The held-out orange circle at seeds 7..10, all four finished."""
    set_recipe(window, ORANGE, seed=7, batch=4)
    timing = generate(window)
    report(save(window, out, "builtin-held-out-orange.png"), timing)


def _library_folder(root: Path) -> Path:
    """An AUTOMATIC1111-style models folder of tiny random-weight files, written in the original formats."""
    import json

    from safetensors.torch import save_file

    from studio.bench import checkpoint_files as F

    models = root / "stable-diffusion-webui" / "models"
    for sub in ("Stable-diffusion", "Lora", "embeddings", "VAE"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    for family, name in (("sd1", "my-sd15-finetune"), ("sdxl", "my-sdxl-finetune")):
        unet, vae, texts = F.build_components(family, F.tiny_configs(family))
        F.save(F.ldm_state_dict(family, unet, vae, texts), models / "Stable-diffusion" / f"{name}.safetensors")
        tags = {"sd1": {"inkwash": 40, "brush strokes": 22}, "sdxl": {"papercut": 35, "layered paper": 18}}[family]
        lora = {"sd1": "inkwash-style", "sdxl": "papercut-xl"}[family]
        save_file(F.kohya_lora(family, unet, texts), str(models / "Lora" / f"{lora}.safetensors"),
                  metadata={"ss_tag_frequency": json.dumps({"train": tags})})
        save_file(F.embedding(family, texts), str(models / "embeddings" / f"{family}-negative.safetensors"))
        if family == "sd1":
            F.save(F.vae_tensors(vae), models / "VAE" / "sharp-decoder.safetensors")
    return models


def shot_library(window: MainWindow, out: Path, home: Path) -> None:
    """The Library tab over an A1111 models folder added in place, a LoRA selected with its training tags."""
    panel = window.library_panel
    folder = _library_folder(home)
    wait_first({"changed": panel.changed}, trigger=lambda: panel.add_folder(folder))
    window.library_dock.raise_()
    tree = panel.tree
    rows = [tree.topLevelItem(k) for k in range(tree.topLevelItemCount())]
    row = next(r for r in rows if r.text(0) == "papercut-xl")
    tree.setCurrentItem(row)
    wait_until(lambda: all(i.hash for i in panel.items), "the library's hashes")
    panel._show_details(row)
    report(save(window, out, "library.png"), f"{len(panel.items)} files")
    if window.gallery_panel is not None:
        window.gallery_dock.raise_()


class _ComfyStandIn(BaseHTTPRequestHandler):
    """Answers what the Library asks a ComfyUI server (/system_stats, /object_info/NODE); it makes no pictures."""

    answers: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.answers.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body or b"{}")

    def log_message(self, *args: object) -> None:
        pass


def comfyui_stand_in(checkpoints: list[str], loras: list[str]) -> ThreadingHTTPServer:
    def node(name: str, field: str, values: list[str]) -> bytes:
        return json.dumps({name: {"input": {"required": {field: [values]}}}}).encode()

    answers = {"/system_stats": json.dumps({"system": {"comfyui_version": "0.3.75"},
                                            "devices": [{"type": "cuda"}]}).encode(),
               "/object_info/CheckpointLoaderSimple": node("CheckpointLoaderSimple", "ckpt_name", checkpoints),
               "/object_info/LoraLoader": node("LoraLoader", "lora_name", loras)}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_ComfyStandIn,), {"answers": answers}))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def shot_library_servers(window: MainWindow, out: Path, home: Path) -> None:
    """The Library with a ComfyUI server's models beside the local ones, and a server that does not answer."""
    from studio.backends import settings as server_settings

    httpd = comfyui_stand_in(["sd15/dreamshaper_8.safetensors", "sdxl/juggernautXL_v9.safetensors"],
                             ["add_detail.safetensors"])
    try:
        server_settings.add(home, f"http://127.0.0.1:{httpd.server_address[1]}")
        server_settings.add(home, "http://127.0.0.1:9")  # nothing listens there
        window.run_on.reload()
        panel = window.library_panel
        window.server_watch.check()
        wait_until(lambda: window.server_watch.done() and panel.server_status.isVisible(), "the servers' answers")
        window.library_dock.raise_()
        tree = panel.tree
        row = next(tree.topLevelItem(k) for k in range(tree.topLevelItemCount())
                   if tree.topLevelItem(k).text(0) == "sd15/dreamshaper_8")
        tree.setCurrentItem(row)
        panel._activate(row)  # a double-click: the next jobs run on the servers with it
        report(save(window, out, "library-servers.png"), f"{tree.topLevelItemCount()} rows, "
                                                        f"model label: {window.model_label.text()}")
    finally:
        server_settings.save(home, server_settings.ServerSettings())  # the next shots run here
        window.run_on.reload()
        window.server_watch.check()
        httpd.shutdown()
        httpd.server_close()
    if window.gallery_panel is not None:
        window.gallery_dock.raise_()


def shot_flux(window: MainWindow, out: Path, home: Path) -> None:
    """A FLUX transformer alone, its parts found in a ComfyUI models folder of the library, one picture made."""
    from studio.bench import flow_checkpoint_files as W

    folder = home / "ComfyUI" / "models"
    paths = W.write_flux_files(folder, W.flux_components(W.flux_configs()))
    wait_first({"changed": window.library_panel.changed}, trigger=lambda: window.library_panel.add_folder(folder))
    window.library_dock.raise_()
    wait_first({"loaded": window.backend.model_loaded, "failed": window.backend.model_failed},
               trigger=lambda: window.models.load(str(paths["transformer"])))
    set_recipe(window, "a yellow star over a calm sea at dusk", seed=3, cfg=3.5, steps=4)
    timing = generate(window)
    report(save(window, out, "flux-single-file.png"), timing)


def shot_hires(window: MainWindow, out: Path) -> None:
    """One seed at the model's 64 px, then with hires fix x4 (256 px); the two compared in the gallery."""
    set_recipe(window, HIRES_PROMPT, seed=5)
    hires = window.controls.hires
    hires.setChecked(False)
    print(f"  64 px: {generate(window)}", flush=True)
    hires.setChecked(True)
    hires.scale.setValue(4.0)
    hires.steps.setValue(10)
    hires.denoise.setValue(HIRES_DENOISE)
    timing = generate(window)
    hires.setChecked(False)
    panel = window.gallery_panel
    if panel is None:
        raise ShotError("the window has no gallery")
    search(panel, "")
    selection = panel.view.selectionModel()
    panel.view.setCurrentIndex(panel.model.index(0))
    selection.select(panel.model.index(1), selection.SelectionFlag.Select)
    extras = getattr(window, "gallery_extras", None)
    if extras is None or not extras.open_compare():
        raise ShotError(f"the compare view did not open: {panel.status.text()}")
    extras.compare.view.set_split(0.5)
    report(save(window, out, "hires-fix.png"), f"hires fix 64 -> 256 px: {timing}")
    extras.close_compare()


def shot_redraw(window: MainWindow, out: Path) -> None:
    """The hires shot's 64 px picture redrawn x2 with the Upscale dialog's Redraw detail at its defaults:
    grabbed mid-run (a tile's preview over its box), then beside its picture in the compare view."""
    from studio.ui.extras import start_redraw
    from studio.ui.upscale_dialog import UpscaleDialog

    set_recipe(window, HIRES_PROMPT, seed=5)
    window.controls.hires.setChecked(False)
    print(f"  64 px: {generate(window)}", flush=True)
    dialog = UpscaleDialog([], None, window)
    dialog.scale.setValue(REDRAW_SCALE)
    dialog.redraw.setChecked(True)
    fields = dialog.redraw_fields()
    assert fields is not None
    b = window.backend

    def half_way(name: str, args: tuple) -> bool:
        progress = args[1] if name == "step" else None
        return progress is None or (progress.step >= progress.total // 2 and bool(progress.previews))

    def click() -> None:
        if start_redraw(window, window.canvas.image(), window.canvas.source_id(), None, fields) is None:
            raise ShotError(f"the redraw did not start: {window.statusBar().currentMessage()}")

    wait_first({"step": b.step, "finished": b.finished, "failed": b.failed}, trigger=click, until=half_way)
    path = save(window, out, "redraw-mid.png", settle=False)
    report(path, "mid-redraw")
    timing = finish(window)
    panel, extras = window.gallery_panel, getattr(window, "gallery_extras", None)
    if panel is None or extras is None:
        raise ShotError("the window has no gallery")
    search(panel, "")
    panel.view.setCurrentIndex(panel.model.index(0))  # the redraw; its parent is the 64 px picture
    if not extras.open_compare():
        raise ShotError(f"the compare view did not open: {panel.status.text()}")
    extras.compare.view.set_split(0.5)
    report(save(window, out, "redraw.png"), f"tiled redraw 64 -> 128 px: {timing}")
    extras.close_compare()


def shot_grid(window: MainWindow, out: Path) -> None:
    """A CFG x seed comparison grid run from its dialog, every cell finished."""
    from studio.ui.extras import open_grid_dialog

    set_recipe(window, GRID_PROMPT, seed=1)
    dialog = open_grid_dialog(window)
    dialog.resize(760, 720)
    dialog.rows[0][0].setCurrentText("cfg")
    dialog.rows[0][1].setText("1, 2, 4")
    dialog.rows[1][0].setCurrentText("seed")
    dialog.rows[1][1].setText("1..4")
    b = window.backend
    name, args = wait_first({"finished": b.finished, "failed": b.failed}, trigger=dialog.run_button.click)
    if name == "failed":
        raise ShotError(f"the grid failed: {args[0].error}")
    wait_until(lambda: all(dialog.tiles.image(k) is not None for k in range(dialog.tiles.count())), "the tiles")
    pause(SETTLE_MS)
    path = out / "grid-cfg-seed.png"
    if not dialog.grab().save(str(path)):
        raise ShotError(f"could not write {path}")
    grid, *cells = args[0].results
    grid.image.save(out / "grid-cfg-seed-image.png")
    report(path, f"{len(cells)} cells in {grid.recipe['seconds']:.1f} s; the grid image "
                 f"{grid.image.width}x{grid.image.height}")
    dialog.close()


SHOTS = ("library", "variations", "outpaint", "gallery", "held-out", "flux", "hires", "redraw", "grid")


def take_all(window: MainWindow, out: Path, home: Path, only: set[str] | None = None) -> None:
    def wanted(name: str) -> bool:
        return only is None or name in only

    if wanted("library"):
        shot_library(window, out, home)
        shot_library_servers(window, out, home)
    if wanted("variations"):
        shot_variations(window, out)
    if wanted("outpaint"):
        shot_outpaint(window, out)
    if wanted("gallery"):
        shot_gallery(window, out)
        if window.gallery_panel is not None:
            search(window.gallery_panel, "")  # the next shots show the whole gallery, newest selected
    if wanted("held-out"):
        shot_held_out_pair(window, out)
        shot_held_out_orange(window, out)
    if wanted("hires"):
        shot_hires(window, out)
    if wanted("redraw"):
        shot_redraw(window, out)
    if wanted("grid"):
        shot_grid(window, out)
    if wanted("flux"):  # last: it loads another model
        shot_flux(window, out, home)


def close(window: MainWindow) -> None:
    """Close the window as the app does, then make sure the backend thread has ended: a model load
    cannot stop before it is done (the window then hides and closes once it is), and a QThread still
    running when Python exits aborts the process."""
    window.close()
    backend = window.backend
    if not backend.shutdown(0):
        print("waiting for the backend to finish loading a model…", file=sys.stderr, flush=True)
        if not backend.shutdown(LOAD_TIMEOUT_S * 1000):
            print("warning: the backend thread did not stop", file=sys.stderr)
    if window.gallery_panel is not None:
        window.gallery_panel.shutdown()  # stop thumbnail decoding before the data folder goes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="folder for the PNG files (created if missing)")
    parser.add_argument("--model", help="model name or folder (default: the app's default, the built-in model)")
    parser.add_argument("--only", help=f"comma-separated shots to take, of: {', '.join(SHOTS)}")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= set(SHOTS):
        parser.error(f"unknown shot(s): {', '.join(sorted(only - set(SHOTS)))}")
    args.outdir.mkdir(parents=True, exist_ok=True)
    _app = start_app()  # held for the whole run
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="studio-shots-", ignore_cleanup_errors=True) as home:
        window = open_window(Path(home), args.model)
        try:
            load_model(window)
            take_all(window, args.outdir, Path(home), only)
        except ShotError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            close(window)
    print(f"done in {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
