"""Shared-prefix packing for multiple-choice scoring: one row per item, the common prefix computed once.

The choices of one item share most of their input (a HellaSwag context, an ARC question). A packed row holds that
common prefix once, then each distinct remainder ("suffix") after it::

    row:       [ p0 p1 p2 p3 | a0 a1 | b0 b1 b2 ]
    positions: [ 0  1  2  3  | 4  5  | 4  5  6  ]
    segment:   [ 0  0  0  0  | 1  1  | 2  2  2  ]

A token attends to earlier tokens of the prefix and of its own segment only (``segment_mask``), with the position
ids it would have alone, so every choice sees exactly the input it would see unpacked. Only the positions whose
next token is scored go through the LM head (``ScoredSpan``). Pure data: no torch model here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class PackedLM(Protocol):
    """A causal LM that takes custom masks and positions, and applies its LM head separately."""

    def final_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` ids, ``[B, 1, T, T]`` additive float mask, ``[B, T]`` positions → ``[B, T, H]`` after the final norm."""
        ...

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head: ``[N, H]`` → logits ``[N, V]``."""
        ...


@dataclass(frozen=True)
class ScoredSpan:
    """Choice ``choice`` of item ``item``: its ``targets`` are predicted at row indices ``rows`` (same length)."""

    item: int
    choice: int
    rows: tuple[int, ...]
    targets: tuple[int, ...]


@dataclass(frozen=True)
class PackedRow:
    """One item's packed input (see the module docstring); ``segments[t]`` is 0 for the prefix, k ≥ 1 for suffix k."""

    ids: tuple[int, ...]
    positions: tuple[int, ...]
    segments: tuple[int, ...]
    spans: tuple[ScoredSpan, ...]

    def __len__(self) -> int:
        return len(self.ids)


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of ``seqs`` (0 for none)."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for t in range(n):
        if any(s[t] != first[t] for s in seqs[1:]):
            return t
    return n


def pack_item(item: int, inputs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> PackedRow:
    """Pack the choices of one item: ``inputs[j]`` is choice ``j``'s model input, whose last ``len(targets[j])``
    positions predict ``targets[j]``. Choices with identical inputs share one segment (one-token answers)."""
    p = common_prefix_len(inputs)
    ids, pos, seg = list(inputs[0][:p]), list(range(p)), [0] * p
    offsets: dict[tuple[int, ...], int] = {}  # distinct suffix → row index of its first token
    spans = []
    for j, (inp, tgt) in enumerate(zip(inputs, targets, strict=True)):
        suffix = tuple(inp[p:])
        if suffix not in offsets:
            offsets[suffix] = len(ids)
            k = len(offsets)
            ids += suffix
            pos += range(p, p + len(suffix))
            seg += [k] * len(suffix)
        off = offsets[suffix]
        first = len(inp) - len(tgt)
        rows = tuple(t if t < p else off + t - p for t in range(first, len(inp)))
        spans.append(ScoredSpan(item, j, rows, tuple(tgt)))
    return PackedRow(tuple(ids), tuple(pos), tuple(seg), tuple(spans))


def segment_mask(rows: Sequence[PackedRow], width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention mask ``[B, 1, width, width]``: 0 where a token may attend (itself, earlier prefix tokens,
    earlier tokens of its own segment), the dtype's minimum elsewhere; padding attends to itself only."""
    seg = torch.full((len(rows), width), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        seg[b, : len(r)] = torch.tensor(r.segments, dtype=torch.long)
    idx = torch.arange(width)
    causal = idx.view(1, -1) <= idx.view(-1, 1)  # [q, k]: k <= q
    same = seg.unsqueeze(2) == seg.unsqueeze(1)  # [B, q, k]
    prefix_key = (seg == 0).unsqueeze(1)  # [B, 1, k]
    real = (seg >= 0).unsqueeze(2)  # [B, q, 1]
    allowed = causal & ((real & (same | prefix_key)) | torch.eye(width, dtype=torch.bool))
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def batch_tensors(rows: Sequence[PackedRow]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``ids`` and ``position_ids`` ``[B, width]`` of ``rows`` (padding: id 0 at position 0)."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    pos = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r.ids, dtype=torch.long)
        pos[b, : len(r)] = torch.tensor(r.positions, dtype=torch.long)
    return ids, pos
