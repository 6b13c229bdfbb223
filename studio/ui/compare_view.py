"""Before/after: two pictures in one frame, split by a slider the designer drags, or their difference.

The pictures are fitted to the same rectangle (the larger one's shape), so an upscaled image lines up
with the small one it came from. Difference mode shows |after - before| per channel, brightened x4 so
that small changes are visible.
"""

from __future__ import annotations

from PIL import Image, ImageChops
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from studio.ui.canvas_images import pil_to_qimage

DIFF_GAIN = 4  # |a - b| x 4: a change of 16 levels shows as 64


def difference(before: Image.Image, after: Image.Image) -> Image.Image:
    """|after - before| at the after picture's size, brightened by DIFF_GAIN."""
    before = before.convert("RGB").resize(after.size, Image.Resampling.LANCZOS)
    diff = ImageChops.difference(after.convert("RGB"), before)
    return diff.point(lambda v: min(255, v * DIFF_GAIN))


class SplitView(QWidget):
    """Paints `before` left of the split and `after` right of it; dragging moves the split."""

    split_moved = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.before: QImage | None = None
        self.after: QImage | None = None
        self.diff: QImage | None = None
        self.split = 0.5  # fraction of the width showing `before`
        self.show_difference = False
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.SplitHCursor)

    def image_rect(self) -> QRectF:
        """Where the pictures are drawn: the after picture's shape, fitted and centred."""
        ref = self.after or self.before
        if ref is None or ref.isNull():
            return QRectF(self.rect())
        scale = min(self.width() / ref.width(), self.height() / ref.height())
        w, h = ref.width() * scale, ref.height() * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def set_split(self, fraction: float) -> None:
        self.split = min(1.0, max(0.0, fraction))
        self.split_moved.emit(self.split)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().base())
        rect = self.image_rect()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        if self.show_difference and self.diff is not None:
            p.drawImage(rect, self.diff)
            return
        if self.after is not None:
            p.drawImage(rect, self.after)
        if self.before is not None:
            x = rect.left() + rect.width() * self.split
            p.save()
            p.setClipRect(QRectF(rect.left(), rect.top(), x - rect.left(), rect.height()))
            p.drawImage(rect, self.before)
            p.restore()
            p.setPen(QPen(QColor(255, 255, 255), 2))
            p.drawLine(int(x), int(rect.top()), int(x), int(rect.bottom()))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._drag(event)

    def _drag(self, event: QMouseEvent) -> None:
        rect = self.image_rect()
        self.set_split((event.position().x() - rect.left()) / max(rect.width(), 1.0))


class CompareView(QWidget):
    """The split view with its captions, a Difference toggle and a Close button."""

    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = SplitView()
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.difference = QCheckBox("Difference")
        self.difference.setToolTip(f"Show |after − before| (brightened ×{DIFF_GAIN})")
        self.difference.toggled.connect(self._toggle_difference)
        close = QPushButton("Close")
        close.clicked.connect(self.closed)
        bar = QHBoxLayout()
        bar.addWidget(self.caption, 1)
        bar.addWidget(self.difference)
        bar.addWidget(close)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view, 1)
        layout.addLayout(bar)

    def set_images(self, before: Image.Image, after: Image.Image, before_label: str, after_label: str) -> None:
        self.view.before, self.view.after = pil_to_qimage(before), pil_to_qimage(after)
        self.view.diff = pil_to_qimage(difference(before, after))
        self.caption.setText(f"◀ {before_label}   |   {after_label} ▶")
        self.view.set_split(0.5)

    def _toggle_difference(self, on: bool) -> None:
        self.view.show_difference = on
        self.view.update()
