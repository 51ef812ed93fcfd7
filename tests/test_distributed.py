"""Distributed training: MirroredStrategy over 2 logical CPUs, and two MultiWorkerMirroredStrategy
processes on localhost (killed mid-epoch and resumed). Each runs in subprocesses with timeouts:
device and cluster settings must be made before TensorFlow initialises."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TIMEOUT = 600  # seconds per process; a hang fails the test


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    from kidney_tf.data.phantoms import generate_phantoms

    out = tmp_path_factory.mktemp("phantoms")
    generate_phantoms("kidney-ct", out, per_class=12, image_size=32)
    return out


def test_stream_datasets_shard_by_data():
    import tensorflow as tf

    from kidney_tf.training.trainer import shardable

    dataset = shardable(tf.data.Dataset.range(8).batch(2))
    policy = dataset.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA
    assert shardable(None) is None


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, math, sys
    from kidney_tf.training.distribute import split_cpu
    devices = split_cpu(2)  # before TensorFlow initialises
    import keras
    from kidney_tf.models.builders import Classifier
    from kidney_tf.training.trainer import TrainConfig, train

    def tiny(class_names, size):
        inputs = keras.Input((size, size, 3))
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="last_conv")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(len(class_names), name="logits")(x)
        out = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
        return Classifier(inputs, out, class_names=class_names)

    data, out = sys.argv[1], sys.argv[2]
    result = train(
        TrainConfig(out=out, data=data, image_size=32, epochs=2, batch_size=8, weights=None,
                    cam_weight=0.1, strategy="mirrored", backup_every=1, verbose=0),
        model_fn=tiny,
    )
    from kidney_tf.training.distribute import make_strategy
    print("RESULT " + json.dumps({
        "devices": len(devices),
        "replicas": make_strategy("mirrored").num_replicas_in_sync,
        "history": result.history,
        "test": result.test_metrics,
    }))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(phantoms, tmp_path):
    out = tmp_path / "mirrored"
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(phantoms), str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert result["devices"] == 2 and result["replicas"] == 2
    history = result["history"]
    assert len(history["loss"]) == 2 and all(v == v for v in history["loss"] + history["val_loss"])
    assert all(v > 0 for v in history["cam_entropy"])
    assert result["test"]["accuracy"] >= 0
    for name in ("model.keras", "best.keras", "history.csv", "curves.png", "config.json"):
        assert (out / name).is_file(), name
    assert not (out / "backup").exists()


def _worker_command(data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "kidney_tf", "train", "--data", str(data), "--out", str(out),
        "--arch", "resnet50", "--image-size", "32", "--weights", "none", "--epochs", "1",
        "--steps-per-epoch", "3", "--batch-size", "8", "--patience", "0",
        "--strategy", "multiworker", "--backup-every", "1",
    ]  # fmt: skip


def _start_workers(data: Path, out: Path, logs: Path) -> list[subprocess.Popen]:
    from kidney_tf.training.distribute import free_ports, local_tf_config

    ports = free_ports(2)
    return [
        subprocess.Popen(
            _worker_command(data, out),
            stdout=(logs / f"worker{i}.log").open("a"),
            stderr=subprocess.STDOUT,
            env=_env(TF_CONFIG=local_tf_config(ports, index=i)),
            start_new_session=True,
        )
        for i in range(2)
    ]


def _kill(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=60)


def _wait(workers: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and any(w.poll() is None for w in workers):
        if any(w.poll() not in (None, 0) for w in workers):
            break  # one failed: the other would wait for it forever
        time.sleep(0.2)
    _kill(workers)
    for i, worker in enumerate(workers):
        assert worker.returncode == 0, (logs / f"worker{i}.log").read_text()[-3000:]


@pytest.mark.slow
def test_two_multiworker_processes_resume_after_a_kill(phantoms, tmp_path):
    run = tmp_path / "run"
    workers = _start_workers(phantoms, run, tmp_path)
    state_file = run / "backup" / "state.json"
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            assert time.monotonic() < deadline, "no backup appeared in time"
            if any(w.poll() is not None for w in workers):
                pytest.fail(
                    "a worker ended before the kill: "
                    + (tmp_path / "worker0.log").read_text()[-3000:]
                )
            try:
                state = json.loads(state_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = None
            if state and state["step"] >= 1:
                break
            time.sleep(0.05)
    finally:
        _kill(workers)
    worker_dir = run / ".worker-worker-1"
    assert worker_dir.is_dir()  # the non-chief's saves went to its private folder
    assert not (run / "model.keras").exists()

    workers = _start_workers(phantoms, run, tmp_path)
    _wait(workers, tmp_path)

    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert all(f"resumed and finished: {run}" in text for text in logs)
    tests = [[x for x in text.splitlines() if x.startswith("test: ")][-1] for text in logs]
    assert tests[0] == tests[1]  # both workers hold the same model
    for name in ("model.keras", "best.keras", "history.csv", "config.json", "test_metrics.json"):
        assert (run / name).is_file(), name
    assert not worker_dir.exists() and not (run / "backup").exists()
    with (run / "history.csv").open(newline="") as fh:
        assert [row["epoch"] for row in csv.DictReader(fh)] == ["0"]
