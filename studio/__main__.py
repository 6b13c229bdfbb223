"""`python -m studio` / `studio`: no command starts the desktop app, a command runs the CLI."""

from __future__ import annotations

import sys

COMMANDS = {"generate", "gallery", "models", "info", "-h", "--help"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in COMMANDS for a in argv):
        from studio.cli import main as cli_main

        return cli_main(argv)
    from studio.ui.app import run_app

    return run_app(argv)


if __name__ == "__main__":
    sys.exit(main())
