"""Reproduce pipelines: presets, dataset layout detection, resumable stages, summary, end to end."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kidney_tf.pipelines.layout import KIDNEY_FOLDER, find_dataset_root
from kidney_tf.pipelines.reproduce import BRAIN, KIDNEY, ReproduceConfig
from kidney_tf.pipelines.stages import StageMismatchError, StageRunner
from kidney_tf.pipelines.summary import build_summary, summary_table

KIDNEY_CLASSES = ("Cyst", "Normal", "Stone", "Tumor")
BRAIN_CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _copy_classes(src: Path, dst: Path, classes, per_class: int = 2) -> None:
    for c in classes:
        (dst / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / c).iterdir())[:per_class]:
            shutil.copy(f, dst / c / f.name)


# ------------------------------------------------------------------------------------ presets
def test_quick_preset_and_overrides():
    config = ReproduceConfig.preset(KIDNEY, "out", quick=True, epochs=3, weights="None")
    assert config.train.weights is None and config.train.epochs == 3
    assert config.train.image_size == 128 and config.train.bn_momentum == 0.9
    assert config.train.crop == "body" and config.train.split == "stratified"  # phantoms: no slices
    assert config.finetune["unfreeze_top"] == 0  # the demo fosters with the backbone frozen
    assert ReproduceConfig.preset(KIDNEY, "out", quick=False).finetune["unfreeze_top"] is None
    paper = ReproduceConfig.preset(BRAIN, "out", quick=False, data="somewhere")
    assert (paper.train.image_size, paper.train.weights, paper.train.crop, paper.train.split) == (
        240,
        "imagenet",
        "brain",
        "auto",
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pipeline": "nope"}, "unknown pipeline"),
        ({"pipeline": KIDNEY, "cam_weight": -1.0}, "cam_weight"),
        ({"pipeline": KIDNEY, "epochs": 0}, "epochs"),
        ({"pipeline": KIDNEY, "finetune_unfreeze_top": -1}, "finetune_unfreeze_top"),
        ({"pipeline": KIDNEY, "learning_rate": 1.0}, "unknown reproduce settings"),
    ],
)
def test_preset_rejects_bad_settings(kwargs, message):
    pipeline = kwargs.pop("pipeline")
    with pytest.raises(ValueError, match=message):
        ReproduceConfig.preset(pipeline, "out", quick=True, **kwargs)


# ------------------------------------------------------------------------------------- layout
@pytest.mark.real_data
@pytest.mark.parametrize("nesting", ["download", "nested_twice", "dataset_folder"])
def test_kidney_layout_as_downloaded(tmp_path, kidney_ct_sample, nesting):
    inner = {
        "download": tmp_path / KIDNEY_FOLDER,
        "nested_twice": tmp_path / KIDNEY_FOLDER / KIDNEY_FOLDER,
        "dataset_folder": tmp_path / KIDNEY_FOLDER,
    }[nesting]
    _copy_classes(kidney_ct_sample, inner, KIDNEY_CLASSES)
    (tmp_path / "kidneyData.csv").write_text("image_id,path,diag,target,Class\n")
    given = inner if nesting == "dataset_folder" else tmp_path
    layout = find_dataset_root(given, KIDNEY)
    assert layout.root == inner
    assert layout.kind == "class-folders"
    assert layout.class_names == KIDNEY_CLASSES


@pytest.mark.real_data
@pytest.mark.parametrize("given", ["root", "parent", "training"])
def test_brain_layout_training_testing(tmp_path, brain_mri_sample, given):
    root = tmp_path / "brain-tumor-mri-dataset"
    for split in ("Training", "Testing"):
        _copy_classes(brain_mri_sample, root / split, BRAIN_CLASSES)
    path = {"root": root, "parent": tmp_path, "training": root / "Training"}[given]
    layout = find_dataset_root(path, BRAIN)
    assert layout.root == root
    assert layout.kind == "split-folders"
    assert layout.splits == ("Training", "Testing")
    assert layout.class_names == BRAIN_CLASSES


def test_layout_errors_name_what_was_expected(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="CT-KIDNEY-DATASET.*found: images"):
        find_dataset_root(tmp_path, KIDNEY)
    with pytest.raises(FileNotFoundError, match="Training/ and Testing/"):
        find_dataset_root(tmp_path, BRAIN)
    with pytest.raises(FileNotFoundError, match="not found"):
        find_dataset_root(tmp_path / "missing", KIDNEY)
    csv = tmp_path / "manifest.csv"
    csv.write_text("path,label,split,mask_path\n")
    assert find_dataset_root(csv, BRAIN).kind == "manifest"


@pytest.mark.real_data
def test_data_and_verify_stages_on_public_layout(tmp_path, kidney_ct_sample):
    from kidney_tf.pipelines.reproduce import _stage_data, _stage_verify

    _copy_classes(kidney_ct_sample, tmp_path / "dl" / KIDNEY_FOLDER / KIDNEY_FOLDER, KIDNEY_CLASSES)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "dl").rglob("*"))
    config = ReproduceConfig.preset(KIDNEY, str(tmp_path / "run"), quick=True, data=tmp_path / "dl")
    assert config.train.split == "auto"  # public data: leakage-aware grouping when names allow it
    data = _stage_data(config, tmp_path / "run")
    assert data == {
        "root": str(tmp_path / "dl" / KIDNEY_FOLDER / KIDNEY_FOLDER),
        "phantom": False,
        "layout": "class-folders",
    }
    verify = _stage_verify(config, data, tmp_path / "run")
    assert verify["n_images"] == 8 and verify["class_names"] == list(KIDNEY_CLASSES)
    report = json.loads(Path(verify["report"]).read_text())
    assert report["manifest"].startswith("ct_kidney")
    # the user's data is never written to
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "dl").rglob("*")) == before


# ------------------------------------------------------------------------------------- stages
def test_stage_runner_refuses_other_settings(tmp_path):
    StageRunner(tmp_path, params={"epochs": 2, "verbose": 1}).run("data", lambda: {"v": 1})
    same = StageRunner(tmp_path, params={"epochs": 2, "verbose": 0})
    assert same.run("data", lambda: {"v": 2}) == {"v": 1}
    assert same.skipped == ["data"]
    other = StageRunner(tmp_path, params={"epochs": 3, "verbose": 1})
    with pytest.raises(StageMismatchError, match="epochs: 2 -> 3"):
        other.run("data", lambda: {"v": 3})


def test_stage_runner_reports_a_corrupt_record(tmp_path):
    runner = StageRunner(tmp_path)
    runner.record_path("data").write_text("{not json")
    with pytest.raises(ValueError, match="delete it to redo"):
        runner.run("data", dict)


# ------------------------------------------------------------------------------------ summary
def _metrics(acc, entropy, radius, energy, native=0.5):
    return {
        "entropy_native": native,
        "radius_native": 0.3,
        "entropy_floor": 0.2,
        "accuracy": acc,
        "macro_f1": acc - 0.01,
        "entropy": entropy,
        "radius": radius,
        "snr": 3.0,
        "outside_fraction": 0.1,
        "pointing_game": 0.5,
        "energy_in_mask": energy,
        "iou": 0.1,
        "chance": {"pointing_game": 0.02, "energy_in_mask": 0.004, "iou": 0.004},
        "n_images": 120,
        "majority_fraction": 0.25,
        "cam_images": 120,
        "cam_with_mask": 90,
        "cam_grid": [4, 4],
        "shortcut_warnings": [],
    }


def test_summary_table_reads_ours_against_the_paper():
    summary = build_summary(
        config=ReproduceConfig.preset(KIDNEY, "out", quick=True).to_dict(),
        quick=True,
        data_info={"phantom": True, "root": "out/data"},
        trainings={
            "baseline": {"epochs_run": 8, "seconds": 300.0, "test_metrics": {"cam_entropy": 0.7}},
            "fostered": {"epochs_run": 2, "seconds": 90.0, "test_metrics": {"cam_entropy": 0.5}},
        },
        evaluations={
            "baseline": {"metrics": _metrics(0.95, 0.80, 0.30, 0.010)},
            "fostered": {"metrics": _metrics(0.945, 0.50, 0.20, 0.012, native=0.4)},
        },
        comparison={"comparison": "out/reports/comparison"},
        export={"export": "out/export/1"},
        stage_seconds={"data": 1.0},
        resumed=[],
        wall_seconds=400.0,
    )
    rows = {r["key"]: r for r in summary["rows"]}
    assert rows["entropy"]["change"]["rel"] == pytest.approx(-0.375)
    assert rows["entropy"]["paper_change"]["rel"] == pytest.approx((0.3313 - 0.6168) / 0.6168)
    assert rows["accuracy"]["chance"] == 0.25
    assert rows["radius"]["chance"] == pytest.approx(0.408, abs=1e-3)
    checks = {c["check"]: c["passed"] for c in summary["checks"]}
    # no reports (no per-image values): directions fall back to the sign of the change
    assert checks["fostering lowers the Grad-CAM++ entropy (upsampled) beyond noise"] is True
    assert checks["fostering lowers the Grad-CAM++ entropy (native grid) by >= 30 %"] is False
    # training-penalty CAM: 0.7 -> 0.5 is -28.6 %
    assert checks["fostering lowers the CAM entropy of the training penalty by >= 30 %"] is False
    assert rows["penalty_cam_entropy"]["change"]["rel"] == pytest.approx(-2 / 7)
    assert checks["fostering costs <= 1 accuracy point"] is True
    assert checks["fostering raises the CAM SNR beyond noise"] is False  # 3.0 -> 3.0
    assert checks["CAM mass in the lesion mask does not fall beyond noise"] is True
    assert checks["pointing game (lesion) of the fostered model above chance"] is True
    text = summary_table(summary)
    assert (
        "| Grad-CAM++ entropy (upsampled) | ↓ | 0.8000 | 0.5000 | -37.5 % | 0.6168 | 0.3313 | -46.3 %"
        in (text)
    )
    assert "| accuracy | ↑ | 0.9500 | 0.9450 | -0.5 pt |" in text
    assert "NOT the public dataset" in text
    assert "has entropy 0.200" in text and "at most 75.0 % below the baseline's 0.8000" in text
    assert "[PASS]" in text and "SavedModel (TF Serving): out/export/1" in text
    json.dumps(summary)  # strict JSON


def _predictions(folder, pointing, energy, seed):
    """A report folder with only a predictions.csv (per-image values for the noise checks)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = ["file,true,pred,correct,confidence,cam_entropy,cam_pointing_game,cam_energy_in_mask"]
    for i, (hit, mass) in enumerate(zip(pointing, energy)):
        entropy = 0.8 + 0.05 * rng.standard_normal()
        lines.append(f"img{i}.png,Cyst,Cyst,1,0.9,{entropy:.6f},{hit:.0f},{mass:.6f}")
    (folder / "predictions.csv").write_text("\n".join(lines) + "\n")
    return str(folder)


