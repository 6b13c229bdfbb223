"""Benchmarks: `python -m studio.bench NAME [--json]`. Each NAME is a module here with `main(argv)`."""

from __future__ import annotations

import json
import sys
from typing import Any


def report(title: str, rows: dict[str, Any], as_json: bool) -> None:
    """Print figures as a table for people, or as one JSON object with `--json`."""
    if as_json:
        print(json.dumps(rows))
        return
    print(title)
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {key.ljust(width)}  {shown}")
    sys.stdout.flush()
