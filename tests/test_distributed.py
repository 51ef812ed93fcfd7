"""Distributed training: MirroredStrategy over 2 logical CPUs (``cpu_replicas``), and two
MultiWorkerMirroredStrategy processes on localhost: uneven splits give the same model as one
worker, a killed worker stops its peer with a clear error, both killed resume. Each runs in
subprocesses with timeouts: device and cluster settings must be made before TensorFlow starts."""

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

from kidney_tf.utils.io import OUTPUT_MARKER

TIMEOUT = 600  # seconds per process; a hang fails the test
KILL_BOUND = 300  # seconds the survivor of a killed worker may take to stop


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    from kidney_tf.data.phantoms import generate_phantoms

    out = tmp_path_factory.mktemp("phantoms")
    generate_phantoms("kidney-ct", out, per_class=12, image_size=32)
    return out


def test_cpu_replicas_need_the_mirrored_strategy(tmp_path):
    from kidney_tf.training.distribute import make_strategy
    from kidney_tf.training.trainer import TrainConfig

    config = TrainConfig(out=str(tmp_path / "r"), data=str(tmp_path), cpu_replicas=2)
    with pytest.raises(ValueError, match="cpu_replicas"):
        config.validate()
    with pytest.raises(ValueError, match="cpu_replicas"):
        make_strategy("default", cpu_replicas=2)


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
                    cam_weight=0.1, strategy="mirrored", cpu_replicas=2, backup_every=1,
                    verbose=0),
        model_fn=tiny,
    )
    import tensorflow as tf
    from kidney_tf.training.distribute import make_strategy
    print("RESULT " + json.dumps({
        "devices": len(tf.config.list_logical_devices("CPU")),
        "replicas": make_strategy("mirrored").num_replicas_in_sync,
        "history": result.history,
        "test": result.test_metrics,
    }))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(phantoms, tmp_path, predict_split):
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
    # the accuracy evaluated under the strategy is the saved model's on the test split
    probabilities, labels, _ = predict_split(out / "model.keras", out / "split.csv", image_size=32)
    assert len(labels) > 0
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    assert result["test"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
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


def _launch(command: list[str], logs: Path, stem: str, mode: str = "w") -> list[subprocess.Popen]:
    """Two workers of one 127.0.0.1 cluster running ``command``, logging to ``logs/<stem><i>.log``
    (``mode`` "a": a restarted worker appends to its log)."""
    from kidney_tf.training.distribute import free_ports, local_tf_config

    ports = free_ports(2)
    return [
        subprocess.Popen(
            command,
            stdout=(logs / f"{stem}{i}.log").open(mode),
            stderr=subprocess.STDOUT,
            env=_env(TF_CONFIG=local_tf_config(ports, index=i)),
            start_new_session=True,
        )
        for i in range(2)
    ]


def _start_workers(data: Path, out: Path, logs: Path) -> list[subprocess.Popen]:
    return _launch(_worker_command(data, out), logs, "worker", mode="a")


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


# ------------------------------------------------------------- two workers vs one, a killed worker
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras
    from kidney_tf.models.builders import Classifier
    from kidney_tf.training.trainer import TrainConfig, train

    def tiny(class_names, size):
        inputs = keras.Input((size, size, 3))
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
        x = keras.layers.BatchNormalization(synchronized=True)(x)  # global-batch statistics
        x = keras.layers.Conv2D(8, 3, activation="relu", name="last_conv")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(len(class_names), name="logits")(x)
        out = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
        return Classifier(inputs, out, class_names=class_names)

    data, out, strategy, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    # 20 images: train 11 (batches 8 + 3), val 5 (shares 4 + 1), test 4 (4 + 0)
    result = train(
        TrainConfig(out=out, data=data, image_size=32, epochs=1, batch_size=8, weights=None,
                    cam_weight=0.1, strategy=strategy, split="stratified", val_fraction=0.25,
                    test_fraction=0.2, deterministic=True, seed=3, patience=0, verbose=0,
                    steps_per_epoch=steps or None, backup_every=2 if steps else 0),
        model_fn=tiny,
    )
    print("RESULT " + json.dumps(result.test_metrics))
    """
)
ATOL = 1e-5  # measured 3.4e-7 (2 workers vs 1, one epoch): float summation order only


@pytest.fixture(scope="module")
def small_phantoms(tmp_path_factory) -> Path:
    from kidney_tf.data.phantoms import generate_phantoms

    out = tmp_path_factory.mktemp("small_phantoms")
    generate_phantoms("kidney-ct", out, per_class=5, image_size=32)
    return out


def _start(data: Path, out: Path, logs: Path, steps: int = 0) -> list[subprocess.Popen]:
    command = [sys.executable, "-c", SCRIPT, str(data), str(out), "multiworker", str(steps)]
    return _launch(command, logs, "w")


def _weights(path: Path):
    from kidney_tf._loading import load_model

    return load_model(path, compile=False).get_weights()


@pytest.mark.slow
def test_two_workers_with_uneven_splits_train_the_model_one_worker_trains(small_phantoms, tmp_path):
    import numpy as np

    single = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(small_phantoms), str(tmp_path / "one"), "default", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    run = tmp_path / "two"
    workers = _start(small_phantoms, run, tmp_path)
    try:
        codes = [w.wait(timeout=TIMEOUT) for w in workers]
    finally:
        _kill(workers)
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(text[-3000:] for text in logs)
    counts = json.loads((run / "config.json").read_text())["counts"]
    assert [sum(counts[s].values()) for s in ("train", "val", "test")] == [11, 5, 4]

    one, two = _weights(tmp_path / "one" / "model.keras"), _weights(run / "model.keras")
    assert len(one) == len(two)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(one, two))
    moved = max(float(np.max(np.abs(a))) for a in one)
    assert moved > 0 and diff <= ATOL, f"max weight difference {diff:.3g}"
    metrics = [json.loads(x[len("RESULT ") :]) for x in single.stdout.splitlines() if "RESULT" in x]
    two_metrics = json.loads((run / "test_metrics.json").read_text())
    for key, value in metrics[0].items():
        assert two_metrics[key] == pytest.approx(value, abs=1e-4), key
    # the worker scratch folders are gone; the output guard's marker stays
    hidden = sorted(p.name for p in run.iterdir() if p.name.startswith("."))
    assert hidden == [OUTPUT_MARKER]
    assert not (run / "backup").exists()


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_with_a_clear_error(small_phantoms, tmp_path):
    run = tmp_path / "run"
    workers = _start(small_phantoms, run, tmp_path, steps=1000)
    state_file = run / "backup" / "state.json"
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:  # mid-epoch: the chief has written a step backup
            assert time.monotonic() < deadline, "no backup appeared in time"
            assert all(w.poll() is None for w in workers), (tmp_path / "w0.log").read_text()
            try:
                if json.loads(state_file.read_text())["step"] >= 2:
                    break
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            time.sleep(0.1)
        os.killpg(workers[1].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        code = workers[0].wait(timeout=KILL_BOUND)  # TimeoutExpired: it hung
        waited = time.monotonic() - killed_at
    finally:
        _kill(workers)
    log = (tmp_path / "w0.log").read_text()
    assert code != 0, log[-3000:]
    assert "another worker stopped or is unreachable" in log, log[-3000:]
    assert "Restart every worker with the same command" in log
    print(f"the surviving worker exited {code} after {waited:.0f} s")


# ------------------------------------------------------------------- evaluate under a strategy
def _tiny_model_file(path: Path, class_names: list[str], size: int = 32) -> Path:
    import keras

    from kidney_tf.models.builders import Classifier

    keras.utils.set_random_seed(3)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(len(class_names), name="logits")(x)
    out = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    Classifier(inputs, out, class_names=class_names).save(path)
    return path


def _evaluate_command(model: Path, data: Path, out: Path, *strategy: str) -> list[str]:
    # batch 5 over 48 images: a partial last batch of 3, split 2/1 over two replicas
    return [sys.executable, "-m", "kidney_tf", "evaluate", "--model", str(model), "--data",
            str(data), "--split", "all", "--crop", "none", "--batch-size", "5",
            "--max-cam-images", "6", "--out", str(out), *strategy]  # fmt: skip


def _probabilities(report: Path) -> dict[str, list[float]]:
    with (report / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    # '' = no CAM statistics for that image (beyond --max-cam-images)
    values = sorted(k for k in rows[0] if k.startswith(("p_", "cam_")))
    return {r["file"]: [float(r[k] or "nan") for k in values] for r in rows}


@pytest.mark.slow
def test_evaluate_under_mirrored_and_two_workers_equals_one_device(phantoms, tmp_path):
    import numpy as np

    from kidney_tf.data.phantoms import PHANTOM_CLASSES

    model = _tiny_model_file(tmp_path / "tiny.keras", list(PHANTOM_CLASSES["kidney-ct"]))
    runs = {
        "one": [],
        "mirrored": ["--strategy", "mirrored", "--cpu-replicas", "2"],
    }
    for name, flags in runs.items():
        done = subprocess.run(
            _evaluate_command(model, phantoms, tmp_path / name, *flags),
            capture_output=True, text=True, env=_env(), timeout=TIMEOUT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    command = _evaluate_command(model, phantoms, tmp_path / "two", "--strategy", "multiworker")
    workers = _launch(command, tmp_path, "ev")
    try:
        codes = [w.wait(timeout=TIMEOUT) for w in workers]
    finally:
        _kill(workers)
    logs = [(tmp_path / f"ev{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(text[-3000:] for text in logs)

    one = _probabilities(tmp_path / "one")
    assert len(one) == 48
    for name in ("mirrored", "two"):
        other = _probabilities(tmp_path / name)
        assert list(other) == list(one), name  # same images, same order
        a, b = np.array(list(one.values())), np.array(list(other.values()))
        assert (np.isnan(a) == np.isnan(b)).all() and (~np.isnan(a)).sum() > 48 * 4, name
        diff = float(np.nanmax(np.abs(a - b)))
        assert diff <= 1e-5, f"{name}: probabilities/CAM statistics differ by {diff:.3g}"
        a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", name))
        assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]
    # only the chief wrote a report; the other worker's scratch folder is gone
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.name.startswith(".")) == [
        OUTPUT_MARKER
    ]
