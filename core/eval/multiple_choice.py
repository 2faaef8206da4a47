"""Multiple-choice scoring by log-likelihood, with the lm-eval-harness metrics.

Choice ``j`` of an item is scored as ``sum log P(continuation_j tokens | context_j)`` (natural log):
- ``acc``: the item is right when the argmax of the summed continuation log-probs is the gold choice;
- ``acc_norm``: the argmax of the summed log-prob divided by the choice's length in UTF-8 bytes (the choice
  text without the leading delimiter space, the denominator lm-eval-harness uses; for ASCII text, bytes = chars).
Ties go to the lowest index (``argmax``). Standard items share one context and differ in the continuation;
partial-scoring items (WinoGrande) differ in the context and share the continuation.

Models that implement ``PackedLM`` (``ElasticModel``, ``HFCausalLM``) are scored one item per row with the common
prefix of its choices computed once and the LM head applied only at scored positions (``core.eval.packing``);
plain logits functions get one sequence per distinct input. Both give the same log-likelihoods.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core.errors import ConfigError
from core.eval.encoding import bos_prefix, encode_pair
from core.eval.packing import PackedLM, PackedRow, batch_tensors, pack_item, segment_mask
from core.eval.perplexity import LogitsFn

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class MultipleChoiceItem:
    """One question; choice ``j`` is ``log P(continuations[j] | contexts[j])``; ``norm_bytes[j]`` divides it for acc_norm."""

    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    gold: int
    norm_bytes: tuple[int, ...]
    subject: str = ""

    def __post_init__(self) -> None:
        k = len(self.contexts)
        if k < 2 or len(self.continuations) != k or len(self.norm_bytes) != k:
            raise ConfigError(f"a multiple-choice item needs >= 2 choices with one context, continuation and length each, got {k}")
        if not 0 <= self.gold < k:
            raise ConfigError(f"gold index {self.gold} out of range for {k} choices")
        if min(self.norm_bytes) < 1:
            raise ConfigError("norm_bytes must be >= 1")

    @property
    def num_choices(self) -> int:
        return len(self.contexts)

    @classmethod
    def with_choices(cls, context: str, choices: Sequence[str], gold: int, *, delimiter: str = " ", subject: str = "") -> MultipleChoiceItem:
        """Standard item: one ``context``, continuation ``delimiter + choice`` (acc_norm length: the choice's bytes)."""
        return cls(
            contexts=(context,) * len(choices),
            continuations=tuple(delimiter + c for c in choices),
            gold=gold,
            norm_bytes=tuple(max(1, len(c.encode("utf-8"))) for c in choices),
            subject=subject,
        )

    @classmethod
    def with_contexts(cls, contexts: Sequence[str], continuation: str, gold: int, *, delimiter: str = " ", subject: str = "") -> MultipleChoiceItem:
        """Partial-scoring item: the shared ``delimiter + continuation`` is scored after each option-filled context."""
        n = max(1, len(continuation.encode("utf-8")))
        return cls(tuple(contexts), (delimiter + continuation,) * len(contexts), gold, (n,) * len(contexts), subject)


@dataclass(frozen=True)
class ItemScore:
    """Summed continuation log-likelihoods (nats) of one item and its two predictions."""

    loglikelihoods: tuple[float, ...]
    gold: int
    pred: int
    pred_norm: int
    subject: str = ""


@dataclass(frozen=True)
class TaskResult:
    """Per-task metrics. ``acc``/``acc_norm`` as in the module docstring; ``*_stderr`` is the sample standard error
    of the mean (``sqrt(p(1-p)/(n-1))``, lm-eval's ``mean_stderr``; ``None`` for n < 2); ``chance`` is the mean of
    ``1/num_choices``. ``subject_acc`` / ``macro_acc``: per-subject acc and their unweighted mean (AmoebaLLM's MMLU
    number) when items carry subjects."""

    task: str
    n: int
    acc: float
    acc_stderr: float | None
    acc_norm: float
    acc_norm_stderr: float | None
    chance: float
    subject_acc: dict[str, float] = field(default_factory=dict)
    macro_acc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Request:
    item: int
    choice: int
    tokens: tuple[int, ...]  # model input (already truncated from the left)
    targets: tuple[int, ...]  # continuation tokens, predicted by the last len(targets) input positions


def build_requests(tokenizer: Any, items: Sequence[MultipleChoiceItem], max_len: int, add_bos: bool | None = None) -> list[_Request]:
    """One request per (item, choice): ``bos? + context + continuation`` truncated from the left to ``max_len + 1``
    tokens, minus the last one (lm-eval's input); the continuation tokens are scored at its last positions."""
    if max_len < 1:
        raise ConfigError(f"max_len must be >= 1, got {max_len}")
    prefix = bos_prefix(tokenizer) if add_bos is None else ([tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else [])
    out = []
    for i, item in enumerate(items):
        for j, (ctx, cont) in enumerate(zip(item.contexts, item.continuations, strict=True)):
            ctx_ids, cont_ids = encode_pair(tokenizer, ctx, cont)
            if len(cont_ids) > max_len:
                raise ConfigError(f"item {i} choice {j}: continuation of {len(cont_ids)} tokens exceeds the model context of {max_len}")
            full = (prefix + ctx_ids + cont_ids)[-(max_len + 1) :]
            if len(full) < 2:
                raise ConfigError(f"item {i} choice {j}: empty context")
            out.append(_Request(i, j, tuple(full[:-1]), tuple(cont_ids)))
    return out


def _score_batch(logits_fn: LogitsFn, batch: list[list[_Request]], device: torch.device | str | None) -> list[list[float]]:
    """One forward over the distinct inputs of ``batch`` (each group shares its input tokens) → log-likelihoods."""
    width = max(len(group[0].tokens) for group in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)  # right padding: causal attention never sees it
    for b, group in enumerate(batch):
        ids[b, : len(group[0].tokens)] = torch.tensor(group[0].tokens)
    if device is not None:
        ids = ids.to(device)
    logits = logits_fn(ids)
    if logits.dim() != 3 or logits.shape[:2] != ids.shape:
        raise ConfigError(f"logits_fn returned shape {tuple(logits.shape)} for input {tuple(ids.shape)}; expected [B, T, V]")
    out = []
    for b, group in enumerate(batch):
        end = len(group[0].tokens)
        span = max(len(r.targets) for r in group)
        lp = torch.log_softmax(logits[b, end - span : end].float(), dim=-1)  # [span, V]
        vals = []
        for r in group:
            tgt = torch.tensor(r.targets, device=lp.device).unsqueeze(1)
            vals.append(float(lp[span - len(r.targets) :].gather(1, tgt).sum().item()))
        out.append(vals)
    return out


def _score_packed(lm: PackedLM, rows: list[PackedRow], device: torch.device | str | None) -> list[tuple[int, int, float]]:
    """One forward over packed ``rows`` → ``(item, choice, log-likelihood)`` for every scored span."""
    ids, pos = batch_tensors(rows)
    mask = segment_mask(rows, ids.shape[1])
    if device is not None:
        ids, pos, mask = ids.to(device), pos.to(device), mask.to(device)
    hidden = lm.final_hidden(ids, mask, pos)
    if hidden.dim() != 3 or hidden.shape[:2] != ids.shape:
        raise ConfigError(f"final_hidden returned shape {tuple(hidden.shape)} for input {tuple(ids.shape)}; expected [B, T, H]")
    spans = [(b, s) for b, r in enumerate(rows) for s in r.spans]
    b_idx = torch.tensor([b for b, s in spans for _ in s.rows], dtype=torch.long, device=hidden.device)
    t_idx = torch.tensor([t for _, s in spans for t in s.rows], dtype=torch.long, device=hidden.device)
    tgt = torch.tensor([t for _, s in spans for t in s.targets], dtype=torch.long, device=hidden.device)
    lp = torch.log_softmax(lm.head(hidden[b_idx, t_idx]).float(), dim=-1)  # [N, V], scored positions only
    picked = lp.gather(1, tgt.unsqueeze(1)).squeeze(1).tolist()
    out, k = [], 0
    for _, s in spans:
        out.append((s.item, s.choice, float(sum(picked[k : k + len(s.rows)]))))
        k += len(s.rows)
    return out


def pack_requests(requests: Sequence[_Request]) -> list[PackedRow]:
    """One packed row per item of ``requests`` (``build_requests`` order: choices in order within each item)."""
    by_item: dict[int, list[_Request]] = {}
    for r in requests:
        by_item.setdefault(r.item, []).append(r)
    for i, rs in by_item.items():
        if [r.choice for r in rs] != list(range(len(rs))):
            raise ConfigError(f"item {i}: requests must list its choices in order 0..{len(rs) - 1}")
    return [pack_item(i, [r.tokens for r in rs], [r.targets for r in rs]) for i, rs in by_item.items()]


def _loglikelihoods_packed(lm: PackedLM, requests: list[_Request], batch_size: int,
                           on_progress: ProgressFn | None, device: torch.device | str | None) -> dict[tuple[int, int], float]:
    rows = sorted(pack_requests(requests), key=lambda r: -len(r))
    out: dict[tuple[int, int], float] = {}
    for start in range(0, len(rows), batch_size):
        for item, choice, v in _score_packed(lm, rows[start : start + batch_size], device):
            out[(item, choice)] = v
        if on_progress is not None:
            on_progress(min(start + batch_size, len(rows)), len(rows))
    return out


def _loglikelihoods_plain(logits_fn: LogitsFn, requests: list[_Request], batch_size: int,
                          on_progress: ProgressFn | None, device: torch.device | str | None) -> dict[tuple[int, int], float]:
    groups: dict[tuple[int, ...], list[_Request]] = {}
    for r in requests:
        groups.setdefault(r.tokens, []).append(r)
    order = sorted(groups.values(), key=lambda g: -len(g[0].tokens))
    out: dict[tuple[int, int], float] = {}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        for group, vals in zip(batch, _score_batch(logits_fn, batch, device), strict=True):
            for r, v in zip(group, vals, strict=True):
                out[(r.item, r.choice)] = v
        if on_progress is not None:
            on_progress(min(start + batch_size, len(order)), len(order))
    return out


def score_items(
    model: LogitsFn | PackedLM,
    tokenizer: Any,
    items: Sequence[MultipleChoiceItem],
    max_len: int,
    *,
    batch_size: int = 8,
    add_bos: bool | None = None,
    on_progress: ProgressFn | None = None,
    device: torch.device | str | None = None,
    packed: bool | None = None,
) -> list[ItemScore]:
    """Score every choice of every item → ``ItemScore``s.

    ``model``: a ``PackedLM`` (scored packed: ``batch_size`` items per forward, longest first) or a plain logits
    function ``[B, T]`` → ``[B, T, V]`` (``batch_size`` distinct inputs per forward; choices with identical inputs,
    e.g. MMLU's one-letter answers, share one). ``packed=False`` forces the plain path on a ``PackedLM``.
    ``max_len``: the model context; longer inputs lose tokens on the left. ``add_bos=None`` follows the tokenizer's
    default (``bos_prefix``). ``on_progress(done, total)`` counts rows (items packed, distinct inputs plain).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    use_packed = isinstance(model, PackedLM) if packed is None else packed
    if use_packed and not isinstance(model, PackedLM):
        raise ConfigError(f"packed scoring needs a PackedLM (final_hidden + head), got {type(model).__name__}")
    requests = build_requests(tokenizer, items, max_len, add_bos)
    with torch.no_grad():
        if use_packed:
            ll = _loglikelihoods_packed(model, requests, batch_size, on_progress, device)  # type: ignore[arg-type]
        else:
            ll = _loglikelihoods_plain(model, requests, batch_size, on_progress, device)  # type: ignore[arg-type]
    scores = []
    for i, it in enumerate(items):
        lls = [ll[(i, j)] for j in range(it.num_choices)]
        normed = [v / n for v, n in zip(lls, it.norm_bytes, strict=True)]
        scores.append(ItemScore(tuple(lls), it.gold, _argmax(lls), _argmax(normed), it.subject))
    return scores


def _argmax(xs: Sequence[float]) -> int:
    return max(range(len(xs)), key=lambda k: (xs[k], -k))


def _mean_stderr(hits: Sequence[float]) -> float | None:
    n = len(hits)
    if n < 2:
        return None
    mean = sum(hits) / n
    var = sum((h - mean) ** 2 for h in hits) / (n - 1)
    return math.sqrt(var / n)


def summarize(task: str, scores: Sequence[ItemScore], items: Sequence[MultipleChoiceItem]) -> TaskResult:
    """Aggregate item scores into a ``TaskResult`` (see its docstring for every field)."""
    if not scores or len(scores) != len(items):
        raise ConfigError(f"{task}: need one score per item, got {len(scores)} scores for {len(items)} items")
    acc = [float(s.pred == s.gold) for s in scores]
    norm = [float(s.pred_norm == s.gold) for s in scores]
    by_subject: dict[str, list[float]] = {}
    for s, hit in zip(scores, acc, strict=True):
        if s.subject:
            by_subject.setdefault(s.subject, []).append(hit)
    subject_acc = {k: sum(v) / len(v) for k, v in sorted(by_subject.items())}
    return TaskResult(
        task=task,
        n=len(scores),
        acc=sum(acc) / len(acc),
        acc_stderr=_mean_stderr(acc),
        acc_norm=sum(norm) / len(norm),
        acc_norm_stderr=_mean_stderr(norm),
        chance=sum(1 / it.num_choices for it in items) / len(items),
        subject_acc=subject_acc,
        macro_acc=sum(subject_acc.values()) / len(subject_acc) if subject_acc else None,
    )


def evaluate_items(task: str, logits_fn: LogitsFn | PackedLM, tokenizer: Any, items: Sequence[MultipleChoiceItem], max_len: int, **kw: Any) -> TaskResult:
    """``score_items`` then ``summarize``."""
    if not items:
        raise ConfigError(f"{task}: no items to evaluate")
    return summarize(task, score_items(logits_fn, tokenizer, items, max_len, **kw), items)
