"""Undo commands of the canvas: a mask stroke, a whole-mask change, and an image replacement.

Each command stores only what it needs to go both ways: a stroke its touched tiles, a mask change
two compressed snapshots, an image replacement the two images (QImages share their pixels with the
canvas, so the current image is not copied) and the masks that went with them.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QRect
from PySide6.QtGui import QImage, QUndoCommand

from studio.ui.canvas_mask import MaskLayer, MaskSnapshot, StrokeDelta

MaskChanged = Callable[[QRect], None]
ImageSwap = Callable[[QImage, MaskSnapshot, int, int], None]


class StrokeCommand(QUndoCommand):
    """One brush or eraser stroke, already painted when pushed."""

    def __init__(self, layer: MaskLayer, delta: StrokeDelta, text: str, changed: MaskChanged) -> None:
        super().__init__(text)
        self._layer = layer
        self._delta = delta
        self._changed = changed
        self._painted = True  # QUndoStack.push() calls redo(); the stroke is on the mask already

    @property
    def nbytes(self) -> int:
        return self._delta.nbytes

    @property
    def bounds(self) -> QRect:
        """The rectangle (image coordinates) the stroke touched."""
        return self._delta.bounds

    def redo(self) -> None:
        if self._painted:
            self._painted = False
            return
        self._changed(self._layer.put(self._delta.after))

    def undo(self) -> None:
        self._changed(self._layer.put(self._delta.before))


class MaskCommand(QUndoCommand):
    """A whole-mask change (set, clear, invert, fill), applied by redo()."""

    def __init__(
        self, layer: MaskLayer, before: MaskSnapshot, after: MaskSnapshot, text: str, changed: MaskChanged
    ) -> None:
        super().__init__(text)
        self._layer = layer
        self._before = before
        self._after = after
        self._changed = changed

    @property
    def nbytes(self) -> int:
        return self._before.nbytes + self._after.nbytes

    def redo(self) -> None:
        self._layer.restore(self._after)
        self._changed(QRect(0, 0, self._layer.width, self._layer.height))

    def undo(self) -> None:
        self._layer.restore(self._before)
        self._changed(QRect(0, 0, self._layer.width, self._layer.height))


class ImageCommand(QUndoCommand):
    """Replace the picture and its mask (a generation result, an extension, an opened file).

    `shift` is where the old image's top-left lands in the new one (an outpaint's left and top
    extents), so the view can keep the old pixels where they were on screen.
    """

    def __init__(
        self,
        swap: ImageSwap,
        before: tuple[QImage, MaskSnapshot],
        after: tuple[QImage, MaskSnapshot],
        text: str,
        shift: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__(text)
        self._swap = swap
        self._before = before
        self._after = after
        self._shift = shift

    @property
    def nbytes(self) -> int:
        images = self._before[0].sizeInBytes() + self._after[0].sizeInBytes()
        return images + self._before[1].nbytes + self._after[1].nbytes

    def redo(self) -> None:
        self._swap(self._after[0], self._after[1], self._shift[0], self._shift[1])

    def undo(self) -> None:
        self._swap(self._before[0], self._before[1], -self._shift[0], -self._shift[1])
