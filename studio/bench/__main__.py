"""`python -m studio.bench NAME [options]`: run one benchmark."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import studio.bench

HELPERS = {"checkpoint_files", "comfyui_server"}  # modules the benchmarks and tests share, not benchmarks themselves


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(studio.bench.__path__)
                   if not m.name.startswith("_") and m.name not in HELPERS)
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print(f"usage: python -m studio.bench {{{','.join(names)}}} [--json] [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"studio.bench.{sys.argv[1]}")
    return int(module.main(sys.argv[2:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
