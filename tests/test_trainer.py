"""Trainer internals: settings, run folder, resume checks, callbacks, strategies; tiny in-process runs.

The in-process runs use a tiny stand-in classifier (``model_fn``) so they stay quick; the real
ResNet-50 runs through the CLI are in test_train_cli.py, test_resume.py and test_distributed.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from kidney_tf.models.builders import Classifier
from kidney_tf.training import callbacks as cb
from kidney_tf.training import distribute
from kidney_tf.training.trainer import (
    TrainConfig,
    _check_resume,
    _dedupe_history,
    _phases,
    prepare_run_dir,
    train,
)

SIZE = 32


def tiny_classifier(class_names, image_size):
    """Flat stand-in for build_classifier: conv -> BN -> GAP -> Dense("logits") -> softmax."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="last_conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = keras.layers.Dense(len(class_names), name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return Classifier(inputs, outputs, class_names=list(class_names), metadata={})


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    from kidney_tf.data.phantoms import generate_phantoms

    out = tmp_path_factory.mktemp("phantoms")
    generate_phantoms("kidney-ct", out, per_class=8, image_size=SIZE)
    return out


def _config(tmp_path: Path, **kwargs) -> TrainConfig:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return TrainConfig(out=str(tmp_path / "run"), data=str(data), **kwargs)


# ------------------------------------------------------------------------------- settings
def test_config_json_round_trip_with_overrides(tmp_path):
    config = _config(tmp_path, epochs=3, head_units=(16, 8), weights=None).normalized()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"train": config.to_dict()}))
    again = TrainConfig.from_json(path, out=str(tmp_path / "new"), seed=7)
    assert again.head_units == (16, 8) and again.epochs == 3 and again.seed == 7
    assert again.out == str(tmp_path / "new")
    assert {k: v for k, v in again.to_dict().items() if k not in ("out", "seed")} == {
        k: v for k, v in config.to_dict().items() if k not in ("out", "seed")
    }
    with pytest.raises(ValueError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"out": "x", "colour": "red"})
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="no 'train' settings"):
        TrainConfig.from_json(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="run configuration not found"):
        TrainConfig.from_json(tmp_path / "missing.json")


def test_normalized_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(out="runs/a", data="data", weights="none").normalized()
    assert config.out == str(tmp_path / "runs" / "a") and config.data == str(tmp_path / "data")
    assert config.weights is None
    assert TrainConfig(out="r", weights="imagenet").normalized().weights == "imagenet"


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"strategy": "tpu"}, ValueError, "strategy must be one of"),
        ({"cam_weight": -1.0}, ValueError, "cam_weight must be"),
        ({"cam_weight": math.nan}, ValueError, "cam_weight must be"),
        ({"image_size": 16}, ValueError, "at least 32 pixels"),
        ({"val_fraction": 1.0}, ValueError, "val_fraction must be in"),
        ({"lr": 0.0}, ValueError, "lr must be a positive"),
        ({"backup_every": -1}, ValueError, "backup_every"),
        ({"init": "nowhere.keras"}, FileNotFoundError, "--init model not found"),
        ({"weights": "nowhere.weights.h5"}, FileNotFoundError, "weights file not found"),
    ],
)
def test_validate_rejects_bad_settings(tmp_path, changes, error, match):
    config = _config(tmp_path, **changes)
    with pytest.raises(error, match=match):
        config.validate()


def test_validate_missing_data(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), data=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope: training data not found"):
        config.validate()
    with pytest.raises(ValueError, match="no training data"):
        TrainConfig(out=str(tmp_path / "run")).validate()


def test_phases_head_then_main_at_a_tenth_of_the_rate(tmp_path):
    phases = _phases(_config(tmp_path, epochs=5, freeze_epochs=2, lr=1e-3))
    assert [(p.name, p.start, p.end) for p in phases] == [("head", 0, 2), ("main", 2, 5)]
    assert phases[1].lr == pytest.approx(1e-4)
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    finetune = _phases(_config(tmp_path, epochs=3, freeze_epochs=2, init=str(model)))
    assert [(p.name, p.start, p.end, p.lr) for p in finetune] == [("main", 0, 3, 1e-4)]


# ----------------------------------------------------------------------------- run folder
def test_prepare_run_dir_fails_fast_on_files(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="afile: --out must be a folder"):
        prepare_run_dir(target)
    with pytest.raises(NotADirectoryError, match="afile is a file"):
        prepare_run_dir(target / "run")
    made = prepare_run_dir(tmp_path / "a" / "b")
    assert made.is_dir() and not list(made.iterdir())


