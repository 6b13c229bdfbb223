"""`python -m studio` / `studio`: no command starts the desktop app, a command runs the CLI.

`--help` and `--version` never need a display. A first word that is neither a command nor an existing
file (`studio generat …`) is the CLI's error, not a picture for the window to open.
"""

from __future__ import annotations

import sys
from pathlib import Path

COMMANDS = {"generate", "gallery", "models", "info", "upscale", "grid"}
OPTIONS_WITH_VALUES = {"--data-dir", "--device", "--model"}  # the app's and the CLI's global options


def first_word(argv: list[str]) -> str | None:
    """The first argument that is not an option or an option's value."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in OPTIONS_WITH_VALUES:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    word = first_word(argv)
    wants_cli = any(a in ("-h", "--help", "--version") for a in argv)
    if wants_cli or (word is not None and (word in COMMANDS or not Path(word).exists())):
        from studio.cli import main as cli_main

        return cli_main(argv)
    from studio.ui.app import run_app

    return run_app(argv)


if __name__ == "__main__":
    sys.exit(main())
