"""Input pipeline vs training throughput: can ``build_datasets`` keep the model busy?

The pipeline is measured alone (decode + crop + resize + cache + shuffle + augment + batch, every
phantom in the train split) for its first epoch (cold: files decoded and cropped, cache filled)
and its second (cached: only shuffle + augment). Training is measured with ``model.fit`` on ONE
cached in-memory batch, so only the model's compute is timed, on the model ``kidney-tf train``
builds (``CamFosteringModel`` with λ = 0, Adam, class-weighted cross-entropy, ``weights=None``).
The ratio pipeline images/s ÷ training images/s should be at least 5. The crop runs as the
training pipeline runs it (OpenCV box search in a ``tf.numpy_function``; ``crop_backend="tf"``
for the pure-TF graph the SavedModel uses). Every rate is given per
wall-clock second and per CPU second of this process (see ``kidney_bench.core.Stopwatch``).

Usage::

    data = pipeline_throughput("phantoms/manifest.csv", image_size=224, batch_size=16, crop="body")
    train = training_throughput(model, batch_size=16, image_size=224, blocks=3, steps=2)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from kidney_bench.core import Figure, Goal, Stopwatch, median, per_clock, pick, ratio

PIPELINE_GOAL = Goal(">=", 5.0)


def _all_train(source: str | os.PathLike):
    """Read (and decode-check) the source; every record goes to the train split."""
    from kidney_tf import load_source
    from kidney_tf.data.reading import ScanResult

    scan = load_source(source)
    records = [dataclasses.replace(r, split="train") for r in scan.records]
    return ScanResult(records, scan.class_names, scan.bad_files, scan.warnings)


def _epoch(dataset) -> dict[str, Any]:
    count = 0
    with Stopwatch() as watch:
        for images, _labels in dataset:
            count += int(images.shape[0])
    return {"images": count, **watch.to_dict(), "images_per_s": watch.rates(count)}


def pipeline_throughput(
    source: str | os.PathLike,
    *,
    image_size: int,
    batch_size: int,
    crop: str | None,
    crop_backend: str = "opencv",
    augment: bool = True,
    epochs: int = 2,
    deterministic: bool | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Images/s of the training pipeline per epoch (first = cold, then cached in memory).

    Rates are ``{"wall": ..., "cpu": ...}`` (per wall-clock and per CPU second). Returns
    ``{"images", "scan_s", "build_s", "epochs": [...], "cold_images_per_s",
    "cached_images_per_s", ...settings}``.
    """
    from kidney_tf import build_datasets

    with Stopwatch() as scan_watch:
        scan = _all_train(source)
    with Stopwatch() as build_watch:
        bundle = build_datasets(
            scan,
            image_size=image_size,
            batch_size=batch_size,
            split="folders",
            val_fraction=0.0,
            test_fraction=0.0,
            seed=seed,
            crop=crop,
            crop_backend=crop_backend,
            augment=augment,
            cache=True,
            deterministic=deterministic,
        )
    per_epoch = [_epoch(bundle.train) for _ in range(max(2, epochs))]
    cached = per_epoch[1:]
    return {
        "images": len(scan.records),
        "image_size": image_size,
        "batch_size": batch_size,
        "crop": crop,
        "crop_backend": crop_backend,
        "augment": bool(augment),
        "deterministic": deterministic,
        "scan_s": round(scan_watch.seconds, 4),
        "build_s": round(build_watch.seconds, 4),
        "epochs": per_epoch,
        "cold_images_per_s": per_epoch[0]["images_per_s"],
        "cached_images_per_s": per_clock(
            lambda clock: median([e["images_per_s"][clock] for e in cached])
        ),
    }


def training_throughput(
    model,
    *,
    batch_size: int,
    image_size: int,
    blocks: int = 3,
    steps: int = 2,
    warmup_steps: int = 1,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Training images/s of a compiled ``model`` with ``fit`` on one cached in-memory batch.

    One warm-up ``fit`` (tracing, first step) is timed separately; then ``blocks`` ``fit`` calls
    of ``steps`` steps each; the median block gives ``images_per_s`` (per clock).
    """
    from kidney_bench.models import cached_batches

    num_classes = num_classes or int(model.outputs[0].shape[-1])
    data = cached_batches(batch_size, image_size, num_classes)
    fit = {"epochs": 1, "verbose": 0, "shuffle": False}
    with Stopwatch() as warm:
        model.fit(data, steps_per_epoch=max(1, warmup_steps), **fit)
    per_block = []
    for _ in range(max(1, blocks)):
        with Stopwatch() as watch:
            model.fit(data, steps_per_epoch=steps, **fit)
        per_block.append({**watch.to_dict(), "images_per_s": watch.rates(steps * batch_size)})
    return {
        "batch_size": batch_size,
        "image_size": image_size,
        "steps_per_block": steps,
        "warmup": warm.to_dict(),
        "blocks": per_block,
        "images_per_s": per_clock(
            lambda clock: median([b["images_per_s"][clock] for b in per_block])
        ),
    }


def pipeline_figures(
    arch: str,
    pipe: Mapping[str, Any],
    train: Mapping[str, Any],
    clock: str = "wall",
    parallel: Mapping[str, Any] | None = None,
) -> list[Figure]:
    """The pipeline ÷ training ratios (cold and cached) for one architecture, with the 5x goal.

    ``parallel``: the same pipeline with ``deterministic=False`` (parallel augmentation), quoted
    in the notes.
    """
    figures = []
    other = "cpu" if clock == "wall" else "wall"
    for epoch in ("cold", "cached"):
        rates = pipe.get(f"{epoch}_images_per_s") or {}
        trains = train.get("images_per_s") or {}
        value = ratio(pick(rates, clock), pick(trains, clock))
        figures.append(
            Figure(
                f"pipeline.{arch}.{epoch}_ratio",
                f"pipeline ({epoch}) / training, {arch}",
                value,
                "x",
                PIPELINE_GOAL,
                note=(
                    f"{_fmt(pick(rates, clock))} vs {_fmt(pick(trains, clock))} images per "
                    f"{clock} second at {train.get('image_size')} px, batch "
                    f"{train.get('batch_size')} (by {other} time: "
                    f"{_fmt(ratio(pick(rates, other), pick(trains, other)))}x)"
                    + _parallel_note(parallel, epoch, trains, clock)
                ),
            )
        )
    return figures


def _parallel_note(
    parallel: Mapping[str, Any] | None, epoch: str, trains: Mapping[str, Any], clock: str
) -> str:
    if not parallel:
        return ""
    value = ratio(pick(parallel.get(f"{epoch}_images_per_s"), clock), pick(trains, clock))
    return f"; with deterministic=False (parallel augmentation): {_fmt(value)}x"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3g}"


__all__ = [
    "PIPELINE_GOAL",
    "pipeline_figures",
    "pipeline_throughput",
    "training_throughput",
]