def test_check_resume_rules(tmp_path):
    config = _config(tmp_path).normalized()
    run = prepare_run_dir(config.out)
    assert _check_resume(run, config) is False
    (run / "config.json").write_text(json.dumps({"train": {**config.to_dict(), "verbose": 0}}))
    assert _check_resume(run, config) is True  # verbosity may change on resume
    changed = TrainConfig.from_dict({**config.to_dict(), "epochs": 99, "seed": 1})
    assert _check_resume(run, changed) is False  # nothing trained yet: new settings start afresh
    (run / "backup").mkdir()
    with pytest.raises(FileExistsError, match=r"different settings \(epochs, seed\)"):
        _check_resume(run, changed)
    (run / "model.keras").write_bytes(b"")
    assert _check_resume(run, config) is True  # killed after the final save: finish it
    (run / "backup").rmdir()
    with pytest.raises(FileExistsError, match="already finished"):
        _check_resume(run, config)
    (run / "config.json").unlink()
    with pytest.raises(FileExistsError, match="no config.json"):
        _check_resume(run, config)


def test_dedupe_history_keeps_the_last_row_of_each_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(
        "epoch,loss,val_loss\n0,1.0,2.0\n1,0.9,1.9\nepoch,loss,val_loss\n1,0.8,1.8\n2,0.7,1.7\n"
    )
    history = _dedupe_history(path)
    assert history == {"loss": [1.0, 0.8, 0.7], "val_loss": [2.0, 1.8, 1.7]}
    assert path.read_text().splitlines() == [
        "epoch,loss,val_loss",
        "0,1.0,2.0",
        "1,0.8,1.8",
        "2,0.7,1.7",
    ]
    assert _dedupe_history(tmp_path / "none.csv") == {}


# ------------------------------------------------------------------------------ callbacks
def _toy(n=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(n) % classes, classes).astype("float32")
    return x, y


def _compiled(seed=0):
    keras.utils.set_random_seed(seed)
    model = tiny_classifier(["a", "b", "c"], SIZE)
    model.compile(keras.optimizers.Adam(1e-2), "categorical_crossentropy", metrics=["accuracy"])
    return model


def test_throughput_shows_img_per_s_and_records_it():
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs.get("img/s"))

    x, y = _toy()
    history = _compiled().fit(
        x, y, batch_size=4, epochs=2, verbose=0, callbacks=[cb.Throughput(4), Spy()]
    )
    assert len(seen) == 8 and all(v is not None and v > 0 for v in seen)
    rates = history.history["images_per_sec"]
    assert len(rates) == 2 and all(r > 0 for r in rates)
    assert "img/s" not in history.history
    with pytest.raises(ValueError, match="batch_size"):
        cb.Throughput(0)


def test_atomic_best_checkpoint_saves_on_improvement_only(tmp_path):
    best = cb.AtomicBestCheckpoint(tmp_path / "best.keras", monitor="val_loss")
    best.set_model(_compiled())
    best.on_epoch_end(0, {"val_loss": 1.0})
    first = (tmp_path / "best.keras").stat().st_mtime_ns
    best.on_epoch_end(1, {"val_loss": 2.0})
    best.on_epoch_end(2, {"val_loss": float("nan")})
    assert (tmp_path / "best.keras").stat().st_mtime_ns == first
    assert best.get_state() == {"best": 1.0, "best_epoch": 1}
    best.on_epoch_end(3, {"val_loss": 0.5})
    assert best.get_state() == {"best": 0.5, "best_epoch": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]  # no temp files left
    assert cb.AtomicBestCheckpoint(tmp_path / "b.keras", monitor="val_accuracy").mode == "max"


