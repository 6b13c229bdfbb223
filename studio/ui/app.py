"""Start the desktop app: the window first, then the backend loads torch, diffusers and the model."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle

from studio.paths import data_dir


def dark_palette() -> QPalette:
    """A neutral dark theme: images are judged against grey, not against a bright UI."""
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2b2e", QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1f1f22", QPalette.ColorRole.AlternateBase: "#2f2f33",
        QPalette.ColorRole.ToolTipBase: "#3a3a3f", QPalette.ColorRole.ToolTipText: "#f0f0f0",
        QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#35353a",
        QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: "#3d7eea", QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#6aa0ff", QPalette.ColorRole.PlaceholderText: "#8a8a90",
        QPalette.ColorRole.Mid: "#4a4a50", QPalette.ColorRole.Dark: "#19191b", QPalette.ColorRole.Light: "#505056",
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#77777c"))
    return p


class StudioStyle(QProxyStyle):
    """Fusion, with the tool bars' overflow chevron drawn in the text colour: Fusion's own is dark
    grey, all but invisible on the dark palette, and it hides buttons (the gallery's, in a narrow dock)."""

    def __init__(self) -> None:
        super().__init__("Fusion")

    def standardIcon(self, icon: QStyle.StandardPixmap, option=None, widget=None) -> QIcon:  # noqa: N802, ANN001
        horizontal = QStyle.StandardPixmap.SP_ToolBarHorizontalExtensionButton
        if icon in (horizontal, QStyle.StandardPixmap.SP_ToolBarVerticalExtensionButton):
            return chevron_icon(dark_palette().color(QPalette.ColorRole.ButtonText), icon == horizontal)
        return super().standardIcon(icon, option, widget)


def chevron_icon(colour: QColor, pointing_right: bool, size: int = 16) -> QIcon:
    """A double chevron (>> or, turned, a downward one) at 1x and 2x."""
    icon = QIcon()
    for ratio in (1, 2):
        pixmap = QPixmap(size * ratio, size * ratio)
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(colour, 1.6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        for offset in (3.5, 8.5):
            points = [QPointF(offset, 4), QPointF(offset + 4, 8), QPointF(offset, 12)]
            if not pointing_right:
                points = [QPointF(p.y(), p.x()) for p in points]
            painter.drawPolyline(points)
        painter.end()
        icon.addPixmap(pixmap)
    return icon


def apply_look(app: QApplication) -> None:
    """Studio's style and dark palette (the app, and anything that shows its window the same way)."""
    app.setStyle(StudioStyle())
    app.setPalette(dark_palette())


def create_window(home: Path, device: str = "auto", model: str | None = None):  # noqa: ANN201
    """The window and its backend, not yet shown (tests use this too)."""
    from studio.gallery import Gallery, GalleryError
    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings
    from studio.ui.worker import Backend

    settings = Settings(home / "settings.ini")
    try:
        gallery, problem = Gallery(home), ""
    except GalleryError as exc:  # damaged, another program's, a newer Studio's: work on without it
        gallery, problem = None, str(exc)
    backend = Backend(home, device=device, use_gallery=gallery is not None)
    window = MainWindow(backend, settings, gallery)
    if problem:
        window.statusBar().showMessage(f"No gallery: {problem}")  # stays until another message
    if model:  # remembered once it has loaded, like a model chosen from the menu
        window.startup_model = model
    return window


# Qt's X11 plugin needs these beyond what minimal systems carry; without them Qt aborts the process.
XCB_LIBRARIES = {"xcb-cursor": "libxcb-cursor0", "xcb-icccm": "libxcb-icccm4", "xcb-keysyms": "libxcb-keysyms1",
                 "xkbcommon-x11": "libxkbcommon-x11-0"}


def display_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why the window could not open here, said before Qt would abort the process; None when it can."""
    import ctypes.util

    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or env.get("QT_QPA_PLATFORM") or env.get("WAYLAND_DISPLAY"):
        return None
    if not env.get("DISPLAY"):
        return ("no display to open the window on (DISPLAY and WAYLAND_DISPLAY are unset). The command line "
                "needs none: `studio generate --prompt \"…\"`, `studio --help`")
    missing = [package for lib, package in XCB_LIBRARIES.items() if ctypes.util.find_library(lib) is None]
    if missing:
        return (f"Qt's X11 support needs system libraries this machine lacks: sudo apt-get install "
                f"{' '.join(missing)} (Debian/Ubuntu). The command line works meanwhile: `studio --help`")
    return None


def run_app(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="studio")
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--model", help="model to load (default: the last one used, else the built-in model)")
    parser.add_argument("images", nargs="*", help="image files to open on the canvas")
    args, qt_args = parser.parse_known_args(argv)
    problem = display_problem()
    if problem is not None:
        print(f"studio: cannot start the window: {problem}", file=sys.stderr)
        return 2
    app = QApplication([sys.argv[0], *qt_args])
    app.setApplicationName("Studio")
    app.setDesktopFileName("studio")  # matches packaging/studio.desktop (window icon on Wayland)
    from studio.ui.icons import app_icon

    app.setWindowIcon(app_icon())
    apply_look(app)
    window = create_window(data_dir(args.data_dir), args.device, args.model)
    window.show()
    for path in args.images:  # "Open with Studio" passes files (the .desktop entry's %F)
        window.open_image(path)
    # torch and diffusers load on the backend thread once the window is on screen.
    QTimer.singleShot(0, lambda: (window.backend.start(), window.models.load(window.startup_model),
                                  window.library_panel.rescan()))
    return app.exec()