def test_summary_verdicts_compare_against_chance_and_noise(tmp_path):
    """Pointing game 0 vs chance 0.21 is no PASS; a -0.4 % wobble is not a change."""
    rng = np.random.default_rng(0)
    energy = rng.uniform(0.1, 0.4, 200)
    noise = rng.normal(0, 0.1, 200)
    wobble = energy * (1 - 0.004) + noise - noise.mean()  # -0.4 %; images vary by ±0.1
    zeros = np.zeros(200)
    base, fost = _metrics(0.95, 0.8, 0.3, energy.mean()), _metrics(0.95, 0.8, 0.3, wobble.mean())
    for metrics in (base, fost):
        metrics["pointing_game"] = 0.0
        metrics["chance"]["pointing_game"] = 0.21
    summary = build_summary(
        config=ReproduceConfig.preset(KIDNEY, "out", quick=True).to_dict(),
        quick=True,
        data_info={"phantom": True},
        trainings={},
        evaluations={
            "baseline": {"metrics": base, "report": _predictions(tmp_path / "a", zeros, energy, 1)},
            "fostered": {"metrics": fost, "report": _predictions(tmp_path / "b", zeros, wobble, 2)},
        },
        comparison=None,
        export={"export": "x"},
        stage_seconds={},
        resumed=[],
        wall_seconds=1.0,
    )
    checks = {c["check"]: c for c in summary["checks"]}
    assert checks["pointing game (lesion) of the fostered model above chance"]["passed"] is False
    falls = checks["CAM mass in the lesion mask does not fall beyond noise"]
    assert falls["passed"] is True and "95 % CI" in falls["detail"]
    # a real drop is caught
    summary["checks"] = None
    from kidney_tf.pipelines.summary import _checks

    worse = {"baseline": base, "fostered": _metrics(0.95, 0.8, 0.3, energy.mean() - 0.1)}
    per_image = {
        "baseline": {"energy_in_mask": {f"f{i}": v for i, v in enumerate(energy)}},
        "fostered": {"energy_in_mask": {f"f{i}": v - 0.1 for i, v in enumerate(energy)}},
    }
    checks = {c["check"]: c["passed"] for c in _checks(worse, per_image)}
    assert checks["CAM mass in the lesion mask does not fall beyond noise"] is False


