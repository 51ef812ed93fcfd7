"""Cost of CAM fostering: ``fit`` with λ > 0 vs λ = 0, per fostering CAM method.

All variants are ``CamFosteringModel`` views over the SAME layers (one set of weights), trained
on the same cached in-memory batch. After one untimed warm-up ``fit`` each (tracing), they run in
interleaved blocks, round robin with the order rotating every round (plain A B, A B plain, ...),
so drift in the machine's load hits every variant alike. The overhead of a variant is the median
over rounds of ``time(variant) / time(plain) - 1``, by wall-clock and by CPU time (the latter is
what to trust on a shared machine). Goal for the closed-form maps (exact, gradcam++): ≤ 10 %.

This module is the one implementation: the ``fostering`` section of ``kidney-tf benchmark`` and
``benchmarks/bench_fostering.py`` both call :func:`fostering_overhead`.

Usage::

    plain = pool.trainable("resnet50", 224, cam_weight=0.0)
    fostered = {m: pool.trainable("resnet50", 224, 0.1, cam_method=m) for m in ("exact", "gradcam")}
    data = fostering_overhead(plain, fostered, batch_size=16, image_size=224, rounds=3, steps=1)
    data["overhead_percent"]["exact"]["cpu"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kidney_bench.core import (
    Figure,
    Goal,
    Stopwatch,
    median,
    pick,
    rate,
    ratio,
)
from kidney_tf.recipes import CLOSED_FORM_METHODS

FOSTERING_GOAL = Goal("<=", 10.0)
_SECONDS = {"wall": "seconds", "cpu": "cpu_seconds"}


def fostering_overhead(
    plain,
    fostered,
    *,
    batch_size: int,
    image_size: int,
    rounds: int = 3,
    steps: int = 1,
    warmup_steps: int = 1,
) -> dict[str, Any]:
    """Interleaved timing of ``fit`` blocks of ``plain`` (λ = 0) and each fostered model.

    ``fostered``: one model (keyed by its ``cam_method``) or ``{name: model}``. Returns per-round
    times and, per variant, median step time, images/s, time ratio to plain and overhead in %,
    each by wall-clock and CPU time (``{"wall": ..., "cpu": ...}``).
    """
    from kidney_bench.models import cached_batches

    if not isinstance(fostered, Mapping):
        fostered = {fostered.cam_method: fostered}
    if not fostered or "plain" in fostered:
        raise ValueError("fostered: one model or a non-empty {name: model}, without 'plain'")
    models = {"plain": plain, **fostered}
    num_classes = int(plain.outputs[0].shape[-1])
    data = cached_batches(batch_size, image_size, num_classes)

    def timed_fit(name: str, steps_per_epoch: int) -> dict[str, float]:
        with Stopwatch() as watch:
            history = models[name].fit(
                data, steps_per_epoch=steps_per_epoch, epochs=1, verbose=0, shuffle=False
            )
        loss = history.history["loss"][-1]
        if not math.isfinite(loss):
            raise FloatingPointError(f"{name}: non-finite training loss {loss}")
        return watch.to_dict()

    warmup = {name: timed_fit(name, max(1, warmup_steps)) for name in models}
    names = list(models)
    per_round = []
    for index in range(max(1, rounds)):
        shift = index % len(names)
        times = {name: timed_fit(name, steps) for name in names[shift:] + names[:shift]}
        ratios = {
            name: {c: ratio(times[name][key], times["plain"][key]) for c, key in _SECONDS.items()}
            for name in fostered
        }
        per_round.append({"times": times, "ratio": ratios})

    step = {
        name: {
            c: median([r["times"][name][key] / steps for r in per_round])
            for c, key in _SECONDS.items()
        }
        for name in names
    }
    median_ratio = {
        name: {c: median([r["ratio"][name][c] for r in per_round]) for c in _SECONDS}
        for name in fostered
    }
    images_per_sec = {
        name: {c: None if v is None else rate(batch_size, v) for c, v in step[name].items()}
        for name in names
    }
    overhead = {
        name: {c: None if v is None else (v - 1.0) * 100.0 for c, v in median_ratio[name].items()}
        for name in fostered
    }
    return {
        "cam_weight": {name: float(model.cam_weight) for name, model in fostered.items()},
        "cam_method": {name: model.cam_method for name, model in fostered.items()},
        "cam_layer": plain.cam_layer,
        "batch_size": batch_size,
        "image_size": image_size,
        "steps_per_block": steps,
        "warmup": warmup,
        "rounds": per_round,
        "step_s": step,
        "images_per_sec": images_per_sec,
        "median_ratio": median_ratio,
        "overhead_percent": overhead,
    }


def fostering_figures(arch: str, data: dict[str, Any], clock: str = "wall") -> list[Figure]:
    """One figure per fostered variant; the goal applies to the closed-form maps."""
    other = "cpu" if clock == "wall" else "wall"
    figures = []
    for name, overhead in data.get("overhead_percent", {}).items():
        method = data["cam_method"][name]
        figures.append(
            Figure(
                f"fostering.{arch}.overhead"
                if method == "exact"
                else f"fostering.{arch}.{name}.overhead",
                f"fostering fit overhead (λ={data['cam_weight'][name]}, {method} CAM), {arch}",
                pick(overhead, clock),
                "%",
                FOSTERING_GOAL if method in CLOSED_FORM_METHODS else None,
                note=f"median of {len(data.get('rounds', []))} interleaved rounds, {clock} time; "
                f"step {_fmt(pick(data['step_s'][name], clock))} s vs "
                f"{_fmt(pick(data['step_s']['plain'], clock))} s at batch {data.get('batch_size')}, "
                f"{data.get('image_size')} px ({other} time: {_fmt(pick(overhead, other))} %)",
            )
        )
    return figures


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3g}"


__all__ = ["FOSTERING_GOAL", "fostering_figures", "fostering_overhead"]
