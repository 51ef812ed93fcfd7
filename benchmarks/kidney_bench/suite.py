"""The benchmark suite behind ``kidney-tf benchmark``: every figure measured in ONE run.

Sections (each reported with its goal and pass/miss; a failing section is recorded, the others
still run):

======== ==================================================================== ==================
section  what                                                                 goal
======== ==================================================================== ==================
pipeline ``build_datasets`` images/s (cold, cached) / training images/s        >= 5x
fostering ``fit`` λ > 0 (exact CAM) vs λ = 0, interleaved, median overhead     <= 10 %
explain  Grad-CAM++ cost / ``predict`` cost (reused ``CamExplainer``)          <= 3x
stats    map statistics time / explanation time                              <= 5 %
crop     TF-graph crop vs OpenCV crop, per image and batched                 (informational)
memory   peak RSS of training at the default batch size (subprocess)         <= 8 GiB
======== ==================================================================== ==================

All data are phantoms generated into a temporary folder (``generate_phantoms``); models are built
with ``weights=None``. Presets: ``quick`` (< 10 min on an idle 2-core machine), ``full`` (more
steps, images and both architectures for memory) and ``smoke`` (a tiny CNN, seconds; for tests).

Usage::

    from kidney_bench.suite import BenchSettings, run_suite, format_report
    report = run_suite(BenchSettings.from_preset("quick"), out="bench.json")
    print(format_report(report))
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kidney_bench.core import (
    SCHEMA,
    Figure,
    SectionResult,
    Stopwatch,
    choose_clock,
    format_value,
    load_average,
    machine_info,
)
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

SECTIONS: tuple[str, ...] = ("pipeline", "fostering", "explain", "stats", "crop", "memory")
PRESETS: tuple[str, ...] = ("quick", "full", "smoke")


@dataclasses.dataclass
class BenchSettings:
    """Sizes and step counts of one benchmark run (see :meth:`from_preset`).

    ``image_size=None`` uses each architecture's own size (224 ResNet-50, 240 EfficientNetB1);
    ``clock``: which time the ratios use, ``"wall"``, ``"cpu"`` (this process's CPU time; robust
    when other processes share the machine) or ``"auto"`` (CPU time when the machine is busy);
    ``batch_size`` is used by the pipeline, training and fostering measurements; memory is
    measured at ``memory_batch`` (None: ``kidney-tf train``'s default, 32).
    """

    preset: str = "quick"
    sections: tuple[str, ...] = SECTIONS
    archs: tuple[str, ...] = ("resnet50", "efficientnetb1")
    image_size: int | None = None
    per_class: int = 16
    phantom_size: int = 256
    batch_size: int = 16
    pipeline_epochs: int = 2
    train_blocks: int = 3
    train_steps: int = 1
    fostering_arch: str = "resnet50"
    fostering_rounds: int = 3
    fostering_steps: int = 1
    cam_weight: float = 0.1
    explain_arch: str = "resnet50"
    explain_images: int = 16
    explain_batch: int = 16
    explain_repeats: int = 1
    stats_maps: int = 64
    stats_size: int = 224
    crop_size: int = 240
    memory_archs: tuple[str, ...] = ("resnet50",)
    memory_batch: int | None = None
    memory_steps: int = 2
    clock: str = "auto"
    seed: int = 0

    @classmethod
    def from_preset(cls, name: str = "quick", **overrides: Any) -> BenchSettings:
        """``"quick"``, ``"full"`` or ``"smoke"`` settings, with ``overrides`` applied.

        Usage: ``BenchSettings.from_preset("quick", sections=("pipeline", "crop"))``
        """
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {name!r}")
        values: dict[str, Any] = {}
        if name == "full":
            values = dict(
                per_class=64,
                batch_size=32,
                pipeline_epochs=3,
                train_blocks=5,
                train_steps=2,
                fostering_rounds=5,
                fostering_steps=2,
                explain_images=64,
                explain_repeats=2,
                stats_maps=128,
                memory_archs=("resnet50", "efficientnetb1"),
                memory_steps=3,
            )
        elif name == "smoke":
            values = dict(
                archs=("tiny",),
                per_class=3,
                phantom_size=96,
                batch_size=4,
                train_blocks=2,
                fostering_arch="tiny",
                fostering_rounds=2,
                explain_arch="tiny",
                explain_images=4,
                explain_batch=4,
                stats_maps=4,
                stats_size=64,
                crop_size=48,
                memory_archs=("tiny",),
                memory_batch=4,
                memory_steps=1,
            )
        values.update(overrides)
        settings = cls(preset=name, **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        from kidney_bench.models import arch_setup

        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise ValueError(f"unknown benchmark section(s) {unknown}; choose from {SECTIONS}")
        for arch in (*self.archs, self.fostering_arch, self.explain_arch, *self.memory_archs):
            arch_setup(arch)
        positive = {
            "per_class": self.per_class,
            "batch_size": self.batch_size,
            "train_blocks": self.train_blocks,
            "train_steps": self.train_steps,
            "fostering_rounds": self.fostering_rounds,
            "fostering_steps": self.fostering_steps,
            "explain_images": self.explain_images,
            "explain_batch": self.explain_batch,
            "stats_maps": self.stats_maps,
            "memory_steps": self.memory_steps,
        }
        bad = [f"{k}={v}" for k, v in positive.items() if int(v) < 1]
        if bad:
            raise ValueError(f"benchmark settings must be >= 1: {', '.join(bad)}")
        if self.pipeline_epochs < 2:
            raise ValueError("pipeline_epochs must be >= 2 (cold and cached epochs)")
        if self.image_size is not None and self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        if self.clock not in ("auto", "wall", "cpu"):
            raise ValueError(f"clock must be auto, wall or cpu, got {self.clock!r}")
        if not self.cam_weight > 0:
            raise ValueError(f"cam_weight must be > 0 to measure fostering, got {self.cam_weight}")

    def size_for(self, arch: str) -> int:
        from kidney_bench.models import arch_setup

        return int(self.image_size or arch_setup(arch).image_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Context:
    """Shared state of one run: phantom folders per kind and the model pool."""

    def __init__(self, settings: BenchSettings, workdir: Path, clock: str = "wall") -> None:
        from kidney_bench.models import ModelPool

        self.settings = settings
        self.clock = clock
        self.workdir = workdir
        self.pool = ModelPool(num_classes=4, seed=settings.seed)
        self._phantoms: dict[str, Path] = {}
        self.results: dict[str, SectionResult] = {}

    def phantoms(self, kind: str) -> Path:
        """Manifest of the phantoms of ``kind`` (generated on first use)."""
        from kidney_tf import generate_phantoms

        if kind not in self._phantoms:
            s = self.settings
            self._phantoms[kind] = generate_phantoms(
                kind,
                self.workdir / kind,
                per_class=s.per_class,
                image_size=s.phantom_size,
                seed=s.seed,
                progress=False,
            )
        return self._phantoms[kind]


# ------------------------------------------------------------------------------------ sections


def _section_pipeline(ctx: _Context, result: SectionResult) -> None:
    from kidney_bench.models import arch_setup
    from kidney_bench.pipeline import pipeline_figures, pipeline_throughput, training_throughput

    s = ctx.settings
    for arch in s.archs:
        setup = arch_setup(arch)
        size = s.size_for(arch)
        log.info("pipeline: %s phantoms, crop=%s, %d px", setup.kind, setup.crop, size)
        pipe = pipeline_throughput(
            ctx.phantoms(setup.kind),
            image_size=size,
            batch_size=s.batch_size,
            crop=setup.crop,
            epochs=s.pipeline_epochs,
            seed=s.seed,
        )
        parallel = pipeline_throughput(
            ctx.phantoms(setup.kind),
            image_size=size,
            batch_size=s.batch_size,
            crop=setup.crop,
            epochs=2,
            deterministic=False,
            seed=s.seed,
        )
        log.info(
            "training: %s, %d px, batch %d (model.fit, cached batch)", arch, size, s.batch_size
        )
        train = training_throughput(
            ctx.pool.trainable(arch, size, 0.0),
            batch_size=s.batch_size,
            image_size=size,
            blocks=s.train_blocks,
            steps=s.train_steps,
        )
        result.data[arch] = {
            "kind": setup.kind,
            "pipeline": pipe,
            "pipeline_nondeterministic": parallel,
            "training": train,
        }
        result.figures.extend(pipeline_figures(arch, pipe, train, ctx.clock, parallel))


def _section_fostering(ctx: _Context, result: SectionResult) -> None:
    from kidney_bench.fostering import fostering_figures, fostering_overhead

    s = ctx.settings
    arch, size = s.fostering_arch, s.size_for(s.fostering_arch)
    log.info(
        "fostering: %s, %d px, λ=%g vs 0, %d rounds", arch, size, s.cam_weight, s.fostering_rounds
    )
    data = fostering_overhead(
        ctx.pool.trainable(arch, size, 0.0),
        ctx.pool.trainable(arch, size, s.cam_weight),
        batch_size=s.batch_size,
        image_size=size,
        rounds=s.fostering_rounds,
        steps=s.fostering_steps,
    )
    result.data[arch] = data
    result.figures.extend(fostering_figures(arch, data, ctx.clock))


def _section_explain(ctx: _Context, result: SectionResult) -> None:
    from kidney_bench.explain import explain_figures, explain_throughput
    from kidney_bench.models import synthetic_batch

    s = ctx.settings
    arch, size = s.explain_arch, s.size_for(s.explain_arch)
    log.info("explain: Grad-CAM++ vs predict, %s, %d images", arch, s.explain_images)
    images, _ = synthetic_batch(s.explain_images, size, seed=s.seed)
    data = explain_throughput(
        ctx.pool.classifier(arch, size),
        images,
        batch_size=s.explain_batch,
        repeats=s.explain_repeats,
    )
    result.data[arch] = data
    result.figures.extend(explain_figures(arch, data, ctx.clock))


def _section_stats(ctx: _Context, result: SectionResult) -> None:
    from kidney_bench.stats import stats_figures, stats_throughput

    s = ctx.settings
    log.info("stats: %d maps of %d px", s.stats_maps, s.stats_size)
    data = stats_throughput(n_maps=s.stats_maps, size=s.stats_size, seed=s.seed)
    explain = ctx.results.get("explain")
    explain_rate = None
    if explain is not None and explain.data:
        timings = next(iter(explain.data.values())).get("timings", {})
        explain_rate = (timings.get("explainer") or {}).get("per_s")
    result.data["maps"] = data
    result.figures.extend(stats_figures(data, explain_rate, ctx.clock))


def _section_crop(ctx: _Context, result: SectionResult) -> None:
    from kidney_bench.crop import crop_figures, crop_throughput
    from kidney_tf import load_source, read_image

    s = ctx.settings
    for kind, mode in (("brain-mri", "brain"), ("kidney-ct", "body")):
        records = load_source(ctx.phantoms(kind), validate=False).records
        images = [read_image(r.path) for r in records]
        log.info("crop: %s, %d images -> %d px", mode, len(images), s.crop_size)
        data = crop_throughput(images, size=s.crop_size, mode=mode, batch_size=s.batch_size)
        result.data[mode] = data
        result.figures.extend(crop_figures(data, ctx.clock))


def _section_memory(ctx: _Context, result: SectionResult) -> None:
    from kidney_bench.memory import memory_figures, peak_training_memory
    from kidney_bench.models import arch_setup

    s = ctx.settings
    ctx.pool.clear()  # free the parent's models before the child allocates its own
    for arch in s.memory_archs:
        setup = arch_setup(arch)
        log.info("memory: training %s in a subprocess", arch)
        data = peak_training_memory(
            ctx.phantoms(setup.kind),
            arch=arch,
            image_size=s.size_for(arch),
            batch_size=s.memory_batch,
            steps=s.memory_steps,
            crop=setup.crop,
        )
        result.data[arch] = data
        result.figures.extend(memory_figures(data))


_RUNNERS: dict[str, Callable[[_Context, SectionResult], None]] = {
    "pipeline": _section_pipeline,
    "fostering": _section_fostering,
    "explain": _section_explain,
    "stats": _section_stats,
    "crop": _section_crop,
    "memory": _section_memory,
}


# --------------------------------------------------------------------------------------- suite


def run_suite(
    settings: BenchSettings | None = None,
    *,
    out: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run the selected sections and return the report dict (also written to ``out`` atomically).

    ``workdir``: where phantoms are generated (default: a temporary folder, removed afterwards).
    A section that raises is reported with its error; the others still run.

    Usage: ``report = run_suite(BenchSettings.from_preset("smoke"), out="bench.json")``
    """
    settings = settings or BenchSettings.from_preset("quick")
    settings.validate()
    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = load_average()
    clock, clock_reason = choose_clock(settings.clock, load_start)
    machine = machine_info()
    log.info("clock: %s (%s)", clock, clock_reason)
    with Stopwatch() as total, _workdir(workdir) as root:
        ctx = _Context(settings, root, clock)
        for name in SECTIONS:
            if name not in settings.sections:
                continue
            result = SectionResult(name)
            with Stopwatch() as watch:
                try:
                    _RUNNERS[name](ctx, result)
                except Exception as exc:  # one failing section must not hide the others
                    result.error = f"{type(exc).__name__}: {exc}"
                    log.warning("benchmark section %s failed: %s", name, result.error)
                    log.debug("%s", traceback.format_exc())
            result.seconds = watch.seconds
            ctx.results[name] = result
            log.info("%s: %.1f s", name, result.seconds)
        ctx.pool.clear()
    report = _report(settings, ctx.results, machine, started, total.seconds, load_start)
    report["clock"] = {"used": clock, "reason": clock_reason}
    if out is not None:
        from kidney_tf.utils.io import write_json_atomic

        write_json_atomic(out, report)
    return report


@contextlib.contextmanager
def _workdir(path: str | os.PathLike | None) -> Iterator[Path]:
    """The given folder, or a temporary one removed on exit."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="kidney-tf-bench-") as tmp:
        yield Path(tmp)


def _report(
    settings: BenchSettings,
    results: dict[str, SectionResult],
    machine: dict[str, Any],
    started: _dt.datetime,
    seconds: float,
    load_start: list[float] | None,
) -> dict[str, Any]:
    figures = [f for r in results.values() for f in r.figures]
    counts = {status: 0 for status in ("pass", "miss", "info", "n/a")}
    for figure in figures:
        counts[figure.status] += 1
    return {
        "schema": SCHEMA,
        "preset": settings.preset,
        "created_utc": started.isoformat(timespec="seconds"),
        "elapsed_s": round(seconds, 2),
        "machine": {
            **machine,
            "load_average_start": load_start,
            "load_average_end": load_average(),
        },
        "settings": settings.to_dict(),
        "sections": {name: r.to_dict() for name, r in results.items()},
        "figures": [f.to_dict() for f in figures],
        "summary": {
            **counts,
            "errors": {name: r.error for name, r in results.items() if r.error},
        },
    }


# -------------------------------------------------------------------------------------- output


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return out


def format_report(report: dict[str, Any]) -> str:
    """Plain-text table of every figure (value, goal, PASS/MISS/info) plus notes and errors.

    Usage: ``print(format_report(run_suite(settings)))``
    """
    machine = report.get("machine", {})
    versions = machine.get("versions", {})
    load = machine.get("load_average_start")
    lines = [
        f"kidney-tf benchmark ({report.get('preset')}), {report.get('elapsed_s')} s: "
        f"{machine.get('platform')}, {machine.get('cpu_count_usable')} CPUs "
        f"({machine.get('cpu_model')}), TF {versions.get('tensorflow')}, "
        f"Keras {versions.get('keras')}",
    ]
    if load:
        lines.append(
            f"load average at start {load[0]:.2f} (end {machine.get('load_average_end', [0])[0]:.2f}) "
            f"on {machine.get('cpu_count_usable')} CPUs"
            + ("; the machine was busy, timings are pessimistic" if load[0] > 1.0 else "")
        )
    clock = report.get("clock") or {}
    if clock:
        lines.append(f"ratios by {clock.get('used')} time: {clock.get('reason')}")
    lines.append("")
    rows = [
        (
            f["label"],
            format_value(f["value"], f["unit"]),
            f["goal"] or "-",
            f["status"].upper() if f["status"] in ("pass", "miss") else f["status"],
        )
        for f in report.get("figures", [])
    ]
    lines += _table(rows, ("figure", "value", "goal", "status"))
    notes = [(f["label"], f["note"]) for f in report.get("figures", []) if f.get("note")]
    if notes:
        lines += ["", "notes:"]
        lines += [f"  {label}: {note}" for label, note in notes]
    used = clock.get("used", "wall")
    for arch, data in (report.get("sections", {}).get("explain", {}).get("data") or {}).items():
        diagnosis = data.get("diagnosis")
        if isinstance(diagnosis, dict):
            diagnosis = diagnosis.get(used)
        if diagnosis:
            lines += ["", f"explanation cost, {arch}: {diagnosis}"]
    summary = report.get("summary", {})
    lines += [
        "",
        f"{summary.get('pass', 0)} pass, {summary.get('miss', 0)} miss, "
        f"{summary.get('info', 0)} informational",
    ]
    for name, error in (summary.get("errors") or {}).items():
        lines.append(f"section {name} failed: {error}")
    return "\n".join(lines)


def figures_from_report(report: dict[str, Any]) -> list[Figure]:
    """The report's figures as :class:`Figure` objects (for programmatic checks)."""
    from kidney_bench.core import Goal

    figures = []
    for f in report.get("figures", []):
        goal = Goal(f["goal_op"], f["goal_threshold"]) if f.get("goal_op") else None
        figures.append(Figure(f["key"], f["label"], f["value"], f["unit"], goal, f.get("note", "")))
    return figures


__all__ = [
    "PRESETS",
    "SECTIONS",
    "BenchSettings",
    "figures_from_report",
    "format_report",
    "run_suite",
]
