"""Tensor-name tables between original transformer checkpoints and diffusers' modules, both ways.

diffusers converts Black Forest Labs' FLUX layout with the width of FLUX.1 written in (3072), so a
file of any other width (a distilled or small model, and every test file) does not open through it.
This table converts any width: the fused projections are split by the shapes they have. Studio's
loader uses it forwards; the bench and the tests write files in the original layout with it backwards.
A test checks it against diffusers' own converter at FLUX.1's full width.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Tensor = Any  # torch.Tensor, imported lazily


@dataclass(frozen=True)
class Fused:
    """One original tensor that diffusers keeps as several (q, k, v and, for FLUX's single blocks, the MLP)."""

    original: str
    parts: tuple[str, ...]
    rest_last: bool = False  # the last part takes what is left after len(parts) - 1 equal-width parts


@dataclass(frozen=True)
class KeyTable:
    """Module renames (original -> diffusers; `{i}` is a block index), fused tensors, and the modules
    whose (shift, scale) halves the two layouts store in opposite order."""

    renames: tuple[tuple[str, str], ...]
    fused: tuple[Fused, ...]
    swapped: tuple[str, ...]  # original modules stored as (shift, scale); diffusers wants (scale, shift)
    norm_suffix: tuple[str, str] = ("scale", "weight")  # FLUX's RMSNorm keeps `scale` where diffusers keeps `weight`

    def to_diffusers(self, state: Mapping[str, Tensor], width: int) -> dict[str, Tensor]:
        """`state` in the original layout (no prefix) to diffusers' names; `width` is the attention width."""
        out: dict[str, Tensor] = {}
        for key, tensor in state.items():
            module, _, param = key.rpartition(".")
            fused = self._match_fused(module)
            if fused is not None:
                rule, index = fused
                sizes = [width] * (len(rule.parts) - 1)
                sizes.append(tensor.shape[0] - sum(sizes) if rule.rest_last else width)
                for name, piece in zip(rule.parts, tensor.split(sizes, dim=0)):
                    out[f"{name.format(i=index)}.{param}"] = piece
                continue
            target = self._rename(module, forward=True)
            if target is None:
                raise KeyError(key)
            if param == self.norm_suffix[0]:
                param = self.norm_suffix[1]
            out[f"{target}.{param}"] = _swap(tensor) if self._swapped(module) else tensor
        return out

    def to_original(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """diffusers' names back to the original layout (for writing files as other programs do)."""
        import torch

        out: dict[str, Tensor] = {}
        pending: dict[tuple[str, str], dict[int, Tensor]] = {}
        for key, tensor in state.items():
            module, _, param = key.rpartition(".")
            part = self._match_part(module)
            if part is not None:
                rule, index, position = part
                pending.setdefault((rule.original.format(i=index), param), {})[position] = tensor
                continue
            target = self._rename(module, forward=False)
            if target is None:
                raise KeyError(key)
            if param == self.norm_suffix[1] and self._is_norm(target):
                param = self.norm_suffix[0]
            out[f"{target}.{param}"] = _swap(tensor) if self._swapped(target) else tensor
        for (module, param), pieces in pending.items():
            out[f"{module}.{param}"] = torch.cat([pieces[k] for k in sorted(pieces)], dim=0)
        return out

    # ------------------------------------------------------------------ matching

    def _rename(self, module: str, forward: bool) -> str | None:
        for original, diffusers in self.renames:
            source, target = (original, diffusers) if forward else (diffusers, original)
            index = _match(source, module)
            if index is not None:
                return target.format(i=index)
        return None

    def _match_fused(self, module: str) -> tuple[Fused, str] | None:
        for rule in self.fused:
            index = _match(rule.original, module)
            if index is not None:
                return rule, index
        return None

    def _match_part(self, module: str) -> tuple[Fused, str, int] | None:
        for rule in self.fused:
            for position, name in enumerate(rule.parts):
                index = _match(name, module)
                if index is not None:
                    return rule, index, position
        return None

    def _swapped(self, original_module: str) -> bool:
        return any(_match(m, original_module) is not None for m in self.swapped)

    def _is_norm(self, original_module: str) -> bool:
        return original_module.endswith(("_norm", ".norm"))


def _match(pattern: str, module: str) -> str | None:
    """The block index `{i}` stands for when `module` fits `pattern` ("" when it has none), else None."""
    regex = _compiled(pattern)
    found = regex.fullmatch(module)
    if found is None:
        return None
    return found.group("i") if "{i}" in pattern else ""


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    if pattern not in _CACHE:
        _CACHE[pattern] = re.compile(re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)"))
    return _CACHE[pattern]


def _swap(tensor: Tensor) -> Tensor:
    """(shift, scale) <-> (scale, shift): the two halves of an adaLN projection, in the other order."""
    import torch

    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


_D, _S = "double_blocks.{i}.", "single_blocks.{i}."
_T, _ST = "transformer_blocks.{i}.", "single_transformer_blocks.{i}."

FLUX = KeyTable(
    renames=(
        ("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
        ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
        ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
        ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
        ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
        ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
        ("txt_in", "context_embedder"),
        ("img_in", "x_embedder"),
        ("final_layer.linear", "proj_out"),
        ("final_layer.adaLN_modulation.1", "norm_out.linear"),
        (_D + "img_mod.lin", _T + "norm1.linear"),
        (_D + "txt_mod.lin", _T + "norm1_context.linear"),
        (_D + "img_attn.norm.query_norm", _T + "attn.norm_q"),
        (_D + "img_attn.norm.key_norm", _T + "attn.norm_k"),
        (_D + "txt_attn.norm.query_norm", _T + "attn.norm_added_q"),
        (_D + "txt_attn.norm.key_norm", _T + "attn.norm_added_k"),
        (_D + "img_mlp.0", _T + "ff.net.0.proj"),
        (_D + "img_mlp.2", _T + "ff.net.2"),
        (_D + "txt_mlp.0", _T + "ff_context.net.0.proj"),
        (_D + "txt_mlp.2", _T + "ff_context.net.2"),
        (_D + "img_attn.proj", _T + "attn.to_out.0"),
        (_D + "txt_attn.proj", _T + "attn.to_add_out"),
        (_S + "modulation.lin", _ST + "norm.linear"),
        (_S + "norm.query_norm", _ST + "attn.norm_q"),
        (_S + "norm.key_norm", _ST + "attn.norm_k"),
        (_S + "linear2", _ST + "proj_out"),
    ),
    fused=(
        Fused(_D + "img_attn.qkv", (_T + "attn.to_q", _T + "attn.to_k", _T + "attn.to_v")),
        Fused(_D + "txt_attn.qkv", (_T + "attn.add_q_proj", _T + "attn.add_k_proj", _T + "attn.add_v_proj")),
        Fused(_S + "linear1", (_ST + "attn.to_q", _ST + "attn.to_k", _ST + "attn.to_v", _ST + "proj_mlp"),
              rest_last=True),
    ),
    swapped=("final_layer.adaLN_modulation.1",),
)


def strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

