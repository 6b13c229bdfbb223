"""`python -m studio.train_builtin`: train the built-in model and write its pipeline folder."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from studio.builtin.train import TrainConfig, export, run
from studio.resources import BUILTIN_MODEL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m studio.train_builtin", description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("work/builtin"), help="checkpoints and data (resumes from here)")
    parser.add_argument("--out", type=Path, default=BUILTIN_MODEL, help="where the pipeline folder goes")
    parser.add_argument("--export-only", action="store_true",
                        help="write the pipeline folder from the latest checkpoints and stop")
    for f in fields(TrainConfig):
        if f.name in ("work", "out"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default)
    args = vars(parser.parse_args(argv))
    export_only = args.pop("export_only")
    cfg = TrainConfig(**args)
    export(cfg) if export_only else run(cfg)


if __name__ == "__main__":
    main()
