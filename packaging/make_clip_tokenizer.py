"""Write CLIP's tokenizer files (vocab.json, merges.txt) from the BPE table open-clip-torch ships.

Studio needs CLIP's real tokenizer to open SD 1.x, 2.x and XL checkpoints offline, and no model hub
may be reached. OpenAI's BPE table (MIT licence) ships inside the `open-clip-torch` wheel as
`open_clip/bpe_simple_vocab_16e6.txt.gz`. This script turns it into the two files Hugging Face's
`CLIPTokenizer` reads, in the order OpenAI's `SimpleTokenizer` numbers them: the 256 byte symbols,
the same with `</w>`, one token per merge, then `<|startoftext|>` (49406) and `<|endoftext|>` (49407).

    pip download --no-deps open-clip-torch==3.3.0 -d /tmp/wheels
    python packaging/make_clip_tokenizer.py /tmp/wheels/open_clip_torch-3.3.0-py3-none-any.whl

open-clip-torch is only a source of this file: it is not a dependency (it would pull torchvision).
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from pathlib import Path

TABLE = "open_clip/bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2  # CLIP uses the table's first 48,894 merges
OUT = Path(__file__).resolve().parent.parent / "resources" / "configs" / "clip-tokenizer"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, which CLIP's BPE is written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def build(table_gz: bytes) -> tuple[dict[str, int], list[str]]:
    lines = gzip.decompress(table_gz).decode("utf-8").split("\n")
    merges = lines[1:MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        vocab, merges = build(zf.read(TABLE))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
