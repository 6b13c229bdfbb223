"""A CLIP tokenizer whose vocabulary is the world's words, each one a single token.

CLIP's BPE applies merges in rank order to a word split into characters (the last one carrying
`</w>`). A word-only vocabulary with no merges cannot work: every word falls apart into unknown
characters. So we learn merges the way BPE does (most frequent pair first) over the vocabulary until
every word is one symbol; applying them in the learned order reproduces exactly that segmentation.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE merges (Sennrich et al. 2016) that turn every word into one `word</w>` symbol."""
    split = {w: [*w[:-1], w[-1] + "</w>"] for w in words}
    merges: list[tuple[str, str]] = []
    while any(len(s) > 1 for s in split.values()):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols in split.values():
            pairs.update(zip(symbols, symbols[1:]))
        best = min(pairs, key=lambda p: (-pairs[p], p))  # deterministic tie-break
        merges.append(best)
        for w, symbols in split.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            split[w] = out
    return merges


def write_tokenizer(folder: Path, words: list[str], max_length: int) -> None:
    """Write vocab.json, merges.txt and the config a `CLIPTokenizer.from_pretrained` needs."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for w in words for c in w})
    merges = learn_merges(words)
    tokens = [*chars, *(c + "</w>" for c in chars), *(a + b for a, b in merges), *SPECIAL]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "bos_token": SPECIAL[0],
        "eos_token": SPECIAL[1],
        "unk_token": SPECIAL[1],
        "pad_token": SPECIAL[1],
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, indent=2)
    )
