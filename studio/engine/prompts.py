"""Prompts as AUTOMATIC1111 reads them: emphasis, BREAK, prompts past 77 tokens, and `<lora:name:w>` tags.

A prompt copied from another tool should mean the same thing here. The syntax (A1111's, which
ComfyUI and most model pages use too):

- `(words)` multiplies the words' attention by 1.1, `((words))` by 1.21, `[words]` divides by 1.1,
  `(words:1.3)` sets 1.3; `\\(` and `\\)` are literal brackets.
- `BREAK` starts a new 75-token chunk; a prompt longer than one chunk is encoded chunk by chunk and
  the chunks' embeddings are joined, so nothing past token 75 is cut off.
- `<lora:name:0.8>` applies a LoRA from the model library and is not part of the text.

Why not `compel`: it has its own syntax (`word++`, `(word)1.3`) and no BREAK, so A1111 prompts would
mean something else. The rules above are A1111's, written here from its documented behaviour.
A plain prompt that fits one chunk goes through diffusers' own encoder unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

EMPHASIS = 1.1
_TOKEN = re.compile(r"\\[()\[\]\\]|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:|\\")
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
_LORA = re.compile(r"<lora:([^:>]+)(?::([+-]?[\d.]+))?(?::[^>]*)?>", re.IGNORECASE)


@dataclass(frozen=True)
class LoraTag:
    name: str
    weight: float


def split_loras(prompt: str) -> tuple[str, list[LoraTag]]:
    """The prompt without its `<lora:name:weight>` tags, and the tags (weight 1 when left out)."""
    tags: list[LoraTag] = []

    def take(m: re.Match[str]) -> str:
        try:
            weight = float(m.group(2)) if m.group(2) else 1.0
        except ValueError:
            weight = 1.0
        tags.append(LoraTag(m.group(1).strip(), weight))
        return ""

    text = _LORA.sub(take, prompt)
    return re.sub(r"[ \t]{2,}", " ", text).strip(), tags


BREAK = ("BREAK", -1.0)  # the piece that marks a forced chunk break (never a weight: see parse_attention)


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Split `text` into (fragment, weight) pieces; the BREAK piece marks a forced chunk break.

    >>> parse_attention("a (red:1.5) [cat]")
    [('a ', 1.0), ('red', 1.5), (' ', 1.0), ('cat', 0.9090909090909091)]
    """
    pieces: list[list[Any]] = []  # [text, weight, is_break]
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            if not piece[2]:
                piece[1] *= factor

    for m in _TOKEN.finditer(text):
        token, weight = m.group(0), _number(m.group(1))
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0, False])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            scale(round_open.pop(), weight)
        elif token == ")" and round_open:
            scale(round_open.pop(), EMPHASIS)
        elif token == "]" and square_open:
            scale(square_open.pop(), 1 / EMPHASIS)
        else:
            for k, part in enumerate(_BREAK.split(token)):
                if k > 0:
                    pieces.append([BREAK[0], BREAK[1], True])
                pieces.append([part, 1.0, False])
    for start in round_open:  # unclosed brackets still emphasise what follows them
        scale(start, EMPHASIS)
    for start in square_open:
        scale(start, 1 / EMPHASIS)
    merged: list[list[Any]] = []
    for piece in pieces:
        if merged and not piece[2] and not merged[-1][2] and merged[-1][1] == piece[1]:
            merged[-1][0] += piece[0]
        elif piece[0]:
            merged.append(piece)
    return [BREAK if is_break else (t, w) for t, w, is_break in merged] or [("", 1.0)]


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:  # "(a:.)": not a weight, so the text stays as typed
        return None


def needs_weighting(text: str, tokenizer: Any) -> bool:
    """True when diffusers' plain encoder would read `text` differently from A1111: emphasis, BREAK,
    escaped brackets or more tokens than one chunk."""
    pieces = parse_attention(text)
    if any(p is BREAK or p[1] != 1.0 for p in pieces) or "".join(t for t, _ in pieces) != text:
        return True
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) > tokenizer.model_max_length - 2