def test_resumable_backup_saves_position_and_restores_everything(tmp_path):
    x, y = _toy()
    model = _compiled()
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=10)
    backup = cb.ResumableBackup(tmp_path / "backup", save_freq=3, callbacks=[stopper])
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[stopper, backup])
    state = cb.read_backup_state(tmp_path / "backup")
    assert (state["epoch"], state["step"], state["phase"]) == (2, 0, "main")
    assert state["callbacks"]["0:EarlyStopping"]["best"] == pytest.approx(stopper.best)
    assert [p.name for p in (tmp_path / "backup").glob("*.h5")] == [state["weights"]]

    # Mid-epoch: with save_freq=3 the state after step 3 of 4 records (epoch 0, step 3).
    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen[batch] = cb.read_backup_state(tmp_path / "mid")

    other = _compiled(seed=1)
    mid = cb.ResumableBackup(tmp_path / "mid", save_freq=3)
    other.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[mid, Spy()])
    assert seen[1] is None
    assert (seen[2]["epoch"], seen[2]["step"]) == (0, 3)
    assert len(seen[2]["metrics"]) == len(other.metrics_variables)
    final = cb.read_backup_state(tmp_path / "mid")
    assert (final["epoch"], final["step"], final["metrics"]) == (1, 0, None)

    fresh = _compiled(seed=2)
    stopper2 = keras.callbacks.EarlyStopping(monitor="loss", patience=10)
    restore = cb.ResumableBackup(tmp_path / "backup", callbacks=[stopper2])
    assert restore.restore(fresh)["epoch"] == 2
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())
    stopper2.on_train_begin()  # resets it ...
    restore.set_model(fresh)
    restore.on_train_begin()  # ... and the backup re-applies the saved state
    assert stopper2.best == pytest.approx(stopper.best)
    assert cb.ResumableBackup(tmp_path / "backup", phase="head").restore(fresh) is None
    with pytest.raises(ValueError, match="save_freq"):
        cb.ResumableBackup(tmp_path, save_freq=0)


def test_read_backup_state_errors_name_the_file(tmp_path):
    assert cb.read_backup_state(tmp_path) is None
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"state.json: unreadable training backup"):
        cb.read_backup_state(tmp_path)
    (tmp_path / "state.json").write_text(json.dumps({"epoch": 1, "step": 0, "weights": "w.h5"}))
    with pytest.raises(ValueError, match="w.h5 is missing"):
        cb.read_backup_state(tmp_path)


def test_cosine_schedule_decays_per_epoch_from_its_start():
    schedule = cb.cosine_schedule(1e-3, 4, start=2).schedule
    assert [schedule(e, None) for e in (2, 4, 6)] == pytest.approx([1e-3, 5e-4, 0.0], abs=1e-12)
    model = tiny_classifier(["a", "b"], 8)
    model.compile(optimizer=keras.optimizers.Adam(1.0), loss="categorical_crossentropy")
    x, y = np.zeros((4, 8, 8, 3), np.float32), np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[cb.cosine_schedule(0.2, 2)])
    assert history.history["learning_rate"] == pytest.approx([0.2, 0.1])


def test_stop_on_nan_names_the_metric(caplog):
    stop = cb.StopOnNaN()
    stop.set_model(_compiled())
    stop.on_batch_end(3, {"loss": float("nan"), "accuracy": 0.5})
    assert stop.model.stop_training and stop.stopped_at == (0, 3)
    assert "non-finite loss at batch 3" in caplog.text


# -------------------------------------------------------------------------------- strategies
def _fake_strategy(task_type, task_id, cluster=None):
    spec = SimpleNamespace(as_dict=lambda: cluster or {})
    resolver = SimpleNamespace(task_type=task_type, task_id=task_id, cluster_spec=lambda: spec)
    return SimpleNamespace(cluster_resolver=resolver)


def test_chief_and_worker_output_dirs(tmp_path):
    workers = {"worker": ["a:1", "b:2"]}
    assert distribute.is_chief(SimpleNamespace())
    assert distribute.is_chief(_fake_strategy("worker", 0, workers))
    assert not distribute.is_chief(_fake_strategy("worker", 1, workers))
    with_chief = {"chief": ["c:0"], **workers}
    assert distribute.is_chief(_fake_strategy("chief", 0, with_chief))
    assert not distribute.is_chief(_fake_strategy("worker", 0, with_chief))
    assert distribute.output_dir(tmp_path, _fake_strategy("worker", 0, workers)) == tmp_path
    worker_dir = distribute.output_dir(tmp_path, _fake_strategy("worker", 1, workers))
    assert worker_dir == tmp_path / ".worker-worker-1"


def test_local_tf_config_and_free_ports():
    ports = distribute.free_ports(2)
    assert len(set(ports)) == 2
    config = json.loads(distribute.local_tf_config(ports, index=1))
    assert config["cluster"]["worker"] == [f"localhost:{p}" for p in ports]
    assert config["task"] == {"type": "worker", "index": 1}
    with pytest.raises(ValueError, match="index"):
        distribute.local_tf_config(ports, index=2)


