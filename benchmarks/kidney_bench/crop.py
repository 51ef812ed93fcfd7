"""TF-graph crop (``kidney_tf.data.crop_tf``) vs the OpenCV crop (``kidney_tf.data.crop``).

Four ways to crop the same decoded images to the brain (or body) and resize them:

- OpenCV, one image after another (``crop_brain`` in a Python loop);
- OpenCV batched: a thread pool over the images (OpenCV releases the GIL);
- TF per image: ``tf_crop_brain`` in a ``tf.function`` (traced once), called per image;
- TF batched: ``tf.data`` ``map(tf_crop_brain, num_parallel_calls=AUTOTUNE)`` + ``batch``, as the
  training pipeline runs it.

The figures are informational (the TF crop exists so the crop runs inside ``tf.data`` and a
SavedModel; it is not meant to beat OpenCV).

Usage: ``data = crop_throughput(images, size=240, mode="brain")``
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kidney_bench.core import Figure, cpu_count, measure, pick, ratio
from kidney_tf.recipes import CROP_MODES, check_choice


def _crop_fns(mode: str, size: int):
    from kidney_tf.data.crop import CROPS
    from kidney_tf.data.crop_tf import TF_CROPS

    check_choice(mode, CROP_MODES, "mode")
    return (lambda im: CROPS[mode](im, size=size).image), (lambda im: TF_CROPS[mode](im, size))


def crop_throughput(
    images: Sequence[np.ndarray],
    *,
    size: int,
    mode: str = "brain",
    batch_size: int = 16,
    workers: int | None = None,
) -> dict[str, Any]:
    """Timing of the OpenCV and TF crops, per image and batched, on decoded uint8 images:
    ``{"timings": {variant: {"seconds", "cpu_seconds", "per_s": {"wall", "cpu"}}}, ...}``.

    Every variant gets one untimed warm-up pass (tracing, thread start-up, input cache).
    """
    import tensorflow as tf

    if not images:
        raise ValueError("crop_throughput needs at least one image")
    cv_crop, tf_crop = _crop_fns(mode, size)
    workers = workers or cpu_count()
    n = len(images)
    results: dict[str, Any] = {"images": n, "size": size, "mode": mode, "workers": workers}

    timings: dict[str, Any] = {}
    timings["opencv_per_image"] = measure(lambda: [cv_crop(im) for im in images], n)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        timings["opencv_threads"] = measure(lambda: list(pool.map(cv_crop, images)), n)

    one = tf.function(tf_crop, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    tensors = [tf.constant(np.asarray(image, np.uint8)) for image in images]
    timings["tf_per_image"] = measure(lambda: [one(im).numpy() for im in tensors], n)

    ragged = tf.data.Dataset.from_generator(
        lambda: iter(images), output_signature=tf.TensorSpec([None, None, 3], tf.uint8)
    )
    dataset = (
        ragged.cache()
        .map(tf_crop, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    # The warm-up epoch traces the map function and fills the input cache.
    timings["tf_data_batched"] = measure(lambda: [None for _ in dataset], n)
    results["timings"] = timings
    return results


def crop_figures(data: dict[str, Any], clock: str = "wall") -> list[Figure]:
    """Informational figures: TF ÷ OpenCV speed, per image and batched."""
    mode = data.get("mode", "brain")
    timings = data["timings"]

    def per_s(variant: str) -> float | None:
        return pick(timings[variant]["per_s"], clock)

    return [
        Figure(
            f"crop.{mode}.tf_vs_opencv_per_image",
            f"TF crop / OpenCV crop speed, per image ({mode})",
            ratio(per_s("tf_per_image"), per_s("opencv_per_image")),
            "x",
            note=f"TF {_fmt(per_s('tf_per_image'))} vs OpenCV "
            f"{_fmt(per_s('opencv_per_image'))} images per {clock} second",
        ),
        Figure(
            f"crop.{mode}.tf_vs_opencv_batched",
            f"TF crop (tf.data AUTOTUNE) / OpenCV (threads) speed ({mode})",
            ratio(per_s("tf_data_batched"), per_s("opencv_threads")),
            "x",
            note=f"TF {_fmt(per_s('tf_data_batched'))} vs OpenCV "
            f"{_fmt(per_s('opencv_threads'))} images per {clock} second, "
            f"{data.get('workers')} threads",
        ),
    ]


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3g}"


__all__ = ["crop_figures", "crop_throughput"]
