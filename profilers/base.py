"""The plugin interface: availability, engine facts, and one timed session per shape.

A plugin only says how to *prepare* a shape (build artefacts once) and how to *open* a session on it that runs
one generation at a time. Everything about measuring — warm-up, pinned threads and CPU affinity, interleaved
rounds and passes, the per-shape statistic, busy detection and re-measurement — is ``profilers.protocol``, the
one code path for every engine.
"""

from __future__ import annotations

import contextlib
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.dims import ShapeDims
from profilers.table import EngineFacts, ProfileRow
from profilers.workload import Workload

if TYPE_CHECKING:
    from profilers.source import ModelSource


@dataclass(frozen=True)
class MeasureSettings:
    """How to measure (see ``profilers.protocol``).

    Every shape is measured once per *round* (``warmup`` untimed + ``repetitions`` timed generations); a *pass* is
    ``rounds`` interleaved rounds over all shapes (order rotated per round); ``passes`` separate passes give the
    test–retest noise floor (>= 2). The per-shape value is the median of the round medians.
    ``cpu_affinity``: CPUs to pin the process to (``None``: the last ``threads`` CPUs this process may use).
    ``busy_policy``: ``mark`` keeps a contended row with ``busy=True`` (after ``busy_retries`` re-measurements of
    each contended round); ``refuse`` raises ``MachineBusyError`` instead. ``device``: ``cpu`` or ``cuda``.
    """

    warmup: int = 1
    repetitions: int = 5
    threads: int = 1
    busy_policy: Literal["mark", "refuse"] = "mark"
    busy_retries: int = 1
    busy_tolerance: float = 0.25
    device: str = "cpu"
    rounds: int = 1
    passes: int = 1
    cpu_affinity: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.repetitions < 1 or self.threads < 1 or self.busy_retries < 0 or self.rounds < 1 or self.passes < 1:
            raise ConfigError(f"bad measure settings: warmup>=0, repetitions>=1, threads>=1, busy_retries>=0, rounds>=1, passes>=1 (got {self})")
        if self.busy_policy not in ("mark", "refuse"):
            raise ConfigError(f"busy_policy must be 'mark' or 'refuse', got {self.busy_policy!r}")
        if self.cpu_affinity is not None and (not self.cpu_affinity or min(self.cpu_affinity) < 0):
            raise ConfigError(f"cpu_affinity must be a non-empty list of CPU indices, got {self.cpu_affinity}")


class Session(Protocol):
    """One opened shape: runs one generation per call and knows its memory."""

    def generate(self) -> tuple[float, float]:
        """One prefill + ``gen_len - 1`` decode steps: ``(ttft_ms, tpot_ms)``."""
        ...

    def peak_mem_mb(self) -> float | None:
        """Peak memory of this shape so far (``None`` where not measurable)."""
        ...


class Profiler(ABC):
    """One deployment flow. Subclasses import their runtime lazily (inside methods), never at module import."""

    name: ClassVar[str]
    #: dtypes (workload ``dtype``) this flow can run
    dtypes: ClassVar[tuple[str, ...]] = ("fp32",)

    def __init__(self, settings: MeasureSettings | None = None) -> None:
        self.settings = settings or MeasureSettings()

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` when the runtime can run here, else why not (e.g. ``tensorrt_llm is not installed``)."""

    @classmethod
    def available(cls) -> bool:
        return cls.unavailable_reason() is None

    def check_workload(self, workload: Workload) -> None:
        """Raise ``ConfigError`` when this flow cannot run ``workload``."""
        if workload.dtype not in self.dtypes:
            raise ConfigError(f"engine {self.name} does not support dtype {workload.dtype!r} (supported: {', '.join(self.dtypes)})")

    @abstractmethod
    def engine_facts(self, workload: Workload) -> EngineFacts:
        """Engine name, version, dtype / quantisation and build flags (runtime must be available)."""

    def prepare(self, source: ModelSource, spec: SubnetSpec, workload: Workload, workdir: Path) -> Any:
        """Build what every session of ``spec`` needs once (an ONNX graph, a GGUF file…) under ``workdir``; the
        result is passed to ``open``. Default: nothing (``open`` builds from ``source``)."""
        return None

    @abstractmethod
    def open(self, source: ModelSource, spec: SubnetSpec, workload: Workload, prepared: Any) -> AbstractContextManager[Session]:
        """A session on ``spec`` (runtime loaded, threads pinned to ``settings.threads``); closed on exit."""

    @contextlib.contextmanager
    def session(self, source: ModelSource, spec: SubnetSpec, workload: Workload) -> Iterator[Session]:
        """``prepare`` (in a temporary directory) and ``open`` in one step: a session outside the protocol."""
        with tempfile.TemporaryDirectory(prefix=f"amoeba-{self.name}-") as tmp:
            prepared = self.prepare(source, spec, workload, Path(tmp))
            with self.open(source, spec, workload, prepared) as s:
                yield s

    def dims(self, source: ModelSource, spec: SubnetSpec) -> ShapeDims:
        """What ``spec`` keeps as this flow builds it (default: the source's export rounding)."""
        return source.dims(spec)

    def measure(self, source: ModelSource, spec: SubnetSpec, workload: Workload) -> ProfileRow:
        """Measure one shape with the shared protocol (``profilers.protocol.measure_shapes``)."""
        from profilers.protocol import measure_shapes

        return measure_shapes(self, source, [spec], workload).rows[0]
