"""A multiple-choice calibration metric for the depth DP (DESIGN §2.1: "or multiple-choice accuracy").

``ChoiceCrossEntropy`` scores a removal set by how well the pruned model still picks the right answer on a fixed
set of multiple-choice items: per item, the choices' length-normalised log-likelihoods (lm-eval's acc_norm
scores: summed continuation log-probabilities / continuation bytes) are turned into a distribution over the
choices by a softmax, and the loss is the cross-entropy of the gold choice. It is a smooth stand-in for
``1 − acc_norm`` (whose argmax ties would leave the DP's comparisons mostly undecided on a few hundred items);
``errors="count"`` gives ``1 − acc_norm`` itself.

Items are packed one per row (``core.eval.packing``: the shared context once, each choice as its own segment),
so the DP scores only the continuation positions through the LM head. Use items from a split that is never
reported (e.g. MMLU validation), never the test items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.eval.multiple_choice import MultipleChoiceItem, build_requests, pack_requests
from core.eval.packing import PackedRow, batch_tensors, segment_mask

LOSSES = ("ce", "count")


class ChoiceCrossEntropy:
    """``CalibrationMetric`` over multiple-choice ``items``: mean cross-entropy (nats) of the gold choice under the
    softmax of the acc_norm scores, or (``loss="count"``) the fraction of items whose acc_norm pick is wrong."""

    def __init__(self, items: Sequence[MultipleChoiceItem], tokenizer: Any, max_len: int, *, batch_size: int = 8, loss: str = "ce") -> None:
        if not items:
            raise ConfigError("the multiple-choice calibration metric needs at least one item")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if loss not in LOSSES:
            raise ConfigError(f"unknown multiple-choice loss {loss!r}: expected one of {', '.join(LOSSES)}")
        self.name = f"mc-{loss}"
        self.loss = loss
        self.items = list(items)
        rows = sorted(pack_requests(build_requests(tokenizer, self.items, max_len)), key=lambda r: -len(r))
        self._rows: list[list[PackedRow]] = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
        self._ids: list[torch.Tensor] = []
        self._pos: list[torch.Tensor] = []
        for batch in self._rows:
            ids, pos = batch_tensors(batch)
            self._ids.append(ids)
            self._pos.append(pos)
        self.tokens = sum(len(r) for r in rows)

    def batches(self) -> Sequence[torch.Tensor]:
        return self._ids

    def layout(self, index: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return segment_mask(self._rows[index], self._ids[index].shape[1]), self._pos[index]

    def batch_loss(self, model: ElasticModel, hidden: torch.Tensor, index: int) -> tuple[float, float]:
        """(summed loss over the batch's items, number of items) from the last layer's hidden states ``[B, T, H]``."""
        rows = self._rows[index]
        spans = [(b, s) for b, r in enumerate(rows) for s in r.spans]
        b_idx = torch.tensor([b for b, s in spans for _ in s.rows], dtype=torch.long, device=hidden.device)
        t_idx = torch.tensor([t for _, s in spans for t in s.rows], dtype=torch.long, device=hidden.device)
        tgt = torch.tensor([t for _, s in spans for t in s.targets], dtype=torch.long, device=hidden.device)
        lp = torch.log_softmax(model.logits(hidden[b_idx, t_idx]).float(), dim=-1)  # [N, V]: scored positions only
        picked = lp.gather(1, tgt.unsqueeze(1)).squeeze(1)
        per_span = torch.zeros(len(spans), dtype=picked.dtype, device=picked.device)
        owner = torch.repeat_interleave(torch.arange(len(spans), device=picked.device), torch.tensor([len(s.rows) for _, s in spans], device=picked.device))
        per_span.index_add_(0, owner, picked)
        total, k = 0.0, 0
        for row in rows:
            item = self.items[row.spans[0].item]
            n = len(row.spans)
            normed = per_span[k : k + n] / torch.tensor(item.norm_bytes, dtype=per_span.dtype, device=per_span.device)
            k += n
            if self.loss == "ce":
                total += float(-torch.log_softmax(normed, dim=0)[item.gold])
            else:
                best = max(range(n), key=lambda j: (float(normed[j]), -j))  # acc_norm's argmax, ties to the first
                total += float(best != item.gold)
        return total, float(len(rows))
