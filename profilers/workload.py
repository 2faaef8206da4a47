"""``Workload``: batch, prompt length, generated length and dtype at which latency is measured.

Canonical key ``b{batch}-p{prompt_len}-g{gen_len}`` plus ``-{dtype}`` unless the dtype is fp32,
e.g. ``b1-p128-g64`` or ``b4-p512-g128-fp16``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import ConfigError

DEFAULT_DTYPE = "fp32"
_KEY_RE = re.compile(r"^b(?P<b>\d+)-p(?P<p>\d+)-g(?P<g>\d+)(?:-(?P<d>[a-z][a-z0-9_]*))?$")
_DTYPE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: dtypes with a known element size (bytes); quantisation names (e.g. ``q4f16_1``) are allowed too.
DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
                                  "q8_0": 34 / 32, "q4_k": 144 / 256}


@dataclass(frozen=True)
class Workload:
    """One measurement point: ``batch`` sequences, ``prompt_len`` prompt tokens, ``gen_len`` generated tokens."""

    batch: int = 1
    prompt_len: int = 128
    gen_len: int = 64
    dtype: str = DEFAULT_DTYPE

    def __post_init__(self) -> None:
        for name, low in (("batch", 1), ("prompt_len", 1), ("gen_len", 2)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ConfigError(f"workload {name} must be an integer >= {low}, got {v!r}")
        if not _DTYPE_RE.match(self.dtype):
            raise ConfigError(f"workload dtype {self.dtype!r} must be lowercase letters, digits or '_' (e.g. fp16, q4f16_1)")

    @property
    def key(self) -> str:
        """Canonical key, e.g. ``b1-p128-g64`` (fp32) or ``b1-p128-g64-fp16``."""
        base = f"b{self.batch}-p{self.prompt_len}-g{self.gen_len}"
        return base if self.dtype == DEFAULT_DTYPE else f"{base}-{self.dtype}"

    @property
    def context_len(self) -> int:
        """Tokens held in the KV cache at the end of generation."""
        return self.prompt_len + self.gen_len

    @property
    def dtype_bytes(self) -> float:
        """Bytes per weight element (4 for unknown quantisations: only a scale for the predictor features)."""
        return DTYPE_BYTES.get(self.dtype, 4.0)

    def __str__(self) -> str:
        return self.key

    @classmethod
    def parse(cls, key: str) -> Workload:
        """Parse ``b1-p128-g64[-dtype]``; raises ``ConfigError`` naming the problem."""
        m = _KEY_RE.match(key.strip())
        if not m:
            raise ConfigError(f"bad workload key {key!r}: expected like 'b1-p128-g64' or 'b1-p128-g64-fp16'")
        return cls(int(m["b"]), int(m["p"]), int(m["g"]), m["d"] or DEFAULT_DTYPE)
