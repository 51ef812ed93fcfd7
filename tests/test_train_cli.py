"""``kidney-tf train``: option parsing, --config re-runs, one-line errors (exit 2) before training,
and the paper's two-stage flow (baseline, then CAM fostering from --init) on phantoms."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kidney_tf.cli.main import build_parser, main

SIZE = 32


def _args(*argv: str):
    return build_parser().parse_args(["train", *argv])


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    assert (
        main(
            [
                "data",
                "phantom",
                "--kind",
                "kidney-ct",
                "--out",
                str(out),
                "--per-class",
                "12",
                "--image-size",
                "64",
                "--quiet",
            ]
        )
        == 0
    )
    return out


def _fail(capsys, *argv: str) -> str:
    """Run ``kidney-tf train ARGV``; assert exit 2 and one error line; return that line."""
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kidney-tf train: error: "), err
    return err[0]


# ------------------------------------------------------------------------------- parsing
def test_flags_map_to_train_config(tmp_path):
    from kidney_tf.cli.train import config_from_args

    config = config_from_args(
        _args(
            "--data",
            "d",
            "--out",
            "r",
            "--crop",
            "none",
            "--weights",
            "none",
            "--no-augment",
            "--head-units",
            "16,8",
            "--deterministic",
            "--backup-every",
            "5",
            "--quiet",
        )
    )
    # an explicit "none" is kept (it overrides an --init model's crop) and means no crop
    assert (config.data, config.out, config.crop, config.augment) == ("d", "r", "none", False)
    from kidney_tf.training.trainer import resolved_crop

    assert resolved_crop(config) is None
    assert config.head_units == (16, 8) and config.deterministic and config.backup_every == 5
    assert config.verbose == 0 and config.epochs == 30 and config.arch is None
    with pytest.raises(Exception, match="--head-units must be integers"):
        config_from_args(_args("--data", "d", "--out", "r", "--head-units", "a,b"))


def test_config_file_settings_with_flag_overrides(tmp_path):
    from kidney_tf.cli.train import config_from_args
    from kidney_tf.training.trainer import TrainConfig

    saved = TrainConfig(out="old", data="/data/x", epochs=7, crop="brain", cam_weight=0.3)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"train": saved.to_dict(), "image_size": 64}))
    config = config_from_args(
        _args("--config", str(path), "--out", "new", "--epochs", "30", "--crop", "none")
    )
    assert (config.out, config.epochs, config.crop) == ("new", 30, "none")  # explicit flags win
    assert (config.data, config.cam_weight) == ("/data/x", 0.3)  # the rest comes from the file


def test_missing_source_and_config_errors(tmp_path, capsys):
    assert "pass --data, --manifest or --config" in _fail(capsys, "--out", str(tmp_path / "r"))
    line = _fail(capsys, "--config", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r"))
    assert "nope.json: run configuration not found" in line


def test_missing_data_folder_fails_before_training(tmp_path, capsys):
    line = _fail(capsys, "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run"))
    assert "missing: training data not found" in line
    assert not (tmp_path / "run").exists()


def test_output_folder_that_is_a_file_or_unwritable_fails_fast(phantoms, tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    line = _fail(capsys, "--data", str(phantoms), "--out", str(target))
    assert "results.txt: a file is there, not an output folder" in line
    line = _fail(capsys, "--data", str(phantoms), "--out", str(target / "run"))
    assert "cannot create the folder" in line and "results.txt is a file" in line
    assert target.read_text() == "keep me"


def test_different_settings_in_the_run_folder_are_refused(phantoms, tmp_path, capsys):
    from kidney_tf.training.trainer import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    old = TrainConfig(out=str(run), data=str(phantoms), epochs=3).normalized()
    (run / "config.json").write_text(json.dumps({"train": old.to_dict()}))
    (run / "backup").mkdir()  # an interrupted run with progress to lose
    line = _fail(capsys, "--data", str(phantoms), "--epochs", "4", "--out", str(run))
    assert "different settings (epochs)" in line and "use a new --out" in line


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A tiny saved classifier (classes Cyst, Normal, Stone; 32 px) to use as --init."""
    import keras

    from kidney_tf.models.builders import Classifier

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, name="last_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = Classifier(inputs, outputs, class_names=["Cyst", "Normal", "Stone"])
    path = tmp_path_factory.mktemp("init") / "small.keras"
    model.save(path)
    return path


def test_init_model_class_and_size_mismatches(phantoms, small_model, tmp_path, capsys):
    line = _fail(
        capsys, "--data", str(phantoms), "--init", str(small_model), "--out", str(tmp_path / "a")
    )
    assert "small.keras: the data has classes ['Tumor'] the model does not know" in line
    line = _fail(
        capsys,
        "--data",
        str(phantoms),
        "--init",
        str(small_model),
        "--image-size",
        "64",
        "--out",
        str(tmp_path / "b"),
    )
    assert "model input is 32 px but --image-size is 64" in line


