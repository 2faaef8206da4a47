"""Device facts (read, never guessed), CPU contention during a measurement, and peak RSS on Linux."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profilers.table import DeviceFacts


def load_avg() -> tuple[float, float, float]:
    """1/5/15-minute load averages (zeros where the OS has none)."""
    try:
        a, b, c = os.getloadavg()
        return (round(a, 2), round(b, 2), round(c, 2))
    except OSError:
        return (0.0, 0.0, 0.0)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_clocks_mhz() -> dict[str, float]:
    """Current / max frequency of CPU 0 from cpufreq (empty when not exposed, e.g. in containers)."""
    out: dict[str, float] = {}
    for name, f in (("cpu0_cur", "scaling_cur_freq"), ("cpu0_max", "cpuinfo_max_freq")):
        v = _read(f"/sys/devices/system/cpu/cpu0/cpufreq/{f}")
        if v and v.isdigit():
            out[name] = int(v) / 1000.0
    gov = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if gov:
        out["cpu0_governor_is_performance"] = 1.0 if gov == "performance" else 0.0
    return out


def _nvidia_smi() -> tuple[str | None, str | None, dict[str, float]]:
    if not shutil.which("nvidia-smi"):
        return None, None, {}
    try:
        q = "name,driver_version,clocks.sm,clocks.mem"
        line = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()[0]
        name, drv, sm, mem = (x.strip() for x in line.split(","))
        clocks = {k: float(v) for k, v in (("gpu_sm", sm), ("gpu_mem", mem)) if v.replace(".", "").isdigit()}
        return name, drv, clocks
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None, None, {}


def _jetson() -> tuple[str | None, str | None]:
    """(JetPack / L4T release, nvpmodel power mode) on Jetson boards."""
    rel = _read("/etc/nv_tegra_release")
    l4t = rel.split(",")[0].lstrip("# ").strip() if rel else None
    mode = None
    if shutil.which("nvpmodel"):
        try:
            out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10).stdout
            mode = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Power Mode" in ln), None)
        except (OSError, subprocess.SubprocessError):
            mode = None
    return l4t, mode


@dataclass
class FactsRecorder:
    """Collects device facts; ``start()`` before and ``finish()`` after the whole profiling run."""

    name: str | None
    threads: int
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extra_clocks: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.load_start = load_avg()

    def finish(self) -> DeviceFacts:
        gpu, drv, gclk = _nvidia_smi()
        l4t, mode = _jetson()
        return DeviceFacts(name=self.name, cpu_model=cpu_model(), cpu_count=os.cpu_count() or 1, threads=self.threads,
                           gpu_model=gpu, driver=drv, jetpack=l4t, power_mode=mode,
                           clocks_mhz={**cpu_clocks_mhz(), **gclk, **self.extra_clocks},
                           load_avg_start=self.load_start, load_avg_end=load_avg(),
                           os=f"{platform.system()} {platform.release()}")


@dataclass
class CpuMonitor:
    """How many cores *other* processes kept busy while we measured (system busy time minus our own CPU time).

    ``cpus``: also measure how much of *those* CPUs (the ones we are pinned to) others used (``on_ours``).
    """

    cpus: tuple[int, ...] | None = None
    _t0: float = 0.0
    _sys0: Any = None
    _per0: Any = None
    _own0: float = 0.0
    on_ours: float = 0.0

    @staticmethod
    def _sys_busy(ct: Any) -> float:
        return float(ct.user + ct.nice + ct.system + getattr(ct, "irq", 0.0) + getattr(ct, "softirq", 0.0) + getattr(ct, "steal", 0.0))

    @staticmethod
    def _own() -> float:
        import psutil

        t = psutil.Process().cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def _ours(self) -> float:
        import psutil

        if not self.cpus:
            return 0.0
        per = psutil.cpu_times(percpu=True)
        return sum(self._sys_busy(per[i]) for i in self.cpus if i < len(per))

    def start(self) -> None:
        import psutil

        self._t0, self._sys0, self._own0 = time.perf_counter(), psutil.cpu_times(), self._own()
        self._per0 = self._ours()

    def stop(self) -> float:
        """Average number of cores used by other processes since ``start()`` (and sets ``on_ours``)."""
        import psutil

        wall = max(time.perf_counter() - self._t0, 1e-6)
        own = self._own() - self._own0
        others = self._sys_busy(psutil.cpu_times()) - self._sys_busy(self._sys0) - own
        if self.cpus:
            self.on_ours = round(max(0.0, (self._ours() - self._per0 - own) / wall), 3)
        return round(max(0.0, others / wall), 3)


def is_busy(contention: float, threads: int, tolerance: float, on_ours: float = 0.0) -> bool:
    """Busy when other processes needed more cores than the ones our ``threads`` left free, or used more than
    ``tolerance`` of the CPUs we are pinned to (``on_ours``)."""
    free = max(0, (os.cpu_count() or 1) - threads)
    return contention > free + tolerance or on_ours > tolerance


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb(kind: str = "VmRSS") -> float | None:
    """Current (``VmRSS``) or peak (``VmHWM``) resident memory of this process in MiB, ``None`` off Linux."""
    text = _read("/proc/self/status")
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith(kind + ":"):
            return int(line.split()[1]) / 1024.0
    return None


def trim_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``) so the next peak-RSS reading is per shape."""
    import ctypes
    import ctypes.util

    lib = ctypes.util.find_library("c")
    if lib:
        try:
            ctypes.CDLL(lib).malloc_trim(0)
        except (OSError, AttributeError):
            pass
