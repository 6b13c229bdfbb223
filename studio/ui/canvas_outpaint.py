"""Which outpaint a canvas picture is, so the window can ask for the outpaint itself.

The canvas extends a picture at once (to show the new area prefilled and masked), but a generation
from that is an outpaint of the picture before it: the window sends the smaller picture with the
extents, as `studio generate --outpaint` does, and the gallery records `Mode: outpaint`. The extension
travels with the picture as a QImage text key (through undo and redo), and counts only while the
canvas holds exactly what that extension gives: a mask painted on, or a changed picture, make it an
inpaint of what is there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

from studio.engine import canvas_ops
from studio.recipe.request import GenerationRequest

OUTPAINT_KEY = "studio-outpaint"  # QImage text key: "left,top,right,bottom,overlap,fill"
OVERLAP = GenerationRequest.outpaint_overlap  # px the new area's mask reaches into the picture


@dataclass(frozen=True)
class Extension:
    """How a picture was grown: extents per side (as extend_canvas really used them), overlap, fill."""

    extents: canvas_ops.Box
    overlap: int
    fill: str

    def text(self) -> str:
        return ",".join(map(str, (*self.extents, self.overlap, self.fill)))

    @classmethod
    def of(cls, image: QImage) -> Extension | None:
        parts = image.text(OUTPAINT_KEY).split(",")
        if len(parts) != 6 or not all(p.isdigit() for p in parts[:5]):
            return None
        left, top, right, bottom, overlap = map(int, parts[:5])
        return cls((left, top, right, bottom), overlap, parts[5])


def outpaint_of(image: Image.Image, mask: Image.Image | None, extension: Extension | None) -> Image.Image | None:
    """The picture `image` is an outpaint of, when extending it by `extension` gives exactly `image`
    and `mask`; else None."""
    if extension is None or mask is None:
        return None
    left, top, right, bottom = extension.extents
    if left + right >= image.width or top + bottom >= image.height:
        return None
    source = image.convert("RGB").crop((left, top, image.width - right, image.height - bottom))
    grown, grown_mask = canvas_ops.extend_canvas(source, *extension.extents, overlap=extension.overlap,
                                                 fill=extension.fill)
    same = (grown.size == image.size and np.array_equal(np.asarray(grown), np.asarray(image.convert("RGB")))
            and np.array_equal(np.asarray(grown_mask), np.asarray(mask)))
    return source if same else None
