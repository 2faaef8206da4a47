"""Tokenisation rules shared by perplexity and multiple choice (lm-eval-harness conventions)."""

from __future__ import annotations

from typing import Any

from core.errors import ConfigError


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def bos_prefix(tokenizer: Any) -> list[int]:
    """The special tokens the tokenizer puts in front of a text by default (``[bos]`` for Llama-2, else ``[]``).

    Found by comparing ``tokenizer("a")`` with and without special tokens, so it follows the tokenizer's own
    default (e.g. the HF ``add_bos_token`` setting) instead of guessing from the model family.
    """
    plain = encode(tokenizer, "a")
    full = list(tokenizer("a")["input_ids"])
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return full[:k]
    return []


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation tokens with the lm-eval-harness boundary.

    Trailing spaces of ``context`` move to the front of ``continuation`` (the leading space belongs to the
    continuation); then ``context + continuation`` is encoded as one string and the continuation tokens are those
    after the first ``len(encode(context))`` tokens; the context tokens are ``encode(context)`` (as lm-eval feeds
    them). No special tokens are added here (see ``bos_prefix``).
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation)
    ctx = encode(tokenizer, context)
    cont = whole[len(ctx) :]
    if not cont:
        raise ConfigError(f"continuation {continuation!r} encodes to no tokens after context {context[-40:]!r}")
    return ctx, cont
