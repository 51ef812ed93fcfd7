"""Throughput cost of CAM fostering: images/s of plain training vs fostering training.

One classifier, one fixed in-memory batch, four training modes sharing the same layers:

- ``plain``: λ = 0 (the standard Keras train step),
- ``exact``: λ > 0 with the exact CAM (``relu(features @ W_c)``, from the same forward pass),
- ``gradcam++``: λ > 0 with the closed-form Grad-CAM++ map (``features @ relu(W_c)``, the demo's),
- ``gradcam``: λ > 0 with Grad-CAM (a nested gradient tape).

After a warm-up (graph tracing) the modes run interleaved in short blocks of ``--steps`` training
steps (round robin, the order rotating every round), so slow drifts of a shared machine hit every
mode alike. Each round gives a paired ratio ``mode images/s / plain images/s``; the reported
``throughput_ratio`` is the median of those ratios over the rounds (robust to load changes between
rounds), ``images_per_sec`` the median per mode. The overhead of a mode is
``1 / throughput_ratio - 1``: extra time per image (the goal for ``exact`` and ``gradcam++`` is <= 10 %). The same
figures per CPU second of the process (``cpu_*``) are steadier on a CPU shared with other jobs.

Prints a table and one JSON line; ``--out FILE`` also writes the JSON.

Usage::

    python benchmarks/bench_fostering.py                          # ResNet-50, 64 px, CPU-sized
    python benchmarks/bench_fostering.py --image-size 224 --batch-size 32 --rounds 10 \\
        --mixed-precision --out bench.json                        # a GPU, paper-sized
    python benchmarks/bench_fostering.py --arch tiny --rounds 2 --steps 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

MODES = ("plain", "exact", "gradcam++", "gradcam")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Images/s of plain vs CAM-fostering training (interleaved blocks, medians).",
        epilog=__doc__.split("Usage::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--arch", default="resnet50", choices=("resnet50", "efficientnetb1", "tiny")
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    parser.add_argument("--rounds", type=int, default=8, help="timed blocks per mode")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per mode first")
    parser.add_argument("--cam-weight", type=float, default=0.1, help="λ of the fostering modes")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    if "plain" not in args.modes:
        parser.error("--modes must include plain (the reference)")
    if min(args.steps, args.rounds, args.batch_size) < 1 or args.warmup < 0:
        parser.error("--steps, --rounds and --batch-size must be >= 1, --warmup >= 0")
    return args


def _tiny(num_classes: int, image_size: int):
    import keras

    from kidney_tf.models.builders import Classifier

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return Classifier(inputs, outputs, name="tiny")


def build_models(args: argparse.Namespace) -> dict[str, Any]:
    """One classifier; a compiled CamFosteringModel per mode, all sharing its layers."""
    import keras

    from kidney_tf.models.builders import build_classifier
    from kidney_tf.training.fostering import CamFosteringModel
    from kidney_tf.training.losses import WeightedCrossEntropy

    keras.utils.set_random_seed(args.seed)
    if args.arch == "tiny":
        base = _tiny(args.classes, args.image_size)
    else:
        base = build_classifier(
            args.arch, num_classes=args.classes, image_size=args.image_size, weights=None
        )
    models = {}
    for mode in args.modes:
        model = CamFosteringModel.from_classifier(
            base,
            cam_weight=0.0 if mode == "plain" else args.cam_weight,
            cam_method="exact" if mode == "plain" else mode,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss=WeightedCrossEntropy([1.0] * args.classes),
            metrics=["accuracy"],
            jit_compile=args.jit_compile,
        )
        models[mode] = model
    return models


def run(args: argparse.Namespace) -> dict[str, Any]:
    import keras
    import numpy as np
    import tensorflow as tf

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    models = build_models(args)
    rng = np.random.default_rng(args.seed)
    size, batch = args.image_size, args.batch_size
    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    y = tf.one_hot(np.arange(batch) % args.classes, args.classes)

    def block(mode: str, steps: int) -> tuple[float, float]:
        """(images per wall-clock second, images per CPU second of this process)."""
        model = models[mode]
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            logs = model.train_on_batch(x, y, return_dict=True)  # returns numpy: synchronised
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if not np.isfinite(logs["loss"]):
            raise FloatingPointError(f"{mode}: non-finite loss {logs['loss']}")
        return steps * batch / wall, steps * batch / max(cpu, 1e-9)

    warmup = {}
    for mode in args.modes:
        start = time.perf_counter()
        block(mode, max(1, args.warmup))
        warmup[mode] = time.perf_counter() - start
    rates: dict[str, list[float]] = {mode: [] for mode in args.modes}
    cpu_rates: dict[str, list[float]] = {mode: [] for mode in args.modes}
    for round_index in range(args.rounds):
        shift = round_index % len(args.modes)
        for mode in args.modes[shift:] + args.modes[:shift]:
            wall_rate, cpu_rate = block(mode, args.steps)
            rates[mode].append(wall_rate)
            cpu_rates[mode].append(cpu_rate)

    def paired(values: dict[str, list[float]]) -> dict[str, float]:
        return {
            mode: statistics.median(r / p for r, p in zip(series, values["plain"]))
            for mode, series in values.items()
        }

    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    ratios = paired(rates)
    cpu_ratios = paired(cpu_rates)
    return {
        "arch": args.arch,
        "image_size": size,
        "batch_size": batch,
        "cam_weight": args.cam_weight,
        "steps_per_block": args.steps,
        "rounds": args.rounds,
        "mixed_precision": args.mixed_precision,
        "jit_compile": args.jit_compile,
        "images_per_sec": medians,
        "images_per_sec_blocks": rates,
        "throughput_ratio": ratios,
        "ratio_of_medians": {m: medians[m] / medians["plain"] for m in medians},
        "overhead": {m: 1.0 / ratios[m] - 1.0 for m in ratios if m != "plain"},
        "cpu_images_per_sec": {m: statistics.median(v) for m, v in cpu_rates.items()},
        "cpu_throughput_ratio": cpu_ratios,
        "cpu_overhead": {m: 1.0 / cpu_ratios[m] - 1.0 for m in cpu_ratios if m != "plain"},
        "warmup_seconds": warmup,
        "device": _device(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "python": platform.python_version(),
    }


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"{len(gpus)} GPU ({tf.config.experimental.get_device_details(gpus[0]).get('device_name', 'GPU')})"
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['arch']} {result['image_size']} px, batch {result['batch_size']}, "
        f"λ = {result['cam_weight']}, {result['rounds']} x {result['steps_per_block']} steps, "
        f"{result['device']}",
        f"{'mode':<8} {'images/s':>9} {'ratio':>6} {'overhead':>9}   "
        f"{'img/CPU-s':>9} {'ratio':>6} {'overhead':>9}",
    ]

    def pct(value: float | None) -> str:
        return f"{value:>9.1%}" if value is not None else f"{'-':>9}"

    for mode, rate in result["images_per_sec"].items():
        lines.append(
            f"{mode:<8} {rate:>9.2f} {result['throughput_ratio'][mode]:>6.3f} "
            f"{pct(result['overhead'].get(mode))}   {result['cpu_images_per_sec'][mode]:>9.2f} "
            f"{result['cpu_throughput_ratio'][mode]:>6.3f} {pct(result['cpu_overhead'].get(mode))}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run(args)
    print(report(result))
    print(json.dumps(result, sort_keys=True))
    if args.out:
        from kidney_tf.utils.io import write_json_atomic

        write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