# --------------------------------------------------------------------------------------- CLI
def test_cli_parsers_have_examples_and_overrides():
    from kidney_tf.cli.main import build_parser
    from kidney_tf.cli.reproduce import overrides_from_args

    parser = build_parser()
    args = parser.parse_args(
        ["demo", "--out", "x", "--cam-weight", "0.3", "--per-class", "10", "--weights", "none"]
    )
    assert overrides_from_args(args) == {
        "cam_weight": 0.3,
        "phantom_per_class": 10,
        "weights": "none",
        "verbose": 2,
    }
    args = parser.parse_args(["reproduce", BRAIN, "--quick", "--out", "x", "-q"])
    assert args.quick and args.data is None and overrides_from_args(args) == {"verbose": 0}
    for command in ("demo", "reproduce"):
        help_text = parser._subparsers._group_actions[0].choices[command].format_help()
        assert "examples:" in help_text and "--out" in help_text


# ------------------------------------------------------------------------------- end to end
TINY = {
    "image_size": 64,
    "phantom_per_class": 6,
    "phantom_image_size": 96,
    "epochs": 1,
    "batch_size": 8,
    "max_cam_images": 8,
    "faithfulness_images": 2,
    "verbose": 0,
}


@pytest.mark.slow
def test_kidney_pipeline_end_to_end_and_resume(tmp_path, monkeypatch, predict_split):
    import kidney_tf.pipelines.reproduce as rp

    out = tmp_path / "kidney"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("killed during export")

    monkeypatch.setattr(rp, "_export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rp.reproduce(KIDNEY, out, quick=True, finetune_epochs=1, **TINY)
    done = sorted(p.stem for p in (out / "stages").glob("*.json"))
    assert done == sorted(
        ["data", "verify", "train_baseline", "train_fostered", "evaluate_baseline",
         "evaluate_fostered", "compare"]
    )  # fmt: skip
    monkeypatch.undo()

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(rp, "_train", must_not_train)
    summary = rp.reproduce(KIDNEY, out, quick=True, finetune_epochs=1, **TINY)
    assert (
        "train_baseline" in summary["resumed_stages"] and "export" not in summary["resumed_stages"]
    )
    assert (out / "export" / "1" / "saved_model.pb").is_file()
    assert (out / "reports" / "comparison" / "comparison.json").is_file()
    for name in ("baseline", "fostered"):
        # the summary's figures are the saved model's on its test split, recomputed here
        rows = _read_csv(out / "reports" / name / "predictions.csv")
        probabilities, labels, files = predict_split(
            out / name / "model.keras", out / name / "split.csv", image_size=64, crop="body"
        )
        by_file = {row["file"]: row for row in rows}
        assert sorted(by_file) == sorted(files) and summary["results"][name]["n_images"] == len(
            files
        )
        classes = list(KIDNEY_CLASSES)
        reported = np.array([[float(by_file[f][f"p_{c}"]) for c in classes] for f in files])
        np.testing.assert_allclose(reported, probabilities, atol=1e-5)
        assert [classes.index(by_file[f]["true"]) for f in files] == labels.tolist()
        accuracy = float((probabilities.argmax(axis=1) == labels).mean())
        assert summary["results"][name]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
        entropies = [float(r["cam_entropy"]) for r in rows if r["cam_entropy"]]
        assert len(entropies) == summary["results"][name]["cam_images"]
        assert summary["results"][name]["entropy"] == pytest.approx(np.mean(entropies), abs=1e-5)
    assert json.loads((out / "summary.json").read_text())["pipeline"] == KIDNEY
    assert "| Grad-CAM++ entropy (upsampled) |" in (out / "summary.md").read_text()
    # the quick preset fosters the head alone: the backbone's weights are the baseline's
    from kidney_tf._loading import load_model

    before, after = (load_model(out / name / "model.keras") for name in ("baseline", "fostered"))
    for layer in ("conv1_conv", "conv5_block3_3_conv", "conv5_block3_3_bn"):
        for a, b in zip(
            before.get_layer(layer).get_weights(), after.get_layer(layer).get_weights()
        ):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(before.get_layer("logits").kernel, after.get_layer("logits").kernel)
    # the fine-tune evaluated and trained on exactly the baseline's split
    assert (out / "baseline" / "split.csv").read_text() == (
        out / "fostered" / "split.csv"
    ).read_text()
    with pytest.raises(StageMismatchError, match="epochs"):
        rp.reproduce(KIDNEY, out, quick=True, finetune_epochs=1, **{**TINY, "epochs": 2})


@pytest.mark.slow
def test_brain_pipeline_end_to_end(tmp_path):
    from kidney_tf.pipelines.reproduce import reproduce

    out = tmp_path / "brain"
    summary = reproduce(BRAIN, out, quick=True, **TINY)
    assert "Brain MRI" in (out / "summary.md").read_text()
    crop = json.loads((out / "stages" / "crop.json").read_text())["result"]
    assert crop["cropped"] == 24 and crop["masks"] > 0
    assert (out / "data" / "cropped" / "crop_boxes.csv").is_file()
    assert list(summary["results"]) == ["model"]
    assert summary["training"]["model"]["epochs_run"] == 1
    assert summary["results"]["model"]["outside_fraction"] is not None  # brain foreground
    meta = json.loads((out / "export" / "1" / "assets.extra" / "kidney_tf_export.json").read_text())
    assert meta["crop"] == "brain"  # the SavedModel crops raw uploads like the training files


def test_cli_prints_the_summary_table(tmp_path, monkeypatch, capsys):
    import kidney_tf.pipelines.reproduce as rp
    from kidney_tf.cli.main import main

    calls = []

    def fake(pipeline, out, *, quick, data, **overrides):
        calls.append((pipeline, quick, data, overrides))
        return {"fake": True}

    monkeypatch.setattr(rp, "reproduce", fake)
    monkeypatch.setattr(rp, "summary_table", lambda summary: "| metric | table |")
    assert main(["demo", "--out", str(tmp_path), "--epochs", "2"]) == 0
    assert main(["reproduce", BRAIN, "--out", str(tmp_path), "--data", "d", "-q"]) == 0
    assert "| metric | table |" in capsys.readouterr().out
    assert calls == [
        (KIDNEY, True, None, {"epochs": 2, "verbose": 2}),
        (BRAIN, False, "d", {"verbose": 0}),
    ]


def test_cli_reports_a_missing_dataset(tmp_path, capsys):
    from kidney_tf.cli.main import main

    argv = ["reproduce", KIDNEY, "--out", str(tmp_path / "o"), "--data", str(tmp_path / "x")]
    assert main(argv) == 2
    assert "x: data folder not found" in capsys.readouterr().err
