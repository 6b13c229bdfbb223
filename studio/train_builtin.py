"""`python -m studio.train_builtin`: train the built-in model and write its pipeline folder."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from studio.builtin import preview_decoder
from studio.builtin.train import TrainConfig, export, log, refine_folder, run
from studio.resources import BUILTIN_MODEL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m studio.train_builtin", description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("work/builtin"),
                        help="checkpoints and data (resumes from here)")
    parser.add_argument("--out", type=Path, default=BUILTIN_MODEL, help="where the pipeline folder goes")
    parser.add_argument("--export-only", action="store_true",
                        help="write the pipeline folder from the latest checkpoints and stop")
    parser.add_argument("--refine", action="store_true",
                        help="continue the pipeline folder at --out: the decoder stage, then phase 3"
                             " (object-weighted) and phase 4 (decoded colour), then the preview decoder")
    parser.add_argument("--preview-decoder-only", action="store_true",
                        help="train only the live-preview decoder for the VAE of the pipeline folder at --out"
                             " (a few minutes) and write it there")
    parser.add_argument("--preview-steps", type=int, default=3000, help="training steps of the preview decoder")
    for f in fields(TrainConfig):
        if f.name in ("work", "out"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool, "bool | None"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default)
    args = vars(parser.parse_args(argv))
    export_only, refine_only = args.pop("export_only"), args.pop("refine")
    preview_only, preview_steps = args.pop("preview_decoder_only"), args.pop("preview_steps")
    cfg = TrainConfig(**args)
    if preview_only:
        preview_decoder.train_for_folder(cfg.out, preview_steps, log)
    elif refine_only:
        refine_folder(cfg, cfg.out)
        preview_decoder.train_for_folder(cfg.out, preview_steps, log)  # the decoder it imitates has changed
    elif export_only:
        export(cfg)
    else:
        run(cfg)
        preview_decoder.train_for_folder(cfg.out, preview_steps, log)


if __name__ == "__main__":
    main()
