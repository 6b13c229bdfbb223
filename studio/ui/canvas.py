"""The canvas: shows the picture, paints the inpaint mask, zooms, pans, extends, shows previews.

A QWidget with its own paintEvent: the picture is one 32-bit QImage drawn through a zoom + offset
transform, and only the exposed part of it is drawn, so a 4096x4096 image costs what the window
shows. The mask lives in a MaskLayer (canvas_mask.py); strokes touch only their own rectangle.
Image coordinates never depend on the zoom: widget = offset + image * zoom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QUndoStack,
)
from PySide6.QtWidgets import QWidget

from studio.engine import canvas_ops
from studio.ui import canvas_paint as paint
from studio.ui.canvas_commands import ImageCommand, MaskCommand, StrokeCommand
from studio.ui.canvas_images import (
    IMAGE_SUFFIXES,
    as_qimage,
    gray_view_const,
    load_image_file,
    local_image_paths,
    qimage_to_pil,
    unreadable_reason,
)
from studio.ui.canvas_mask import MaskLayer, MaskSnapshot, snapshot_array
from studio.ui.canvas_outpaint import OUTPAINT_KEY, OVERLAP, Extension, outpaint_of
from studio.ui.canvas_preview import PreviewLayer
from studio.ui.canvas_view import FIT_MARGIN, ZoomPanView

BRUSH, ERASER, EXTEND = "brush", "eraser", "extend"
TOOLS = (BRUSH, ERASER, EXTEND)
UNDO_LIMIT = 100


SOURCE_KEY = "studio-gallery-id"  # QImage text key: the gallery image a canvas picture came from


def default_brush_size(width: int, height: int) -> int:
    """An eighth of the short side, 4 to 48 px: a stroke on a 64 px picture masks a detail, not half of it."""
    return max(4, min(48, round(min(width, height) / 8)))


class CanvasView(ZoomPanView):
    """The image canvas with mask painting, zoom/pan, outpaint extension and live previews.

    The mask is mode "L", white = repaint. Every edit (stroke, mask change, image replacement) is a
    command on `undo_stack`; the main window wires Ctrl+Z / Ctrl+Shift+Z to it.
    """

    image_changed = Signal()
    mask_changed = Signal()
    image_dropped = Signal(str)
    load_failed = Signal(str)
    extend_requested = Signal(int, int, int, int)
    tool_changed = Signal(str)
    brush_size_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        self._image = QImage()
        self._layer = MaskLayer()
        self._preview = PreviewLayer()
        self._tool = BRUSH
        self._brush_size = 48
        self._brush_chosen = False  # until the designer picks a size, it follows the picture's size
        self._hardness = 0.7
        self._grow = 0
        self._feather = 0
        self._effective: QImage | None = None
        self._extend_fill = "edge"
        self._cursor: QPointF | None = None
        self._space = False
        self._drag_sides: frozenset[str] = frozenset()
        self._drag_extents = (0, 0, 0, 0)
        self._checker = paint.checker_brush(self.palette())
        self.setAcceptDrops(True)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(160, 120)

    def _content_size(self) -> QSize:
        return self._image.size()

    def _fit_margin(self) -> float:
        # The extend tool needs room around the image to drag its edges into.
        return max(FIT_MARGIN, 0.12 * min(self.width(), self.height())) if self._tool == EXTEND else FIT_MARGIN

    # ------------------------------------------------------------------------------ image and mask

    def has_image(self) -> bool:
        return not self._image.isNull()

    def image(self) -> Image.Image | None:
        """The picture as a PIL image ("RGB", or "RGBA" if it has alpha); None while empty."""
        return qimage_to_pil(self._image) if self.has_image() else None

    def qimage(self) -> QImage:
        """The picture as the canvas holds it (shared, do not modify)."""
        return self._image

    def set_image(self, img: Image.Image | QImage, keep_mask: bool = False) -> None:
        """Show a new picture as a new document: the undo history is cleared and the view fitted.
        The mask is kept only with keep_mask and an unchanged size."""
        new = as_qimage(img)
        keep = keep_mask and new.size() == self._image.size()
        mask = self._layer.snapshot() if keep else MaskSnapshot(new.width(), new.height(), None)
        self.undo_stack.clear()
        self._fit_mode = True
        self._swap(new, mask, 0, 0)

    def mask(self) -> Image.Image | None:  # type: ignore[override]
        """The mask, mode "L" at the image size, white = repaint; None while there is no image.

        This shadows QWidget.mask() (a widget shape mask, which the canvas never uses; Qt calls the
        C++ one, not this), because the engine and main window speak of "the mask" everywhere."""
        return self._layer.to_pil() if self.has_image() else None

    def effective_mask(self) -> Image.Image | None:
        """The mask after the grow/feather set by set_mask_preview (what a generation would use)."""
        mask = self.mask()
        if mask is None or (self._grow == 0 and self._feather == 0):
            return mask
        return canvas_ops.grow_and_feather(mask, self._grow, self._feather)

    def has_mask(self) -> bool:
        return self.has_image() and not self._layer.is_empty()

    def set_mask(self, mask: Image.Image | QImage) -> None:
        """Replace the mask (undoable). Raises MaskError for a wrong size or a colour mask."""
        if not self.has_image():
            raise canvas_ops.MaskError("there is no image to put a mask on")
        pil = qimage_to_pil(mask) if isinstance(mask, QImage) else mask
        if pil.size != (self._image.width(), self._image.height()):
            raise canvas_ops.MaskError(
                f"mask is {pil.width}x{pil.height} but the image is {self._image.width()}x{self._image.height()}"
            )
        self._push_mask(canvas_ops.to_grey(pil), "Set mask")

    def clear_mask(self) -> None:
        if self.has_mask():
            self._push_mask(np.zeros((self._image.height(), self._image.width()), np.uint8), "Clear mask")

    def fill_mask(self) -> None:
        if self.has_image():
            self._push_mask(np.full((self._image.height(), self._image.width()), 255, np.uint8), "Fill mask")

    def invert_mask(self) -> None:
        if self.has_image():
            self._push_mask(255 - gray_view_const(self._layer.image), "Invert mask")

    def _push_mask(self, values: np.ndarray, text: str) -> None:
        before = self._layer.snapshot()
        self.undo_stack.push(MaskCommand(self._layer, before, snapshot_array(values), text, self._mask_edited))

    def apply_result(self, img: Image.Image | QImage, description: str, keep_mask: bool | None = None,
                     source_id: int | None = None) -> None:
        """Put a new picture on the canvas as one undoable step (a generation result, a paste).

        keep_mask None keeps the mask when the size is unchanged (re-rolling an inpaint with the same
        mask is common) and clears it otherwise; True/False force it (a mask never survives a resize).
        `source_id` is the gallery image it is (see source_id()).
        """
        new = as_qimage(img)
        if source_id is not None:
            new.setText(SOURCE_KEY, str(source_id))
        keep = keep_mask is not False and new.size() == self._image.size()
        after = self._layer.snapshot() if keep else MaskSnapshot(new.width(), new.height(), None)
        before = (self._image, self._layer.snapshot()) if self.has_image() else (QImage(), MaskSnapshot(0, 0, None))
        self.undo_stack.push(ImageCommand(self._swap, before, (new, after), description))

    def extend(self, left: int, top: int, right: int, bottom: int, fill: str | None = None,
               overlap: int = OVERLAP) -> None:
        """Grow the canvas for an outpaint (canvas_ops.extend_canvas): the new picture with its new
        area prefilled and the outpaint mask, as one undoable step. Raises ValueError for bad extents.

        Growing an extension left as it was extends its picture once by both, so the canvas stays one
        outpaint of that picture (what the window then asks for); otherwise the mask carries over.
        """
        src = self.image()
        if src is None:
            raise ValueError("there is no image to extend")
        fill = fill or self._extend_fill
        extents = (left, top, right, bottom)
        mask, earlier = (self.mask() if self.has_mask() else None), (0, 0, 0, 0)
        pending = self.outpaint()
        if pending is not None and (pending[1].fill, pending[1].overlap) == (fill, overlap):
            src, mask, earlier = pending[0], None, pending[1].extents
            extents = tuple(a + b for a, b in zip(earlier, extents, strict=True))  # type: ignore[assignment]
        canvas, new_mask = canvas_ops.extend_canvas(src, *extents, overlap=overlap, fill=fill, mask=mask)
        real = canvas_ops.snap_extents(src.size, extents)
        added = tuple(a - b for a, b in zip(real, earlier, strict=True))
        before = (self._image, self._layer.snapshot())
        grown = as_qimage(canvas)
        if self._image.text(SOURCE_KEY):  # an outpaint is made from the picture it extends
            grown.setText(SOURCE_KEY, self._image.text(SOURCE_KEY))
        grown.setText(OUTPAINT_KEY, Extension(real, overlap, fill).text())
        after = (grown, snapshot_array(np.asarray(new_mask)))
        text = "Extend canvas " + " ".join(f"{n}+{v}" for n, v in zip(paint.SIDES, added, strict=True) if v)
        self.undo_stack.push(ImageCommand(self._swap, before, after, text, shift=(added[0], added[1])))

    def size_label(self) -> str:
        """"W × H" over the picture's corner while its size is the point: with the Extend tool, and
        from an extension until a generation replaces it ("" otherwise; a drag shows its own)."""
        if not self.has_image() or (self._tool != EXTEND and Extension.of(self._image) is None):
            return ""
        return f"{self._image.width()} × {self._image.height()}"

    def outpaint(self) -> tuple[Image.Image, Extension] | None:
        """(the picture, extension) when the canvas holds exactly an extension of that picture, as the
        Extend tool left it: generating from it is an outpaint of that picture. None otherwise."""
        extension = Extension.of(self._image)
        source = outpaint_of(self.image(), self.mask(), extension) if extension and self.has_mask() else None
        return (source, extension) if source is not None and extension is not None else None

    def _swap(self, image: QImage, mask: MaskSnapshot, dx: int, dy: int) -> None:
        """Make `image` and `mask` current (used by set_image and the image commands)."""
        was_empty = not self.has_image()
        self._image = image
        if not self._brush_chosen and not image.isNull():
            self._set_brush_size(default_brush_size(image.width(), image.height()))
        self._layer.reset(image.width(), image.height())
        if not image.isNull():
            self._layer.restore(mask)
        self._effective = None
        self._preview.clear()
        if self._fit_mode or was_empty:
            self.fit()
        else:
            self._offset -= QPointF(dx, dy) * self._zoom
        self.update()
        self.image_changed.emit()
        self.mask_changed.emit()

    def _mask_edited(self, rect: QRect) -> None:
        """A command changed the mask inside `rect` (image coordinates)."""
        self._effective = None
        self._preview.mask_changed()
        self.update(self._to_widget_rect(QRectF(rect)))
        if self._effective_on():
            self.update()
        self.mask_changed.emit()

    # ---------------------------------------------------------------------------------- brush state

    def tool(self) -> str:
        return self._tool

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; choose one of {', '.join(TOOLS)}")
        if tool != self._tool:
            self._tool = tool
            if self._fit_mode:
                self.fit()
            self._update_cursor()
            self.update()
            self.tool_changed.emit(tool)

    def brush_size(self) -> int:
        return self._brush_size

    def set_brush_size(self, size: int) -> None:
        """The designer's size: from now on it stays, whatever picture comes."""
        self._brush_chosen = True
        self._set_brush_size(size)

    def _set_brush_size(self, size: int) -> None:
        size = int(min(max(size, 1), 2048))
        if size != self._brush_size:
            old = self._brush_size
            self._brush_size = size
            self._update_brush_outline(max(old, size))
            self.brush_size_changed.emit(size)

    def brush_hardness(self) -> float:
        return self._hardness

    def set_brush_hardness(self, hardness: float) -> None:
        self._hardness = min(max(float(hardness), 0.0), 1.0)

    def set_overlay(self, color: QColor | str, opacity: float) -> None:
        """Tint and opacity (0..1) of the mask overlay."""
        self._layer.set_tint(QColor(color), opacity)
        self._effective = None
        self.update()

    def set_extend_fill(self, fill: str) -> None:
        """How the extend tool prefills new area: one of canvas_ops.FILL_MODES."""
        if fill not in canvas_ops.FILL_MODES:
            raise ValueError(f"unknown fill {fill!r}; choose one of {', '.join(canvas_ops.FILL_MODES)}")
        self._extend_fill = fill

    def set_mask_preview(self, grow: int, feather: int) -> None:
        """Show the mask as a generation would use it after growing and feathering (0, 0: raw)."""
        if (grow, feather) != (self._grow, self._feather):
            self._grow, self._feather = int(grow), int(feather)
            self._effective = None
            self.update()

    def _effective_on(self) -> bool:
        return self._grow != 0 or self._feather != 0

    # ---------------------------------------------------------------------------------- strokes

    def begin_stroke(self, pos: QPointF) -> None:
        """Start a brush or eraser stroke at image point `pos` (the mouse handlers call these three)."""
        if not self.has_image():
            return
        erase = self._tool == ERASER
        dirty = self._layer.begin_stroke(pos, self._brush_size, self._hardness, erase)
        self.update(self._to_widget_rect(QRectF(dirty)))

    def stroke_to(self, pos: QPointF) -> None:
        dirty = self._layer.stroke_to(pos)
        if not dirty.isEmpty():
            self.update(self._to_widget_rect(QRectF(dirty)))

    def end_stroke(self) -> StrokeCommand | None:
        """Finish the stroke and push it on the undo stack; returns the command (None if no change)."""
        erase = self._tool == ERASER
        delta = self._layer.end_stroke()
        if delta is None:
            return None
        command = StrokeCommand(self._layer, delta, "Erase mask" if erase else "Paint mask", self._mask_edited)
        self.undo_stack.push(command)
        self._mask_edited(delta.bounds)
        return command

    # ------------------------------------------------------------------------------------- preview

    def show_preview(self, img: QImage | None, box: tuple[int, int, int, int] | None = None) -> None:
        """Draw a generation preview over `box` (image coordinates; default the whole image), seen
        through the mask when there is one; None clears it."""
        if img is None or img.isNull() or not self.has_image():
            self._preview.clear()
        else:
            self._preview.set(img, box or (0, 0, self._image.width(), self._image.height()))
        self.update()

    # -------------------------------------------------------------------------------------- opening

    def source_id(self) -> int | None:
        """The gallery image the picture on the canvas is, or was extended from; None for other
        pictures. It travels with the picture through undo and redo (a QImage text key), so an
        inpaint or outpaint of it is saved with it as its parent."""
        text = self._image.text(SOURCE_KEY)
        return int(text) if text.isdigit() else None

    def open_file(self, path: str, source_id: int | None = None) -> bool:
        """Load an image file onto the canvas as an undoable step; reports failures by load_failed."""
        name = Path(path).name
        try:
            im = load_image_file(path)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            self.load_failed.emit(f"cannot open {name}: {unreadable_reason(exc)}")
            return False
        self.apply_result(im, f"Open {name}", keep_mask=False, source_id=source_id)
        self.image_dropped.emit(str(path))
        return True

    def paste_from_clipboard(self) -> bool:
        """Paste an image (pixels, or a file path/URL) from the clipboard; False if there was none."""
        data = QGuiApplication.clipboard().mimeData()
        if data is not None and data.hasImage():
            img = QImage(data.imageData())
            if not img.isNull():
                self.apply_result(img, "Paste image", keep_mask=False)
                return True
        for path in local_image_paths(data):
            return self.open_file(path)
        text = QGuiApplication.clipboard().text().strip()
        if text and Path(text).suffix.lower() in IMAGE_SUFFIXES and Path(text).is_file():
            return self.open_file(text)
        return False

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        data = event.mimeData()
        if data.hasImage() or local_image_paths(data):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        data = event.mimeData()
        paths = local_image_paths(data)
        if paths:
            self.open_file(paths[0])
        elif data.hasImage():
            self.apply_result(QImage(data.imageData()), "Drop image", keep_mask=False)
        event.acceptProposedAction()

    # ---------------------------------------------------------------------------------------- input

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        pos = event.position()
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space):
            self._pan_from = pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif button == Qt.MouseButton.LeftButton and self.has_image():
            if self._tool == EXTEND:
                self._drag_sides = paint.hit_sides(pos, self.image_rect())
                self._drag_extents = (0, 0, 0, 0)
            else:
                self.begin_stroke(self.map_to_image(pos))
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self._pan_from is not None:
            self._pan_by(pos)
        elif self._layer.stroking:
            self.stroke_to(self.map_to_image(pos))
        elif self._drag_sides:
            size = (self._image.width(), self._image.height())
            extents = paint.drag_extents(self._drag_sides, self.map_to_image(pos), *size)
            if extents != self._drag_extents:
                self._drag_extents = extents
                self.update()
        elif self._tool == EXTEND and self.has_image():
            self.setCursor(paint.side_cursor(paint.hit_sides(pos, self.image_rect())))
        self._move_brush_outline(pos)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._update_cursor()
        elif event.button() == Qt.MouseButton.LeftButton and self._layer.stroking:
            self.stroke_to(self.map_to_image(event.position()))
            self.end_stroke()
        elif event.button() == Qt.MouseButton.LeftButton and self._drag_sides:
            self._finish_extend_drag()
        event.accept()

    def _finish_extend_drag(self) -> None:
        extents, self._drag_extents, self._drag_sides = self._drag_extents, (0, 0, 0, 0), frozenset()
        self.update()
        if any(extents):
            self.extend_requested.emit(*extents)
            self.extend(*extents)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, mods = event.key(), event.modifiers()
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self._update_cursor()
        elif key == Qt.Key.Key_BracketLeft:
            self.set_brush_size(min(self._brush_size - 1, round(self._brush_size / 1.25)))
        elif key == Qt.Key.Key_BracketRight:
            self.set_brush_size(max(self._brush_size + 1, round(self._brush_size * 1.25)))
        elif key == Qt.Key.Key_B and not ctrl:
            self.set_tool(BRUSH)
        elif key == Qt.Key.Key_E and not ctrl:
            self.set_tool(ERASER)
        elif key == Qt.Key.Key_0 and ctrl:
            self.fit()
        elif key == Qt.Key.Key_1 and ctrl:
            self.actual_size()
        elif key == Qt.Key.Key_Escape and self._drag_sides:
            self._drag_sides, self._drag_extents = frozenset(), (0, 0, 0, 0)
            self.update()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._update_cursor()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event: QEvent) -> None:
        self._move_brush_outline(None)

    def _painting_tool(self) -> bool:
        return self._tool in (BRUSH, ERASER) and not self._space and self._pan_from is None

    def _update_cursor(self) -> None:
        if self._pan_from is not None:
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif self._space:
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif self._tool == EXTEND:
            self.setCursor(Qt.CursorShape.ArrowCursor)
        else:
            # The brush outline is the cursor; a system arrow on top of it would hide the centre.
            self.setCursor(Qt.CursorShape.BlankCursor)
        self.update()

    def _move_brush_outline(self, pos: QPointF | None) -> None:
        radius = self._brush_size / 2 * self._zoom
        if self._cursor is not None:
            self.update(paint.brush_outline_rect(self._cursor, radius).toAlignedRect())
        self._cursor = None if pos is None else QPointF(pos)
        if self._cursor is not None:
            self.update(paint.brush_outline_rect(self._cursor, radius).toAlignedRect())

    def _update_brush_outline(self, size: int) -> None:
        if self._cursor is not None:
            self.update(paint.brush_outline_rect(self._cursor, size / 2 * self._zoom).toAlignedRect())

    # -------------------------------------------------------------------------------------- drawing

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        exposed = QRectF(event.rect())
        p.fillRect(event.rect(), paint.surround_color(self.palette()))
        if not self.has_image():
            paint.draw_placeholder(p, QRectF(self.rect()), self.palette())
            p.end()
            return
        target = self.image_rect()
        paint.draw_image_shadow(p, target)
        if self._image.hasAlphaChannel():
            p.setBrushOrigin(target.topLeft())
            p.fillRect(target.intersected(exposed), self._checker)
        smooth = self._zoom < 2.0
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        self._draw_part(p, self._image, target, exposed)
        self._preview.draw(p, self._layer, self.map_from_image, self._zoom)
        self._draw_mask(p, target, exposed)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        if any(self._drag_extents):
            paint.draw_extend_frame(p, target, self._drag_extents, self._zoom, self.palette())
        elif self.size_label():
            paint.draw_label(p, target.topLeft() + QPointF(6, 6), self.size_label(), self.palette())
        if self._cursor is not None and self._painting_tool():
            paint.draw_brush_outline(p, self._cursor, self._brush_size / 2 * self._zoom, self._tool == ERASER)
        p.end()

    def _draw_mask(self, p: QPainter, target: QRectF, exposed: QRectF) -> None:
        # While a preview shows, the tint would colour it; the mask is drawn again once it is gone.
        if self._preview.active and not self._layer.stroking:
            return
        if self._effective_on():
            if self._effective is None:
                self._effective = self._layer.effective_overlay(self._grow, self._feather)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            self._draw_part(p, self._effective, target, exposed)
            if not self._layer.stroking:
                return
        self._draw_part(p, self._layer.overlay, target, exposed)
