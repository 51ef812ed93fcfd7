"""Scale-out benchmark: the ``kidney-tf train`` loop vs a plain ``keras.Model.fit``, and 2 local
workers vs 1, side by side in one run, on generated phantoms (public API only).

1. **Training loop overhead** (goal: the CLI loop keeps >= 0.95 of plain ``fit``'s throughput).
   Both train the same ResNet-50 on the same ``tf.data`` stream with validation each epoch; the
   CLI loop adds CAM-fostering ``train_step`` (λ = 0), callbacks, backups, best-model checkpoint,
   history CSV and the progress bar. Per-epoch cost: plain ``fit`` timed per epoch (epochs 2..E);
   the CLI loop as ``(T(E) - T(1)) / (E - 1)`` over two runs, which cancels the fixed costs
   (start-up, tracing, test evaluation, final save) that are not part of the loop.
2. **2 local workers vs 1** (``--strategy multiworker``, two processes on 127.0.0.1, same global
   batch): training images per second of the last epoch, as measured. Two processes on one
   host share its cores and add an all-reduce of every gradient per step, so on a 2-core
   machine the ratio is < 1; it shows the distributed path working, not a speed-up.

Usage::

    python benchmarks/bench_scaleout.py --out /tmp/h13/bench --image-size 64 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TIMEOUT = 3600  # seconds per training process


def _config(args, data: Path, out: Path, epochs: int, **extra):
    from kidney_tf.training.trainer import TrainConfig

    return TrainConfig(
        out=str(out),
        data=str(data),
        arch="resnet50",
        image_size=args.image_size,
        epochs=epochs,
        batch_size=args.batch_size,
        weights=None,
        augment=False,
        patience=0,
        lr_schedule="constant",
        verbose=0,
        seed=1,
        **extra,
    )


def _cli_run(args, data: Path, out: Path, epochs: int) -> float:
    """Wall seconds of one ``kidney_tf.train`` run in a fresh process (as the CLI runs it)."""
    config = _config(args, data, out, epochs)
    code = (
        "import json, sys, time; t = time.perf_counter()\n"
        "from kidney_tf.training.trainer import TrainConfig, train\n"
        "train(TrainConfig.from_dict(json.loads(sys.argv[1])))\n"
        "print('SECONDS', time.perf_counter() - t)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config.to_dict())],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if done.returncode:
        raise RuntimeError(f"training run failed: {done.stderr[-2000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("SECONDS"))
    return float(line.split()[1])


PLAIN = r"""
import json, sys, time
import keras
from kidney_tf import build_classifier
from kidney_tf.data.pipeline import build_datasets
from kidney_tf.training.losses import WeightedCrossEntropy

cfg = json.loads(sys.argv[1])
keras.utils.set_random_seed(cfg["seed"])
bundle = build_datasets(cfg["data"], image_size=cfg["image_size"], batch_size=cfg["batch_size"],
                        seed=cfg["seed"], augment=False)
model = build_classifier("resnet50", num_classes=len(bundle.class_names),
                         image_size=cfg["image_size"], weights=None, bn_momentum=0.9)
weights = [float(bundle.class_weights[i]) for i in range(len(bundle.class_names))]
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=WeightedCrossEntropy(weights),
              metrics=["accuracy"])
steps = int(bundle.train.cardinality())
stream = bundle.train.repeat().rebatch(cfg["batch_size"])

class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        times.append(time.perf_counter() - self.t)

times = []
model.fit(stream, steps_per_epoch=steps, epochs=cfg["epochs"], validation_data=bundle.val,
          callbacks=[Clock()], verbose=0)
print("EPOCHS", json.dumps({"times": times, "steps": steps}))
"""


def _plain_fit(args, data: Path, epochs: int) -> dict:
    cfg = {
        "data": str(data),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "seed": 1,
        "epochs": epochs,
    }
    done = subprocess.run(
        [sys.executable, "-c", PLAIN, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if done.returncode:
        raise RuntimeError(f"plain fit failed: {done.stderr[-2000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("EPOCHS"))
    return json.loads(line[len("EPOCHS") :])


def _workers_run(args, data: Path, out: Path, workers: int) -> float:
    """Training img/s of the last epoch with ``workers`` local processes (1: no strategy)."""
    from kidney_tf.training.distribute import free_ports, local_tf_config

    strategy = "multiworker" if workers > 1 else "default"
    config = _config(args, data, out, args.epochs, strategy=strategy)
    command = [
        sys.executable,
        "-c",
        "import json, sys\n"
        "from kidney_tf.training.trainer import TrainConfig, train\n"
        "r = train(TrainConfig.from_dict(json.loads(sys.argv[1])))\n"
        "print('RATE', r.history['images_per_sec'][-1])\n",
        json.dumps(config.to_dict()),
    ]
    ports = free_ports(workers)
    procs = []
    for index in range(workers):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if workers > 1:
            env["TF_CONFIG"] = local_tf_config(ports, index=index)
        procs.append(
            subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    try:
        outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        if p.returncode:
            raise RuntimeError(f"{workers}-worker run failed: {err[-2000:]}")
    line = next(x for x in outputs[0][0].splitlines() if x.startswith("RATE"))
    return float(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="scratch folder (removed)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=40, help="phantoms per class (4 classes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="E >= 2")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2")
    from kidney_tf.data.phantoms import generate_phantoms

    data = args.out / "phantoms"
    try:
        generate_phantoms("kidney-ct", data, per_class=args.per_class, image_size=args.image_size)
        started = time.perf_counter()
        plain = _plain_fit(args, data, args.epochs)
        plain_epoch = sum(plain["times"][1:]) / (len(plain["times"]) - 1)
        cli_long = _cli_run(args, data, args.out / "cli_long", args.epochs)
        cli_one = _cli_run(args, data, args.out / "cli_one", 1)
        cli_epoch = (cli_long - cli_one) / (args.epochs - 1)
        one = _workers_run(args, data, args.out / "w1", 1)
        two = _workers_run(args, data, args.out / "w2", 2)
        result = {
            "settings": {
                "image_size": args.image_size,
                "batch_size": args.batch_size,
                "epochs": args.epochs,
                "train_steps_per_epoch": plain["steps"],
                "cpu_count": os.cpu_count(),
                "load_average_end": os.getloadavg()[0],
            },
            "plain_fit_seconds_per_epoch": round(plain_epoch, 2),
            "cli_loop_seconds_per_epoch": round(cli_epoch, 2),
            "cli_over_plain_throughput": round(plain_epoch / cli_epoch, 3),
            "cli_goal": ">= 0.95",
            "one_worker_img_per_s": round(one, 1),
            "two_workers_img_per_s": round(two, 1),
            "two_over_one_workers": round(two / one, 3),
            "seconds": round(time.perf_counter() - started, 1),
        }
    finally:
        shutil.rmtree(args.out, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