def test_init_thaws_a_model_saved_with_its_backbone_frozen(phantoms, tmp_path, capsys):
    """Keras saves trainable flags, so a head-only fine-tune loads frozen; ``--init`` thaws it."""
    import keras
    import numpy as np

    from kidney_tf._loading import load_model
    from kidney_tf.models.builders import Classifier, set_backbone_trainable

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_1")(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(4, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = Classifier(inputs, outputs, class_names=["Cyst", "Normal", "Stone", "Tumor"])
    set_backbone_trainable(model, False)
    model.save(tmp_path / "frozen.keras")
    frozen = load_model(tmp_path / "frozen.keras")
    assert not frozen.get_layer("conv_1").trainable and frozen.get_layer("logits").trainable

    run = tmp_path / "run"
    argv = ["--data", str(phantoms), "--init", str(tmp_path / "frozen.keras"), "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "8", "--patience", "0", "--lr", "0.01"]  # fmt: skip
    assert main(["train", *argv, "--out", str(run)]) == 0
    capsys.readouterr()
    thawed = load_model(run / "model.keras")
    for name in ("conv_1", "last_conv", "logits"):
        assert thawed.get_layer(name).trainable, name
        before, after = frozen.get_layer(name).kernel.numpy(), thawed.get_layer(name).kernel.numpy()
        assert np.abs(after - before).max() > 1e-5, f"{name} did not train"


# ----------------------------------------------------------------------------- end to end
def _history(run: Path) -> list[dict[str, str]]:
    with (run / "history.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_two_stage_baseline_then_cam_fostering(phantoms, tmp_path, capsys):
    """The paper's flow as two commands, ResNet-50 at 64 px from scratch, a few steps."""
    from kidney_tf._loading import load_model

    base, fostered = tmp_path / "base", tmp_path / "fostered"
    common = ["--batch-size", "8", "--steps-per-epoch", "2", "--patience", "0"]
    assert (
        main(
            [
                "train",
                "--data",
                str(phantoms),
                "--arch",
                "resnet50",
                "--image-size",
                "64",
                "--weights",
                "none",
                "--epochs",
                "2",
                "--out",
                str(base),
                *common,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "img/s" in out and f"finished: {base}" in out
    for name in (
        "model.keras",
        "best.keras",
        "history.csv",
        "config.json",
        "split.csv",
        "curves.png",
        "test_metrics.json",
    ):
        assert (base / name).is_file(), name
    assert not (base / "backup").exists()
    assert [row["epoch"] for row in _history(base)] == ["0", "1"]
    config = json.loads((base / "config.json").read_text())
    assert config["train"]["data"] == str(phantoms) and config["image_size"] == 64
    assert config["class_names"] == ["Cyst", "Normal", "Stone", "Tumor"]
    assert config["environment"]["tensorflow"] and config["steps_per_epoch"] == 2

    assert (
        main(
            [
                "train",
                "--data",
                str(phantoms),
                "--init",
                str(base / "model.keras"),
                "--cam-weight",
                "0.5",
                "--split-csv",
                str(base / "split.csv"),
                "--epochs",
                "1",
                "--out",
                str(fostered),
                *common,
            ]
        )
        == 0
    )
    capsys.readouterr()
    model = load_model(fostered / "model.keras")
    assert model.cam_weight == pytest.approx(0.5) and model.cam_method == "gradcam++"
    assert model.class_names == ["Cyst", "Normal", "Stone", "Tumor"]
    assert model.metadata["arch"] == "resnet50" and model.input_shape[1:] == (64, 64, 3)
    rows = _history(fostered)
    assert len(rows) == 1 and float(rows[0]["cam_entropy"]) > 0
    assert float(rows[0]["loss"]) > float(rows[0]["ce_loss"])  # λ·entropy is in the loss
    config = json.loads((fostered / "config.json").read_text())
    assert config["train"]["init"] == str(base / "model.keras")
    assert config["train"]["lr"] is None and config["train"]["arch"] is None

    def test_rows(path):
        with path.open(newline="") as fh:
            return sorted(Path(r["path"]).name for r in csv.DictReader(fh) if r["split"] == "test")

    assert test_rows(fostered / "split.csv") == test_rows(base / "split.csv")
    metrics = json.loads((fostered / "test_metrics.json").read_text())
    assert {"accuracy", "loss", "ce_loss", "cam_entropy"} <= set(metrics)
