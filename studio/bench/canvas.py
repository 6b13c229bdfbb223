"""`python -m studio.bench canvas [--size 4096] [--segments 500] [--brush 64] [--json]`

How the canvas holds up on a large image: the time of each stroke segment (painting the dabs, the
overlay and the repaint of what changed, as after a mouse move), full repaints, the memory one
stroke's undo step keeps against a whole-mask copy, and undo/redo times. People get milliseconds;
`--json` gives seconds, as every Studio benchmark does.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from studio.bench import report


def _picture(size: int) -> Image.Image:
    """A colourful size x size test picture, made with numpy so it costs little at 4096."""
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(8 * (x + y))], -1)
    return Image.fromarray((rgb * 255).astype(np.uint8), "RGB")


def _path(size: int, segments: int) -> list[tuple[float, float]]:
    """A long looping stroke across the image (a Lissajous curve), `segments` + 1 points."""
    pts = []
    for i in range(segments + 1):
        t = 2 * math.pi * i / segments
        pts.append((size * (0.5 + 0.4 * math.sin(3 * t)), size * (0.5 + 0.4 * math.sin(2 * t + 0.5))))
    return pts


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _settle(app: Any, action: Callable[[], None]) -> None:
    """Run an action and the repaint it causes."""
    action()
    app.processEvents()


def run(size: int, segments: int, brush: int) -> dict[str, Any]:
    """Measure; returns figures in seconds and bytes."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication

    from studio.ui.canvas import CanvasView

    app = QApplication.instance() or QApplication([])
    view = CanvasView()
    view.resize(1400, 900)
    view.show()
    view.set_image(_picture(size))
    view.set_brush_size(brush)
    app.processEvents()

    points = _path(size, segments)
    view.begin_stroke(QPointF(*points[0]))
    times = []
    for x, y in points[1:]:
        start = time.perf_counter()
        view.stroke_to(QPointF(x, y))
        app.processEvents()  # the partial repaint a mouse move causes
        times.append(time.perf_counter() - start)
    command = view.end_stroke()
    assert command is not None
    stroke_bbox = command.bounds
    undo = _timed(lambda: _settle(app, view.undo_stack.undo))
    redo = _timed(lambda: _settle(app, view.undo_stack.redo))
    repaint_fit = statistics.median(_timed(view.repaint) for _ in range(10))
    view.actual_size()
    repaint_actual = statistics.median(_timed(view.repaint) for _ in range(10))
    view.close()
    ordered = sorted(times)
    return {
        "size": size,
        "segments": segments,
        "brush_size": brush,
        "segment_median": statistics.median(times),
        "segment_p95": ordered[int(0.95 * (len(ordered) - 1))],
        "segment_worst": ordered[-1],
        "undo_bytes": command.nbytes,
        "bbox_copy_bytes": 2 * stroke_bbox.width() * stroke_bbox.height(),
        "full_mask_bytes": 2 * size * size,
        "undo": undo,
        "redo": redo,
        "repaint_fit": repaint_fit,
        "repaint_actual_size": repaint_actual,
    }


TIMES = ("segment_median", "segment_p95", "segment_worst", "undo", "redo", "repaint_fit", "repaint_actual_size")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench canvas", description=__doc__.splitlines()[2])
    parser.add_argument("--size", type=int, default=4096, help="image side in pixels")
    parser.add_argument("--segments", type=int, default=500, help="mouse-move segments in the stroke")
    parser.add_argument("--brush", type=int, default=64, help="brush diameter in image pixels")
    parser.add_argument("--json", action="store_true", help="one JSON object, times in seconds")
    args = parser.parse_args(argv)
    figures = run(args.size, args.segments, args.brush)
    ratio = figures["undo_bytes"] / figures["full_mask_bytes"]
    if args.json:
        rows = {f"{k}_s" if k in TIMES else k: v for k, v in figures.items()}
        rows["undo_vs_full_mask"] = ratio
    else:
        rows = {f"{k}_ms" if k in TIMES else k: v * 1000 if k in TIMES else v for k, v in figures.items()}
        rows["undo_vs_full_mask"] = ratio
    report(f"Canvas, {args.size}x{args.size} image, one {args.segments}-segment stroke", rows, args.json)
    return 0
