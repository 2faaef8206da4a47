"""Perplexity over non-overlapping windows of one token stream (the WikiText-2 protocol of GPTQ / AmoebaLLM)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from core.errors import ConfigError, DataMissingError
from core.eval.encoding import bos_prefix, encode

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
"""Input ids ``[B, T]`` → logits ``[B, T, V]``. An ``ElasticModel`` is one; for a HF model use
``lambda ids: model(input_ids=ids).logits``."""

ProgressFn = Callable[[int, int], None]
"""``on_progress(done, total)`` after each batch."""


@dataclass(frozen=True)
class PerplexityResult:
    """``ppl = exp(nll)``; ``nll`` is the mean negative log-likelihood (nats) per scored token."""

    ppl: float
    nll: float
    tokens_scored: int
    windows: int
    window_len: int
    #: mean NLL of every window, in order (windows are equally long, so ``nll`` is their mean)
    window_nll: tuple[float, ...] = ()

    @property
    def nll_stderr(self) -> float | None:
        """Standard error of ``nll`` over the windows (``None`` below two windows); ``ppl`` is ``exp(nll ± se)``."""
        n = len(self.window_nll)
        if n < 2:
            return None
        mu = sum(self.window_nll) / n
        return math.sqrt(sum((x - mu) ** 2 for x in self.window_nll) / (n - 1) / n)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def context_window(requested: int | None, max_positions: int) -> int:
    """The window length to use: ``requested`` capped by the model context ``max_positions`` (default: the cap)."""
    if max_positions < 2:
        raise ConfigError(f"model context of {max_positions} positions is too short to score anything")
    if requested is None:
        return max_positions
    if requested < 2:
        raise ConfigError(f"window must be >= 2 tokens, got {requested}")
    return min(requested, max_positions)


def _exp(nll: float) -> float:
    return math.exp(nll) if nll < 700 else math.inf


def perplexity_from_ids(
    logits_fn: LogitsFn,
    ids: torch.Tensor,
    window: int,
    *,
    batch_size: int = 4,
    max_windows: int | None = None,
    on_progress: ProgressFn | None = None,
    device: torch.device | str | None = None,
) -> PerplexityResult:
    """Perplexity of the 1-D token stream ``ids`` cut into ``len(ids) // window`` non-overlapping windows.

    Each window ``[window]`` is scored independently; every token except the first of each window is predicted
    (``window - 1`` scored tokens per window); the incomplete tail is dropped. ``max_windows`` keeps the first
    windows only. ``device``: where the windows are sent before ``logits_fn`` (default: stay on CPU).
    """
    if ids.dim() != 1:
        raise ConfigError(f"ids must be a 1-D token stream, got shape {tuple(ids.shape)}")
    if window < 2:
        raise ConfigError(f"window must be >= 2 tokens, got {window}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if max_windows is not None and max_windows < 1:
        raise ConfigError(f"max_windows must be >= 1, got {max_windows}")
    n = ids.numel() // window
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise ConfigError(f"token stream of {ids.numel()} tokens is shorter than one window of {window}")
    windows = ids[: n * window].reshape(n, window).long()
    per_window: list[float] = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = windows[start : start + batch_size]
            if device is not None:
                batch = batch.to(device)
            logits = logits_fn(batch)
            if logits.dim() != 3 or logits.shape[:2] != batch.shape:
                raise ConfigError(f"logits_fn returned shape {tuple(logits.shape)} for input {tuple(batch.shape)}; expected [B, T, V]")
            nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1), reduction="none")
            per_window += nll.view(batch.shape[0], -1).sum(1).tolist()
            if on_progress is not None:
                on_progress(min(start + batch_size, n), n)
    tokens = n * (window - 1)
    mean = sum(per_window) / tokens
    return PerplexityResult(ppl=_exp(mean), nll=mean, tokens_scored=tokens, windows=n, window_len=window,
                            window_nll=tuple(x / (window - 1) for x in per_window))


def tokenize_stream(tokenizer: Any, text: str, add_bos: bool | None = None) -> torch.Tensor:
    """The whole ``text`` as one token stream ``[N]``, with a BOS in front iff ``add_bos``.

    ``add_bos=None`` follows the tokenizer's default (``bos_prefix``), as ``tokenizer(text)`` would.
    """
    prefix = bos_prefix(tokenizer) if add_bos is None else ([tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else [])
    return torch.tensor(prefix + encode(tokenizer, text), dtype=torch.long)


def perplexity_of_text(logits_fn: LogitsFn, tokenizer: Any, text: str, window: int, *, add_bos: bool | None = None, **kw: Any) -> PerplexityResult:
    """``perplexity_from_ids`` of ``text`` tokenised as one stream (see ``tokenize_stream``)."""
    if not text:
        raise ConfigError("cannot compute perplexity of an empty text")
    return perplexity_from_ids(logits_fn, tokenize_stream(tokenizer, text, add_bos), window, **kw)


def perplexity_of_file(logits_fn: LogitsFn, tokenizer: Any, path: Path, window: int, **kw: Any) -> PerplexityResult:
    """Perplexity of a UTF-8 text file, tokenised whole as one stream (universal newlines: CRLF reads as LF).

    WikiText-2 raw: passing ``wiki.test.raw`` here scores its non-empty lines joined by single newlines. The
    standard stream (``"\\n\\n".join`` of the Hugging Face dataset rows, as GPTQ / AmoebaLLM evaluate) is
    ``core.eval.wikitext.wikitext2_test_text``; use ``perplexity_of_text`` on it (``amoeba eval --wikitext2``).
    """
    return perplexity_of_text(logits_fn, tokenizer, read_text_file(path), window, **kw)


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's content (universal newlines); ``DataMissingError`` / ``ConfigError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataMissingError(f"text file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text: {e}") from None
