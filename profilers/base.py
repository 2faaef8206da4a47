"""The profiler plugin interface: availability, engine facts, and measuring one shape at one workload.

A plugin measures one shape per call; looping over shapes (and progress) belongs to the agent recipe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.table import EngineFacts, ProfileRow
from profilers.workload import Workload

if TYPE_CHECKING:
    from profilers.source import ModelSource


@dataclass(frozen=True)
class MeasureSettings:
    """How to measure: warm-up and timed repetitions, pinned threads, what to do when the machine is busy.

    ``busy_policy``: ``mark`` keeps a contended row with ``busy=True`` (after ``busy_retries`` re-measurements);
    ``refuse`` raises ``MachineBusyError`` instead. ``device``: ``cpu`` or ``cuda`` (engines that support it).
    """

    warmup: int = 1
    repetitions: int = 5
    threads: int = 1
    busy_policy: Literal["mark", "refuse"] = "mark"
    busy_retries: int = 1
    busy_tolerance: float = 0.25
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.repetitions < 1 or self.threads < 1 or self.busy_retries < 0:
            raise ConfigError(f"bad measure settings: warmup>=0, repetitions>=1, threads>=1, busy_retries>=0 (got {self})")
        if self.busy_policy not in ("mark", "refuse"):
            raise ConfigError(f"busy_policy must be 'mark' or 'refuse', got {self.busy_policy!r}")


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

    @abstractmethod
    def measure(self, source: ModelSource, spec: SubnetSpec, workload: Workload) -> ProfileRow:
        """Build (or load) ``spec`` from ``source`` and time prefill and decode at ``workload``."""