def test_make_strategy_errors(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        distribute.make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not a valid"):
        distribute.make_strategy("multiworker")
    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.make_strategy("tpu")
    assert distribute.make_strategy("default").num_replicas_in_sync == 1


# ------------------------------------------------------------------------- in-process runs
def _weights(path):
    from kidney_tf._loading import load_model

    return load_model(path).get_weights()


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(phantoms, tmp_path, monkeypatch):
    """Head phase + fostering + augmentation; interrupted mid-epoch in the main phase."""
    settings = dict(
        data=str(phantoms),
        image_size=SIZE,
        epochs=3,
        freeze_epochs=1,
        batch_size=4,
        weights=None,
        cam_weight=0.1,
        deterministic=True,
        backup_every=1,
        verbose=0,
    )
    reference = train(TrainConfig(out=str(tmp_path / "ref"), **settings), model_fn=tiny_classifier)
    for name in ("model.keras", "best.keras", "history.csv", "curves.png", "config.json"):
        assert (tmp_path / "ref" / name).is_file(), name
    assert not (tmp_path / "ref" / "backup").exists()
    assert reference.epochs_run == 3 and len(reference.history["loss"]) == 3
    assert "cam_entropy" in reference.history and reference.test_metrics

    original = cb.Throughput.on_train_batch_end
    steps = {"n": 0}

    def interrupt(self, batch, logs=None):
        original(self, batch, logs)
        steps["n"] += 1
        if steps["n"] == 9:  # epoch = 6 steps: dies in step 3 of epoch 1, before its backup
            raise KeyboardInterrupt

    monkeypatch.setattr(cb.Throughput, "on_train_batch_end", interrupt)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=str(run), **settings), model_fn=tiny_classifier)
    state = cb.read_backup_state(run / "backup")
    assert (state["phase"], state["epoch"], state["step"]) == ("main", 1, 2)
    assert keras.mixed_precision.global_policy().name == "float32"
    monkeypatch.setattr(cb.Throughput, "on_train_batch_end", original)

    resumed = train(TrainConfig(out=str(run), **settings), model_fn=tiny_classifier)
    assert resumed.resumed and resumed.epochs_run == 2
    for a, b in zip(_weights(tmp_path / "ref" / "model.keras"), _weights(run / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    for key in ("loss", "accuracy", "val_loss", "cam_entropy"):
        np.testing.assert_allclose(resumed.history[key], reference.history[key], rtol=1e-5)
    assert resumed.test_metrics == pytest.approx(reference.test_metrics, rel=1e-5)
    assert not (run / "backup").exists()
    with pytest.raises(FileExistsError, match="already finished"):
        train(TrainConfig(out=str(run), **settings), model_fn=tiny_classifier)


@pytest.mark.slow
def test_mixed_precision_tiny_run_is_finite_and_restores_the_policy(phantoms, tmp_path):
    result = train(
        TrainConfig(
            out=str(tmp_path / "mp"),
            data=str(phantoms),
            image_size=SIZE,
            epochs=1,
            batch_size=8,
            weights=None,
            cam_weight=0.1,
            mixed_precision=True,
            verbose=0,
        ),
        model_fn=tiny_classifier,
    )
    assert keras.mixed_precision.global_policy().name == "float32"
    losses = result.history["loss"] + result.history["val_loss"] + [result.test_metrics["loss"]]
    assert all(math.isfinite(v) for v in losses)
    from kidney_tf._loading import load_model

    # compile=False: Keras re-creates a plain Adam for the saved LossScaleOptimizer (a warning)
    model = load_model(tmp_path / "mp" / "model.keras", compile=False)
    assert model.get_layer("last_conv").dtype_policy.name == "mixed_float16"
    assert model.cam_weight == pytest.approx(0.1)


@pytest.mark.slow
def test_finetune_with_unfreeze_top_zero_trains_the_head_only(phantoms, tmp_path):
    """Fostering fine-tune of ``init`` with ``unfreeze_top=0``: backbone (incl. BN) untouched."""
    settings = dict(data=str(phantoms), image_size=SIZE, batch_size=8, weights=None, verbose=0)
    train(TrainConfig(out=str(tmp_path / "base"), epochs=1, **settings), model_fn=tiny_classifier)
    tuned = train(
        TrainConfig(
            out=str(tmp_path / "tuned"),
            init=str(tmp_path / "base" / "model.keras"),
            epochs=1,
            lr=1e-2,
            cam_weight=1.0,
            unfreeze_top=0,
            **settings,
        )
    )
    assert "cam_entropy" in tuned.history
    from kidney_tf._loading import load_model

    before = load_model(tmp_path / "base" / "model.keras")
    after = load_model(tmp_path / "tuned" / "model.keras")
    for name in ("last_conv", "bn"):
        for a, b in zip(before.get_layer(name).get_weights(), after.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    kernel_change = after.get_layer("logits").kernel - before.get_layer("logits").kernel
    assert float(np.abs(kernel_change).max()) > 1e-4


@pytest.mark.slow
def test_policy_restored_when_training_fails(phantoms, tmp_path):
    def broken(class_names, image_size):
        raise RuntimeError("model builder failed")

    config = TrainConfig(
        out=str(tmp_path / "x"), data=str(phantoms), image_size=SIZE, mixed_precision=True
    )
    with pytest.raises(RuntimeError, match="model builder failed"):
        train(config, model_fn=broken)
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow
def test_fostering_benchmark_smoke(tmp_path, capsys, load_benchmark):
    """The benchmark runs end to end with tiny settings (never a timing assertion)."""
    bench = load_benchmark("bench_fostering")
    out = tmp_path / "bench.json"
    argv = [
        "--arch",
        "tiny",
        "--image-size",
        "32",
        "--rounds",
        "2",
        "--steps",
        "1",
        "--out",
        str(out),
    ]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["images_per_sec"]) == {"plain", "exact", "gradcam++", "gradcam"}
    assert all(v["wall"] > 0 and v["cpu"] > 0 for v in result["images_per_sec"].values())
    assert set(result["overhead_percent"]) == {"exact", "gradcam++", "gradcam"}
    assert all(math.isfinite(v["cpu"]) for v in result["overhead_percent"].values())
    assert len(result["rounds"]) == 2 and result["cam_method"]["gradcam"] == "gradcam"
    assert "overhead" in capsys.readouterr().out
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow
def test_diverging_run_stops_with_a_clear_error_and_keeps_its_backup(phantoms, tmp_path):
    from kidney_tf.training.trainer import TrainingDivergedError

    def exploding(class_names, image_size):
        inputs = keras.Input((image_size, image_size, 3))
        x = keras.layers.Rescaling(float("inf"))(inputs)  # 0 * inf = NaN from the first step
        x = keras.layers.Conv2D(4, 3, name="last_conv")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(len(class_names), name="logits")(x)
        outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
        return Classifier(inputs, outputs, class_names=list(class_names))

    config = TrainConfig(
        out=str(tmp_path / "run"), data=str(phantoms), image_size=SIZE, epochs=2,
        batch_size=8, backup_every=1, verbose=0,
    )  # fmt: skip
    with pytest.raises(TrainingDivergedError, match="non-finite loss in epoch 1, step 1"):
        train(config, model_fn=exploding)
    assert not (tmp_path / "run" / "model.keras").exists()
    assert cb.read_backup_state(tmp_path / "run" / "backup") is None  # nothing diverged saved


def test_fostering_run_with_spatial_terms_reports_them_in_history_and_saves_them(
    phantoms, tmp_path
):
    """--outside-/--mask-/--alive-weight: the trainer feeds the masks; history.csv reports them."""
    result = train(
        TrainConfig(
            out=str(tmp_path / "spatial"),
            data=str(phantoms),
            image_size=SIZE,
            epochs=1,
            batch_size=8,
            weights=None,
            crop="body",
            cam_weight=0.1,
            outside_weight=1.0,
            mask_weight=1.0,
            mask_dilation=2,
            alive_weight=0.5,
            verbose=0,
        ),
        model_fn=tiny_classifier,
    )
    for name in ("cam_outside", "cam_off_lesion", "val_cam_outside", "val_cam_off_lesion"):
        values = result.history[name]
        assert values and all(0.0 <= v <= 1.0 for v in values), name
    assert 0.0 <= result.test_metrics["cam_outside"] <= 1.0
    header = (tmp_path / "spatial" / "history.csv").read_text().splitlines()[0].split(",")
    assert "cam_outside" in header
    from kidney_tf._loading import load_model

    model = load_model(tmp_path / "spatial" / "model.keras")
    assert (model.outside_weight, model.mask_weight, model.mask_dilation) == (1.0, 1.0, 2)
    assert model.alive_weight == 0.5
    assert model.cam_method == "gradcam++"  # the default: the map the evaluation measures


def test_mixing_is_refused_with_cam_fostering():
    with pytest.raises(ValueError, match="no single true class"):
        TrainConfig(out="x", data="d", augment={"cutmix": 1.0}, cam_weight=0.1).check_settings()
    TrainConfig(out="x", data="d", augment={"cutmix": 1.0}).check_settings()  # baseline: fine
