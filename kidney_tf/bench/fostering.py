"""Cost of CAM fostering: ``fit`` with λ > 0 (exact CAM entropy penalty) vs λ = 0.

Both variants are ``CamFosteringModel`` views over the SAME layers (one set of weights), trained
on the same cached in-memory batch. After one untimed warm-up ``fit`` each (tracing), they run in
interleaved blocks (A B, B A, A B, ...) so that drift in the machine's load hits both alike; the
overhead is the median over rounds of ``time(λ > 0) / time(λ = 0) - 1``, by wall-clock and by CPU
time (the latter is what to trust on a shared machine). Goal: at most 10 %.

Usage::

    plain = pool.trainable("resnet50", 224, cam_weight=0.0)
    fostered = pool.trainable("resnet50", 224, cam_weight=0.1)
    data = fostering_overhead(plain, fostered, batch_size=16, image_size=224, rounds=3, steps=1)
"""

from __future__ import annotations

from typing import Any

from kidney_tf.bench.core import Figure, Goal, Stopwatch, median, per_clock, pick, ratio

FOSTERING_GOAL = Goal("<=", 10.0)


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
    """Interleaved timing of ``fit`` blocks; per-round times and median ratios (both clocks)."""
    from kidney_tf.bench.models import cached_batches

    num_classes = int(plain.outputs[0].shape[-1])
    data = cached_batches(batch_size, image_size, num_classes)
    fit = {"epochs": 1, "verbose": 0, "shuffle": False}
    warmup = {}
    for name, model in (("plain", plain), ("fostered", fostered)):
        with Stopwatch() as watch:
            model.fit(data, steps_per_epoch=max(1, warmup_steps), **fit)
        warmup[name] = watch.to_dict()
    per_round = []
    for index in range(max(1, rounds)):
        order = (("plain", plain), ("fostered", fostered))
        if index % 2:
            order = order[::-1]
        times: dict[str, Stopwatch] = {}
        for name, model in order:
            with Stopwatch() as watch:
                model.fit(data, steps_per_epoch=steps, **fit)
            times[name] = watch
        per_round.append(
            {
                "plain": times["plain"].to_dict(),
                "fostered": times["fostered"].to_dict(),
                "ratio": {
                    "wall": ratio(times["fostered"].seconds, times["plain"].seconds),
                    "cpu": ratio(times["fostered"].cpu_seconds, times["plain"].cpu_seconds),
                },
            }
        )
    key = {"wall": "seconds", "cpu": "cpu_seconds"}
    median_ratio = per_clock(lambda c: median([r["ratio"][c] for r in per_round]))
    return {
        "cam_weight": float(fostered.cam_weight),
        "cam_method": fostered.cam_method,
        "cam_layer": fostered.cam_layer,
        "batch_size": batch_size,
        "image_size": image_size,
        "steps_per_block": steps,
        "warmup": warmup,
        "rounds": per_round,
        "median_ratio": median_ratio,
        "overhead_percent": per_clock(
            lambda c: None if median_ratio[c] is None else (median_ratio[c] - 1.0) * 100.0
        ),
        "plain_step_s": per_clock(
            lambda c: median([r["plain"][key[c]] / steps for r in per_round])
        ),
        "fostered_step_s": per_clock(
            lambda c: median([r["fostered"][key[c]] / steps for r in per_round])
        ),
    }


def fostering_figures(arch: str, data: dict[str, Any], clock: str = "wall") -> list[Figure]:
    other = "cpu" if clock == "wall" else "wall"
    overhead = data.get("overhead_percent") or {}
    return [
        Figure(
            f"fostering.{arch}.overhead",
            f"fostering fit overhead (λ={data.get('cam_weight')}, {data.get('cam_method')} CAM), "
            f"{arch}",
            pick(overhead, clock),
            "%",
            FOSTERING_GOAL,
            note=f"median of {len(data.get('rounds', []))} interleaved rounds, {clock} time; "
            f"step {_fmt(pick(data.get('fostered_step_s'), clock))} s vs "
            f"{_fmt(pick(data.get('plain_step_s'), clock))} s at batch {data.get('batch_size')}, "
            f"{data.get('image_size')} px ({other} time: {_fmt(pick(overhead, other))} %)",
        )
    ]


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3g}"


__all__ = ["FOSTERING_GOAL", "fostering_figures", "fostering_overhead"]