def _chunks(pipe: Any, tokenizer: Any, text: str) -> list[tuple[list[int], list[float]]]:
    """Token ids and weights per chunk (without start/end tokens), A1111's chunking."""
    size = tokenizer.model_max_length - 2
    chunks: list[tuple[list[int], list[float]]] = []
    ids: list[int] = []
    weights: list[float] = []
    for piece in parse_attention(text):
        fragment, weight = piece
        if piece is BREAK:
            chunks.append((ids, weights))
            ids, weights = [], []
            continue
        if hasattr(pipe, "maybe_convert_prompt"):  # multi-vector embeddings expand to several tokens
            fragment = pipe.maybe_convert_prompt(fragment, tokenizer)
        for token in tokenizer(fragment, add_special_tokens=False)["input_ids"]:
            if len(ids) == size:
                chunks.append((ids, weights))
                ids, weights = [], []
            ids.append(token)
            weights.append(weight)
    chunks.append((ids, weights))
    return chunks


def _encode_chunks(tokenizer: Any, encoder: Any, chunks: list[tuple[list[int], list[float]]],
                   penultimate: bool, device: Any) -> tuple[Any, Any]:
    """Each chunk padded to the window, encoded, weighted with its mean kept (as A1111 does); joined."""
    import torch

    window = tokenizer.model_max_length
    pad = tokenizer.pad_token_id
    out, pooled = [], None
    for ids, weights in chunks:
        tokens = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
        tokens += [pad] * (window - len(tokens))
        multipliers = [1.0, *weights, 1.0] + [1.0] * (window - len(weights) - 2)
        input_ids = torch.tensor([tokens], device=device)
        result = encoder(input_ids, output_hidden_states=penultimate)
        hidden = result.hidden_states[-2] if penultimate else result[0]
        if pooled is None:
            pooled = getattr(result, "text_embeds", None)
        if all(m == 1.0 for m in multipliers):
            out.append(hidden)
            continue
        scale = torch.tensor(multipliers, device=hidden.device, dtype=hidden.dtype)[None, :, None]
        mean, weighted = hidden.mean(), hidden * scale
        # Keep the chunk's mean, as A1111 does (a layer-normed output can average to 0: then leave it).
        ratio = mean / weighted.mean() if abs(float(weighted.mean())) > 1e-6 else 1.0
        out.append(weighted * ratio)
    return torch.cat(out, dim=1), pooled


def conditioning(pipe: Any, prompt: str, negative: str) -> dict[str, Any]:
    """Pipeline keyword arguments for the prompts: text for diffusers' own encoder, or A1111-weighted
    embeddings where the prompts need them (emphasis, BREAK, more than one chunk)."""
    tokenizer = pipe.tokenizer
    if needs_weighting(prompt, tokenizer) or needs_weighting(negative, tokenizer):
        return encode(pipe, prompt, negative)
    return {"prompt": prompt, "negative_prompt": negative or None}


def encode(pipe: Any, prompt: str, negative: str) -> dict[str, Any]:
    """Pipeline keyword arguments with A1111-weighted embeddings for `prompt` and `negative`."""
    import torch

    is_xl = getattr(pipe, "text_encoder_2", None) is not None
    pairs = [(pipe.tokenizer, pipe.text_encoder)] + ([(pipe.tokenizer_2, pipe.text_encoder_2)] if is_xl else [])
    result: dict[str, Any] = {}
    for key, text in (("prompt", prompt), ("negative", negative)):
        chunked = [_chunks(pipe, tok, text) for tok, _ in pairs]
        result[key] = chunked
    count = max(len(c) for chunked in result.values() for c in chunked)
    embeds: dict[str, Any] = {}
    with torch.inference_mode():
        for key, chunked in result.items():
            parts, pooled = [], None
            for (tok, enc), chunks in zip(pairs, chunked):
                chunks = chunks + [([], [])] * (count - len(chunks))  # both sides need the same length
                hidden, pooled_here = _encode_chunks(tok, enc, chunks, is_xl, pipe._execution_device)
                parts.append(hidden)
                pooled = pooled_here if pooled_here is not None else pooled
            embeds[key] = torch.cat(parts, dim=-1)
            embeds[key + "_pooled"] = pooled
    if is_xl and not negative and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        embeds["negative"] = torch.zeros_like(embeds["negative"])
        embeds["negative_pooled"] = torch.zeros_like(embeds["negative_pooled"])
    kwargs = {"prompt_embeds": embeds["prompt"], "negative_prompt_embeds": embeds["negative"]}
    if is_xl:
        kwargs.update(pooled_prompt_embeds=embeds["prompt_pooled"],
                      negative_pooled_prompt_embeds=embeds["negative_pooled"])
    return kwargs
