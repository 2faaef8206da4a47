"""The latency interface that search consumes; ``profilers`` implements it (predictor or measured table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from core.spec import SubnetSpec

LatencyMetric = Literal["tpot", "ttft", "e2e"]


@dataclass(frozen=True)
class LatencyEstimate:
    """Latency of one shape for one (device, engine, workload).

    ``in_range`` is False when the shape lies outside the measured range (an extrapolation).
    """

    ttft_ms: float
    tpot_ms: float
    peak_mem_mb: float | None = None
    in_range: bool = True

    def e2e_ms(self, gen_len: int) -> float:
        """End-to-end latency: ``ttft + (gen_len - 1) * tpot``."""
        return self.ttft_ms + max(0, gen_len - 1) * self.tpot_ms

    def value(self, metric: LatencyMetric, gen_len: int) -> float:
        """The latency named by ``metric`` in milliseconds."""
        if metric == "tpot":
            return self.tpot_ms
        if metric == "ttft":
            return self.ttft_ms
        return self.e2e_ms(gen_len)


class LatencyModel(Protocol):
    """Anything that estimates the latency of a shape (a fitted predictor, a measured table)."""

    @property
    def gen_len(self) -> int:
        """Generated length of the workload (for end-to-end latency)."""
        ...

    def estimate(self, spec: SubnetSpec) -> LatencyEstimate:
        """Latency of ``spec``; ``in_range`` False outside the measured range."""
        ...
