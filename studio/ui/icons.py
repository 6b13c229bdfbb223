"""The application icon (drawn by packaging/make_icon.py, shipped in resources/icons/)."""

from __future__ import annotations

from PySide6.QtGui import QIcon

from studio.resources import ICONS


def app_icon() -> QIcon:
    """Studio's icon at every shipped size (Qt picks the closest one for each use)."""
    icon = QIcon()
    for png in sorted((ICONS / "hicolor").glob("*x*/apps/studio.png")):
        icon.addFile(str(png))
    if icon.isNull():  # a trimmed install without the theme folder still has the main file
        icon.addFile(str(ICONS / "studio.png"))
    return icon
