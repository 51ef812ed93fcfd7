"""The real-data recipe's pieces: held-out slice ranges, levers, and the bugs met on real data."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kidney_tf.data.reading import ImageRecord, load_source
from kidney_tf.data.splits import slice_number, split_records

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _real_pool(name: str) -> Path:
    pool = SHARED / name
    if not pool.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{pool}: the real pool is missing (CI must have ../shared/data)")
        pytest.skip(f"{pool} not present (../shared/data is not next to this checkout)")
    return pool


@pytest.fixture(scope="module")
def kidney_pool() -> Path:
    return _real_pool("kidney_ct_pool")


@pytest.fixture(scope="module")
def brain_pool() -> Path:
    return _real_pool("brain_mri_pool")


# ------------------------------------------------------------------------- held-out ranges
@pytest.mark.real_data
def test_ranges_split_holds_out_the_highest_slices_without_neighbours(kidney_pool):
    records = load_source(kidney_pool, validate=False).records
    splits = split_records(records, method="ranges", val_fraction=0.15, test_fraction=0.15)
    assert splits.method == "ranges"
    assert sum(len(v) for v in splits.values()) == len(records) == 3397
    for label in ("Cyst", "Normal", "Stone", "Tumor"):
        numbers = {
            name: sorted(slice_number(r.path)[1] for r in part if r.label == label)
            for name, part in splits.items()
        }
        total = sum(len(v) for v in numbers.values())
        # test above val above train: the highest-numbered slices are held out
        assert max(numbers["train"]) < min(numbers["val"]) <= max(numbers["val"])
        assert max(numbers["val"]) < min(numbers["test"])
        # no slice-number neighbour (gap <= 5) across any two splits
        for a, b in (("train", "val"), ("val", "test"), ("train", "test")):
            gaps = np.abs(np.subtract.outer(numbers[a], numbers[b]))
            assert gaps.min() > 5, (label, a, b)
        for name in ("val", "test"):
            assert 0.08 <= len(numbers[name]) / total <= 0.25, (label, name, len(numbers[name]))


def test_ranges_split_is_deterministic_and_cuts_at_series_gaps():
    numbers = [*range(1, 41), *range(60, 81), *range(100, 121)]  # three series
    records = [ImageRecord(f"/d/Cyst/Cyst- ({n}).jpg", "Cyst") for n in numbers]
    splits = split_records(records[::-1], method="ranges", val_fraction=0.25, test_fraction=0.25)
    test = sorted(slice_number(r.path)[1] for r in splits["test"])
    val = sorted(slice_number(r.path)[1] for r in splits["val"])
    assert test == list(range(100, 121)) and val == list(range(60, 81))
    assert len(splits["train"]) == 40


def test_ranges_split_names_the_file_without_a_slice_number():
    records = [ImageRecord("/d/Cyst/Cyst- (1).jpg", "Cyst"), ImageRecord("/d/Cyst/x.jpg", "Cyst")]
    with pytest.raises(ValueError, match=r"x\.jpg: split='ranges' needs a slice number"):
        split_records(records, method="ranges")


def test_ranges_split_without_a_series_gap_says_so():
    records = [ImageRecord(f"/d/Cyst/Cyst- ({n}).jpg", "Cyst") for n in range(1, 30)]
    with pytest.raises(ValueError, match="no gap of more than 5 slice numbers"):
        split_records(records, method="ranges")


def test_split_all_puts_every_record_in_test():
    records = [ImageRecord(f"/d/{c}/{c}{i}.png", c) for c in ("a", "b") for i in range(3)]
    splits = split_records(records, method="all")
    assert len(splits["test"]) == 6 and not splits["train"] and not splits["val"]
    assert {r.split for r in splits["test"]} == {"test"}


# -------------------------------------------------------------------------------- levers
def test_per_image_standardization_removes_global_brightness_and_contrast():
    from kidney_tf.models.preprocessing import PerImageStandardization

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    layer = PerImageStandardization()
    y = np.asarray(layer(x))
    shifted = np.asarray(layer(0.5 * x + 40.0))
    np.testing.assert_allclose(y, shifted, atol=1e-3)
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), 127.5, atol=1e-3)
    np.testing.assert_allclose(y.std(axis=(1, 2, 3)), 64.0, rtol=1e-4)
    flat = np.asarray(layer(np.full((1, 4, 4, 3), 80.0, "float32")))
    np.testing.assert_allclose(flat, 127.5)  # constant image: no division by zero


def test_random_gamma_applies_one_power_curve_per_image():
    from kidney_tf.data.augment import RandomGamma

    rng = np.random.default_rng(1)
    x = rng.uniform(5, 250, (4, 8, 8, 1)).astype("float32")
    out = np.asarray(RandomGamma(0.5, seed=3)(x, training=True))
    assert out.min() >= 0 and out.max() <= 255
    exponents = np.log(out / 255.0) / np.log(x / 255.0)
    per_image = exponents.reshape(4, -1)
    np.testing.assert_allclose(per_image, np.repeat(per_image[:, :1], 64, axis=1), rtol=1e-3)
    assert np.all(np.abs(np.log(per_image[:, 0])) <= 0.5 + 1e-5)
    assert len(np.unique(per_image[:, 0].round(4))) > 1  # images draw their own gamma
    np.testing.assert_array_equal(np.asarray(RandomGamma(0.5)(x, training=False)), x)


def test_augment_config_gamma_round_trips_and_validates():
    from kidney_tf.data.augment import AugmentConfig, build_augmenter

    config = AugmentConfig(gamma=0.3, rotation=0, zoom=0, horizontal_flip=False)
    assert AugmentConfig.from_dict(config.to_dict()) == config
    assert not config.is_identity
    assert [layer.name for layer in build_augmenter(config).photometric][-1] == "gamma"
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        AugmentConfig(gamma=-1)


def _tiny_model():
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    return model


def test_ema_weights_are_validated_and_saved_in_the_best_checkpoint(tmp_path):
    import keras

    from kidney_tf.training.callbacks import AtomicBestCheckpoint, EmaWeights

    class EpochCounter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["epoch_count"] = epoch  # always improves in "max" mode

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)
    model = _tiny_model()
    model.compile(keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.9), "mse")
    ema = EmaWeights()
    best = AtomicBestCheckpoint(tmp_path / "best.keras", monitor="epoch_count", mode="max", ema=ema)
    raw_after_epoch = []

    class Raw(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raw_after_epoch.append([np.array(w) for w in self.model.get_weights()])

    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[EpochCounter(), ema, best, Raw()])
    saved = keras.models.load_model(tmp_path / "best.keras").get_weights()
    # fit's end writes the EMA into the model: the checkpoint of the last epoch holds the same
    for a, b in zip(saved, model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # ... and not the raw weights training had at that epoch's end (they are restored after)
    assert any(not np.allclose(a, b) for a, b in zip(saved, raw_after_epoch[-1]))


def test_progress_lines_write_whole_lines_with_step_rate_and_eta():
    import keras

    from kidney_tf.training.callbacks import ProgressLines, Throughput

    x = np.zeros((40, 4), "float32")
    y = keras.utils.to_categorical(np.zeros(40), 2)
    model = _tiny_model()
    model.compile("adam", "mse")
    stream = io.StringIO()
    callbacks = [Throughput(8), ProgressLines(every=1e-9, stream=stream)]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=callbacks)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("epoch 1/2  step 1/5  ") and "img/s" in lines[0]
    assert lines[-1].startswith("epoch 2/2  step 5/5") and "epoch ETA 0 s" in lines[-1]
    # beside Keras' progress bar (verbose=1, which redraws with "\r") each line starts afresh
    stream = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        model.fit(x, y, epochs=1, batch_size=8, verbose=1, callbacks=[ProgressLines(1e-9, stream)])
    assert stream.getvalue().startswith("\nepoch 1/1  step 1/5  ")
    assert stream.getvalue().count("\nepoch 1/1  step ") == 5
    with pytest.raises(ValueError, match="every must be > 0"):
        ProgressLines(every=0)


def test_train_config_validates_the_new_settings(tmp_path):
    from kidney_tf.training.trainer import TrainConfig

    base = {"out": str(tmp_path / "run"), "data": str(tmp_path)}
    for bad, message in (
        ({"ema": 1.0}, "ema must be a momentum"),
        ({"label_smoothing": -0.1}, "label_smoothing must be in"),
        ({"input_norm": "global"}, "input_norm must be one of"),
        ({"augment": {"gamma": -1}}, "gamma must be >= 0"),
        ({"augment": {"warp": 1}}, "unknown AugmentConfig keys"),
    ):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**base, **bad).validate()


# ------------------------------------------------------------- bugs met on the real data
def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "kidney_tf", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_init_keeps_the_crop_and_evaluate_scores_an_external_set(tmp_path):
    data = tmp_path / "ph"
    r = _cli("data", "phantom", "--kind", "kidney-ct", "--out", str(data), "--per-class", "5",
             "--image-size", "64", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    common = ["--data", str(data), "--epochs", "1", "--batch-size", "8", "--quiet"]
    r = _cli("train", *common, "--arch", "resnet50", "--image-size", "32", "--weights", "none",
             "--crop", "body", "--out", str(tmp_path / "base"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _cli("train", *common, "--init", str(tmp_path / "base" / "model.keras"),
             "--out", str(tmp_path / "tuned"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    from kidney_tf._loading import load_model

    tuned = load_model(tmp_path / "tuned" / "model.keras", compile=False)
    assert tuned.metadata["crop"] == "body"  # was None: the fine-tune dropped the crop
    # an explicit --crop none still turns it off
    r = _cli("train", *common, "--init", str(tmp_path / "base" / "model.keras"),
             "--crop", "none", "--out", str(tmp_path / "nocrop"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert load_model(tmp_path / "nocrop" / "model.keras").metadata["crop"] is None

    # an external test set: a manifest whose rows are all "test"
    external = data / "external.csv"
    with open(data / "manifest.csv", newline="") as src, open(external, "w", newline="") as dst:
        rows = list(csv.DictReader(src))
        writer = csv.DictWriter(dst, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "split": "test"} for row in rows)
    r = _cli("evaluate", "--model", str(tmp_path / "tuned" / "model.keras"),
             "--manifest", str(external), "--split", "all", "--max-cam-images", "4",
             "--out", str(tmp_path / "report"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n_images"] == len(rows) == 20
    assert metrics["calibration"]["temperature"] is None  # nothing fitted unless asked
    r = _cli("evaluate", "--model", str(tmp_path / "tuned" / "model.keras"),
             "--manifest", str(external), "--split", "all", "--temperature", "fit",
             "--out", str(tmp_path / "report2"))  # fmt: skip
    assert r.returncode == 2 and "needs a validation split" in r.stderr


def test_a_run_saved_before_a_setting_existed_still_resumes(tmp_path):
    from kidney_tf.training.trainer import TrainConfig, _check_resume

    config = TrainConfig(out=str(tmp_path), data=str(tmp_path))
    saved = config.to_dict()
    for newer in ("ema", "label_smoothing", "input_norm", "progress_every"):
        saved.pop(newer)
    (tmp_path / "config.json").write_text(json.dumps({"train": saved}))
    (tmp_path / "backup").mkdir()
    assert _check_resume(tmp_path, config) is True
    with pytest.raises(FileExistsError, match=r"different settings \(ema\)"):
        _check_resume(tmp_path, TrainConfig(out=str(tmp_path), data=str(tmp_path), ema=0.99))


def test_test_time_augmentation_averages_the_image_and_its_mirror():
    import keras

    from kidney_tf.evaluation.report import _predict

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(0).normal(size=(2, 6, 6, 1)).astype("float32")
    expected = 0.5 * (model.predict_on_batch(images) + model.predict_on_batch(images[:, :, ::-1]))
    np.testing.assert_allclose(_predict(model, images, tta=True), expected, rtol=1e-5)
    assert not np.allclose(_predict(model, images), expected)


def test_real_data_benchmark_lists_its_arms_and_renders_a_table(
    kidney_pool, capsys, load_benchmark
):
    bench = load_benchmark("real_data")
    assert bench.detect_dataset(kidney_pool) == "kidney"
    assert bench.main(["--pool", str(kidney_pool), "--out", "unused", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "recipe: the kidney-real recipe" in listed and "--split" not in listed
    row = {"arm": "recipe", "accuracy": 0.9, "macro_f1": 0.8, "recall": {"Cyst": 0.5},
           "same_cell_classes": {"Stone": 0.6}, "epochs": 3, "best_epoch": 2}  # fmt: skip
    text = bench.table([row], bench.KIDNEY_CLASSES)
    assert "| recipe | 0.900 | 0.800 | 0.50 | – |" in text and "Stone 60%" in text
    with pytest.raises(SystemExit, match="unknown arm"):
        bench.main(["--pool", str(kidney_pool), "--out", "unused", "--arms", "nope"])


def test_real_data_benchmark_keeps_rows_of_arms_measured_earlier(tmp_path, load_benchmark):
    bench = load_benchmark("real_data")
    old = [{"arm": a, "accuracy": 0.5} for a in ("recipe", "recipe · TTA", "baseline")]
    old.append({"arm": "x · final weights", "base_arm": "x", "accuracy": 0.1})
    (tmp_path / "results.json").write_text(json.dumps({"dataset": "kidney", "rows": old}))
    kept = [r for r in bench._earlier_rows(tmp_path, "kidney") if bench._base_arm(r) != "recipe"]
    assert [r["arm"] for r in kept] == ["baseline", "x · final weights"]
    with pytest.raises(SystemExit, match="results of the kidney pool, not brain"):
        bench._earlier_rows(tmp_path, "brain")


def test_real_data_benchmark_scores_an_ensemble_by_mean_probabilities(tmp_path, load_benchmark):
    bench = load_benchmark("real_data")
    classes = ("a", "b")
    # Member 1 is right on x and y, member 2 on x and z; their mean is right on all three.
    members = {"m1": {"x": (0.9, 0.1), "y": (0.2, 0.8), "z": (0.6, 0.4)},
               "m2": {"x": (0.7, 0.3), "y": (0.6, 0.4), "z": (0.1, 0.9)}}  # fmt: skip
    true = {"x": "a", "y": "b", "z": "b"}
    for member, probs in members.items():
        for suffix in ("", " · TTA"):
            report = bench._report_dir(tmp_path, member, suffix)
            report.mkdir(parents=True)
            lines = ["file,true,pred,correct,confidence,p_a,p_b"]
            lines += [f"{f},{true[f]},,,,{pa},{pb}" for f, (pa, pb) in probs.items()]
            (report / "predictions.csv").write_text("\n".join(lines) + "\n")
    rows = bench.ensemble_rows(["m1", "m2"], tmp_path, classes)
    assert [r["arm"] for r in rows] == ["ensemble(m1+m2)", "ensemble(m1+m2) · TTA"]
    assert rows[0]["accuracy"] == 1.0 and rows[0]["confusion_matrix"] == [[1, 0], [0, 2]]
    assert rows[0]["recall"] == {"a": 1.0, "b": 1.0}
    (bench._report_dir(tmp_path, "m2", "") / "predictions.csv").write_text(
        "file,true,pred,correct,confidence,p_a,p_b\nx,a,,,,0.5,0.5\n"
    )
    with pytest.raises(SystemExit, match="tested on other images"):
        bench.ensemble_rows(["m1", "m2"], tmp_path, classes)


@pytest.mark.real_data
def test_brain_benchmark_split_keeps_near_duplicates_on_one_side(
    brain_pool, tmp_path, capsys, load_benchmark
):
    bench = load_benchmark("real_data")
    args = bench.split_arguments("brain", brain_pool, tmp_path)
    assert args == ["--split-csv", str(tmp_path / "split.csv")]
    out = capsys.readouterr().out
    assert "near-duplicate groups crossing splits: 0 of" in out
    with open(tmp_path / "split.csv", newline="") as handle:
        splits = [row["split"] for row in csv.DictReader(handle)]
    assert len(splits) == 4350
    assert 0.17 <= splits.count("test") / len(splits) <= 0.23


@pytest.mark.real_data
def test_kidney_recipe_pipeline_on_a_real_subset(kidney_pool):
    from kidney_tf.cli.main import build_parser
    from kidney_tf.cli.train import config_from_args
    from kidney_tf.data.pipeline import build_datasets
    from kidney_tf.models.preprocessing import PerImageStandardization

    args = ["train", "--data", str(kidney_pool), "--out", "unused", "--recipe", "kidney-real"]
    config = config_from_args(build_parser().parse_args(args))
    assert config.input_norm == "per-image" and config.ema == 0.99 and config.crop == "body"
    assert config.augment["gamma"] == 0.3 and config.augment["rotation"] == 15
    records = load_source(kidney_pool, validate=False).records
    subset = [r for r in records if r.label in ("Cyst", "Stone")][::40]
    bundle = build_datasets(
        subset, image_size=64, batch_size=8, split="stratified", crop=config.crop,
        augment=config.augment, seed=0, val_fraction=0.2, test_fraction=0.2,
    )  # fmt: skip
    first = np.concatenate([np.asarray(x) for x, _ in bundle.train])
    second = np.concatenate([np.asarray(x) for x, _ in bundle.train])
    assert first.shape[1:] == (64, 64, 3) and np.isfinite(first).all()
    assert first.min() >= 0 and first.max() <= 255
    # augmented afresh each pass (the order-free image sums differ, not only the shuffle)
    sums = [np.sort(batch.sum(axis=(1, 2, 3))) for batch in (first, second)]
    assert not np.allclose(*sums)
    means = np.asarray(PerImageStandardization()(first)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, 127.5, atol=1e-2)


# The command the README's kidney-real figures were measured with (before --recipe existed).
MEASURED_KIDNEY_FLAGS = [
    "--arch",
    "resnet50",
    "--image-size",
    "128",
    "--weights",
    "none",
    "--crop",
    "body",
    "--epochs",
    "15",
    "--lr-schedule",
    "cosine",
    "--patience",
    "0",
    "--ema",
    "0.99",
    "--label-smoothing",
    "0.1",
    "--input-norm",
    "per-image",
    "--split",
    "ranges",
    "--augment-options",
    "rotation=15,zoom=0.15,translation=0.05,brightness=0.2,contrast=0.3,gamma=0.3",
]


def test_recipe_flag_is_the_measured_command_and_flags_override_it(load_benchmark):
    from kidney_tf.cli.main import build_parser
    from kidney_tf.cli.train import config_from_args
    from kidney_tf.recipes import train_settings

    def config(*flags):
        return config_from_args(
            build_parser().parse_args(["train", "--data", "d", "--out", "o", *flags])
        )

    recipe = config("--recipe", "kidney-real")
    measured = config(*MEASURED_KIDNEY_FLAGS)
    assert dataclasses.replace(measured, lr=1e-3, bn_momentum=0.9) == recipe
    assert recipe.resolved_lr() == measured.resolved_lr()
    assert recipe.cam_weight == 0.0  # a train --recipe run is the baseline: no fostering
    assert config("--recipe", "kidney-real", "--ema", "0", "--epochs", "3").ema == 0.0
    brain = train_settings("brain-real")
    assert brain["arch"] == "efficientnetb1" and brain["crop"] == "brain"
    assert brain["freeze_epochs"] == 0 and brain["weights"] is None
    assert not any(k.startswith("finetune_") or k.startswith("phantom_") for k in brain)
    kidney = train_settings("kidney-real")
    kidney["augment"]["gamma"] = 9  # a copy: the recipe itself is unchanged
    assert train_settings("kidney-real")["augment"]["gamma"] == 0.3
    # the brain recipe is the benchmark's measured brain baseline arm, flag for flag
    bench = load_benchmark("real_data")
    measured_brain = config(*bench.ARMS["brain"]["baseline"][1])
    assert config("--recipe", "brain-real") == measured_brain
    with pytest.raises(ValueError, match="unknown recipe 'x'"):
        train_settings("x")


def test_real_data_benchmark_counts_test_series_and_bootstraps_over_them(tmp_path, load_benchmark):
    import cv2

    bench = load_benchmark("real_data")
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64)), (0, 0), 6)
    other = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64)), (0, 0), 6)
    files, labels = [], []
    for label, numbers, picture in (
        ("Cyst", range(1, 5), smooth),  # one series ...
        ("Cyst", range(5, 9), other),  # ... then another patient at the next slice numbers
        ("Cyst", range(40, 44), other),  # a gap of more than 5 numbers: a third series
        ("Normal", range(1, 5), smooth),  # series are counted per class
    ):
        (tmp_path / label).mkdir(exist_ok=True)
        for n in numbers:
            path = tmp_path / label / f"{label}- ({n}).png"
            noisy = picture + rng.normal(0, 2, picture.shape)
            cv2.imwrite(str(path), np.clip(noisy, 0, 255).astype(np.uint8))
            files.append(str(path))
            labels.append(label)
    ids = bench.series_of(files, labels)
    assert ids == ["Cyst#0"] * 4 + ["Cyst#1"] * 4 + ["Cyst#2"] * 4 + ["Normal#0"] * 4

    report = tmp_path / "report"
    report.mkdir()
    correct = [1] * 4 + [0] * 4 + [1] * 4 + [1, 1, 1, 0]
    with (report / "predictions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "true", "pred", "correct"])
        writer.writerows([f, t, t, c] for f, t, c in zip(files, labels, correct))
    result = bench.series_accuracy(report)
    assert result["accuracy"] == pytest.approx(11 / 16)
    assert result["series_per_class"] == {"Cyst": 3, "Normal": 1}
    assert result["series"]["Cyst#1"] == [4, 0.0] and result["series"]["Normal#0"] == [4, 0.75]
    low, high = result["interval"]
    # 3 Cyst series drawn with replacement (all right, all wrong, all right) + the Normal one:
    # all three wrong (p = 1/27 > 2.5 %) is 3/16, none wrong (p = 8/27) 15/16
    assert (low, high) == pytest.approx((3 / 16, 15 / 16))
    row = {"arm": "recipe", "accuracy": result["accuracy"], "series_accuracy": result}
    text = bench.table([row], bench.KIDNEY_CLASSES)
    assert f"| recipe | 0.688 [{low:.2f}, {high:.2f}] |" in text
    assert "the test split holds 4 series (Cyst 3, Normal 1;" in text
