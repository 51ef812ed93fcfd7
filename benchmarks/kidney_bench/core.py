"""Building blocks of the benchmark suite: goals, figures, section results, timing, machine info.

Nothing here imports TensorFlow at module level (``kidney-tf --help`` stays fast).

Usage::

    from kidney_bench.core import Figure, Goal, Stopwatch
    with Stopwatch() as watch:
        run_something()
    figure = Figure("ratio", "pipeline / training", 6.2, "x", Goal(">=", 5.0))
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

SCHEMA = "kidney_tf.benchmark/1"


def is_benchmark_report(path: str | os.PathLike) -> bool:
    """True when ``path`` is a JSON report written by ``kidney-tf benchmark`` (its ``schema``)."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda value, threshold: value >= threshold,
    "<=": lambda value, threshold: value <= threshold,
}


@dataclasses.dataclass(frozen=True)
class Goal:
    """A target for one figure: ``value <op> threshold`` (``op`` is ``">="`` or ``"<="``).

    Usage: ``Goal(">=", 5.0).met(6.1)  # True``
    """

    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"goal operator must be one of {sorted(_OPS)}, got {self.op!r}")

    def met(self, value: float | None) -> bool | None:
        """True/False, or None when there is no value to judge."""
        if value is None:
            return None
        return bool(_OPS[self.op](float(value), float(self.threshold)))

    def describe(self, unit: str = "") -> str:
        return f"{self.op} {_number(self.threshold)}{_unit_suffix(unit)}"


@dataclasses.dataclass
class Figure:
    """One reported number with its unit and (optional) goal.

    ``passed`` is True/False against the goal and None for informational figures (no goal).

    Usage: ``Figure("fostering.overhead", "fostering fit overhead", 4.2, "%", Goal("<=", 10))``
    """

    key: str
    label: str
    value: float | None
    unit: str = ""
    goal: Goal | None = None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value)

    @property
    def status(self) -> str:
        """``"pass"``, ``"miss"``, ``"info"`` (no goal) or ``"n/a"`` (no value)."""
        if self.value is None:
            return "n/a"
        return {True: "pass", False: "miss", None: "info"}[self.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "value": None if self.value is None else float(self.value),
            "unit": self.unit,
            "goal": None if self.goal is None else self.goal.describe(self.unit),
            "goal_op": None if self.goal is None else self.goal.op,
            "goal_threshold": None if self.goal is None else float(self.goal.threshold),
            "status": self.status,
            "passed": self.passed,
            "note": self.note,
        }


@dataclasses.dataclass
class SectionResult:
    """What one benchmark section measured: raw numbers (``data``) and reported figures."""

    name: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    figures: list[Figure] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "data": self.data,
            "figures": [f.to_dict() for f in self.figures],
        }


CLOCKS: tuple[str, ...] = ("wall", "cpu")


class Stopwatch:
    """Wall-clock (``perf_counter``) and CPU (``process_time``, all threads) timer.

    CPU time counts only this process's work, so it stays meaningful when other processes
    share the cores; wall time is what a user waits on an idle machine.

    Usage: ``with Stopwatch() as w: work(); print(w.seconds, w.cpu_seconds)``
    """

    def __init__(self) -> None:
        self.start = self.cpu_start = 0.0
        self.seconds = self.cpu_seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start

    def rates(self, count: float) -> dict[str, float | None]:
        """``{"wall": count / seconds, "cpu": count / cpu_seconds}``."""
        return {"wall": rate(count, self.seconds), "cpu": rate(count, self.cpu_seconds)}

    def to_dict(self) -> dict[str, float]:
        return {"seconds": round(self.seconds, 4), "cpu_seconds": round(self.cpu_seconds, 4)}


def measure(fn: Callable[[], Any], count: int, *, repeats: int = 1, warmup: bool = True):
    """Time ``repeats`` calls of ``fn`` (after one untimed warm-up call) processing ``count``
    items each; returns ``{"seconds", "cpu_seconds", "per_s": {"wall", "cpu"}}``."""
    if warmup:
        fn()
    repeats = max(1, int(repeats))
    with Stopwatch() as watch:
        for _ in range(repeats):
            fn()
    return {**watch.to_dict(), "per_s": watch.rates(count * repeats)}


def rate(count: float, seconds: float) -> float | None:
    """``count / seconds`` (items per second), None when nothing was timed."""
    return None if seconds <= 0 else float(count) / float(seconds)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)


def median(values: Sequence[float | None]) -> float | None:
    values = [float(v) for v in values if v is not None]
    return statistics.median(values) if values else None


def per_clock(fn: Callable[[str], float | None]) -> dict[str, float | None]:
    """``{clock: fn(clock)}`` for both clocks."""
    return {clock: fn(clock) for clock in CLOCKS}


def pick(value: Any, clock: str) -> float | None:
    """The ``clock`` entry of a ``{"wall", "cpu"}`` dict (plain numbers pass through)."""
    if isinstance(value, dict):
        value = value.get(clock)
    return None if value is None else float(value)


def choose_clock(setting: str = "auto", load: Sequence[float] | None = None) -> tuple[str, str]:
    """``(clock, why)``: ``"wall"``/``"cpu"`` as asked; ``"auto"`` picks CPU time when the
    1-minute load average is above a quarter of the usable CPUs (a shared machine)."""
    if setting in CLOCKS:
        return setting, "requested"
    if setting != "auto":
        raise ValueError(f"clock must be auto, wall or cpu, got {setting!r}")
    load = load if load is not None else load_average()
    if load and load[0] > 0.25 * cpu_count():
        return "cpu", (
            f"load average {load[0]:.2f} on {cpu_count()} CPUs: other processes share the cores, "
            "so ratios use this process's CPU time"
        )
    return "wall", "machine idle: ratios use wall-clock time"


def cpu_count() -> int:
    """CPUs this process may run on (affinity), falling back to ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Platform, CPU, memory and library versions (imports TensorFlow).

    Usage: ``info = machine_info(); info["cpu_count"]``
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from kidney_tf import __version__

    total = _total_memory_bytes()
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": cpu_count(),
        "memory_total_gib": None if total is None else round(total / 2**30, 2),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "load_average": load_average(),
        "versions": {
            "kidney_tf": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "opencv": _version("opencv-python-headless") or _version("opencv-python"),
            "tf-keras-vis": _version("tf-keras-vis"),
        },
        "tf_threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    }


def _number(value: float) -> str:
    value = float(value)
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def _unit_suffix(unit: str) -> str:
    if not unit:
        return ""
    return unit if unit in ("x", "%") else f" {unit}"


def format_value(value: float | None, unit: str = "") -> str:
    """Human-readable value with unit: ``6.20x``, ``4.10%``, ``123 images/s``, ``0.0031x``."""
    if value is None:
        return "n/a"
    value = float(value)
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 0.1 or value == 0:
        text = f"{value:.2f}"
    else:
        text = f"{value:.2g}"
    return f"{text}{_unit_suffix(unit)}"


__all__ = [
    "CLOCKS",
    "SCHEMA",
    "is_benchmark_report",
    "Figure",
    "Goal",
    "SectionResult",
    "Stopwatch",
    "choose_clock",
    "cpu_count",
    "format_value",
    "load_average",
    "machine_info",
    "measure",
    "median",
    "per_clock",
    "pick",
    "rate",
    "ratio",
]
