"""compare_reports on two hand-made reports: changes, directions, paired overlays, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kidney_tf.evaluation.compare import (
    compare_metrics,
    compare_reports,
    divergence_warning,
    load_report,
    maps_diverge,
)
from kidney_tf.evaluation.schema import save_cam_examples

CLASSES = ["Cyst", "Normal", "Stone", "Tumor"]


def _metrics(accuracy, entropy, radius, outside, pointing=None, n=40):
    cam = {
        "method": "gradcam++",
        "native_grid": [7, 7],
        "target": "predicted",
        "foreground": "body",
        "n_images": n,
        "entropy": {"mean": entropy},
        "radius": {"mean": radius},
        "snr": {"mean": 3.0},
        "outside_fraction": {"mean": outside},
        "per_class": {c: {"n": 10, "entropy": entropy, "radius": radius} for c in CLASSES},
        "deletion_auc": {"mean": 0.3, "random": 0.5},
    }
    if pointing is not None:
        cam["pointing_game"] = {"mean": pointing, "chance": 0.1}
    return {
        "accuracy": accuracy,
        "macro_f1": accuracy - 0.02,
        "class_names": CLASSES,
        "n_images": n,
        "calibration": {"ece": 0.05},
        "cam": cam,
    }


def _write_report(folder, metrics, files, maps_seed):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rng = np.random.default_rng(maps_seed)
    n = len(files)
    save_cam_examples(
        folder / "cam_examples.npz",
        files=files,
        images=np.full((n, 32, 32, 3), 90, np.uint8),
        maps=rng.random((n, 32, 32)),
        labels=np.arange(n) % 4,
        predictions=np.arange(n) % 4,
        class_names=CLASSES,
        method="gradcam++",
        entropy=rng.random(n),
        radius=rng.random(n),
        snr=rng.random(n) + 1,
    )
    return folder


@pytest.fixture()
def reports(tmp_path):
    files = [f"Cyst/{i}.png" for i in range(6)]
    a = _write_report(tmp_path / "a", _metrics(0.90, 0.6168, 0.4254, 0.10, 0.5), files, 0)
    b = _write_report(
        tmp_path / "b", _metrics(0.92, 0.3313, 0.2394, 0.40, 0.6), files[2:] + ["x.png"], 1
    )
    return a, b


def test_relative_changes_and_directions(reports, tmp_path):
    a, b = reports
    result = compare_reports(
        a, b, tmp_path / "cmp", labels=("baseline", "fostered"), reference="kidney"
    )
    rows = {r["key"]: r for r in result["rows"]}
    assert rows["entropy"]["abs_change"] == pytest.approx(0.3313 - 0.6168)
    assert rows["entropy"]["rel_change"] == pytest.approx((0.3313 - 0.6168) / 0.6168)
    assert rows["entropy"]["improved"] is True  # lower entropy is better
    assert rows["accuracy"]["rel_change"] == pytest.approx(0.02 / 0.90)
    assert rows["accuracy"]["improved"] is True
    assert rows["outside_fraction"]["improved"] is False  # more mass off the body: worse
    assert rows["pointing_game"]["chance_a"] == 0.1
    # The paper's published values as a reference column.
    assert rows["radius"]["reference_a"] == 0.4254 and rows["radius"]["reference_b"] == 0.2394
    assert rows["radius"]["reference_rel_change"] == pytest.approx((0.2394 - 0.4254) / 0.4254)
    assert "iou" not in rows  # absent from both reports
    out = tmp_path / "cmp"
    on_disk = json.loads((out / "comparison.json").read_text())
    assert on_disk["labels"] == ["baseline", "fostered"]
    md = (out / "comparison.md").read_text()
    assert "| CAM normalised entropy | 0.6168 | 0.3313 |" in md and "-46.3%" in md
    html = (out / "comparison.html").read_text()
    assert "data:image/png;base64," in html and "fostered" in html
    # Paired by file id: only the 4 shared images.
    assert sorted(result["paired_files"]) == [f"Cyst/{i}.png" for i in range(2, 6)]
    assert (out / "paired_overlays.png").stat().st_size > 5000


def test_compare_metrics_handles_missing_and_zero():
    a = {"accuracy": 0.0, "cam": {"entropy": {"mean": 0.5}}}
    b = {"accuracy": 0.5, "cam": {}}
    rows = {r["key"]: r for r in compare_metrics(a, b)}
    assert rows["accuracy"]["abs_change"] == 0.5 and rows["accuracy"]["rel_change"] is None
    assert rows["entropy"]["b"] is None and rows["entropy"]["abs_change"] is None


@pytest.mark.parametrize(
    ("own", "evaluated", "diverge"),
    [
        (-0.50, -0.02, True),  # the penalised map halved, the evaluated one barely moved
        (-0.50, -0.20, False),  # both moved: 0.20 is more than a third of 0.50
        (-0.30, 0.099, True),  # opposite signs count by magnitude
        (-0.09, 0.0, False),  # below 10 %: not a divergence
        (0.30, 0.11, False),  # a rise: the evaluated map moved more than a third as much
    ],
)
def test_one_divergence_rule_for_compare_and_the_reproduce_summary(own, evaluated, diverge):
    from kidney_tf.pipelines.summary import _divergence_note

    assert maps_diverge(own, evaluated) is diverge
    assert maps_diverge(own, evaluated) is (abs(own) >= 0.1 and 3 * abs(evaluated) < abs(own))
    rows = [
        {"key": "fostering_entropy", "rel_change": own},
        {"key": "entropy", "rel_change": evaluated},
    ]
    assert (divergence_warning(rows) is not None) is diverge
    results = {  # baselines of 1.0, so the summary's relative changes are own and evaluated
        "baseline": {"penalty_cam_entropy": 1.0, "entropy_native": 1.0},
        "fostered": {"penalty_cam_entropy": 1.0 + own, "entropy_native": 1.0 + evaluated},
    }
    assert (_divergence_note(results) is not None) is diverge


def test_consistency_warnings_and_missing_examples(reports, tmp_path):
    a, b = reports
    metrics = json.loads((b / "metrics.json").read_text())
    metrics["n_images"] = 39
    metrics["cam"]["method"] = "gradcam"
    (b / "metrics.json").write_text(json.dumps(metrics))
    (b / "cam_examples.npz").unlink()
    result = compare_reports(a, b, tmp_path / "cmp2")
    text = " ".join(result["warnings"])
    assert "different numbers of images" in text and "method differs" in text
    assert result["paired_overlays"] is None
    assert "No paired overlays" in (tmp_path / "cmp2" / "comparison.md").read_text()


def test_bad_reports_raise_clear_errors(tmp_path, reports):
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        load_report(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_report(bad)
    with pytest.raises(ValueError, match="unknown reference"):
        compare_reports(*reports, tmp_path / "c", reference="brain")
    with pytest.raises(ValueError, match="labels must differ"):
        compare_reports(*reports, tmp_path / "c", labels=("x", "x"))


def test_compare_cli(reports, tmp_path, capsys):
    from kidney_tf.cli.main import main

    a, b = reports
    out = tmp_path / "cli"
    code = main(
        [
            "compare",
            str(a),
            str(b),
            "--out",
            str(out),
            "--labels",
            "baseline",
            "fostered",
            "--reference",
            "kidney",
        ]
    )
    assert code == 0
    assert (out / "comparison.html").is_file() and (out / "paired_overlays.png").is_file()
    assert "entropy" in capsys.readouterr().out
    assert main(["compare", str(a), str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "metrics.json not found" in capsys.readouterr().err


def test_verdicts_use_paired_bootstrap_intervals_over_images(tmp_path):
    """A -0.4 % change is 'within noise', not 'improved'; a clear one is; chance is reported."""
    rng = np.random.default_rng(0)
    files = [f"Cyst/{i}.png" for i in range(120)]
    entropy_a = rng.uniform(0.5, 0.9, 120)
    noise = rng.normal(0, 0.1, 120)
    cases = {
        "wobble": entropy_a * 0.996 + noise - noise.mean(),  # -0.4 %, images vary by ±0.1
        "sharper": entropy_a - 0.2 + rng.normal(0, 0.02, 120),
    }
    hits_b = (rng.random(120) < 0.12).astype(float)  # pointing game near its chance 0.1

    def report(folder, entropy, hits):
        metrics = _metrics(0.9, float(entropy.mean()), 0.3, 0.1, float(hits.mean()), n=120)
        _write_report(folder, metrics, files[:4], 0)
        rows = ["file,true,pred,correct,confidence,cam_entropy,cam_pointing_game"]
        rows += [f"{f},Cyst,Cyst,1,0.9,{e:.6f},{h:.0f}" for f, e, h in zip(files, entropy, hits)]
        (folder / "predictions.csv").write_text("\n".join(rows) + "\n")
        return folder

    a = report(tmp_path / "a", entropy_a, (rng.random(120) < 0.5).astype(float))
    verdicts = {}
    for name, entropy_b in cases.items():
        b = report(tmp_path / name, entropy_b, hits_b)
        result = compare_reports(a, b, tmp_path / f"cmp_{name}", max_pairs=0)
        verdicts[name] = {r["key"]: r for r in result["rows"]}
    wobble, sharper = verdicts["wobble"]["entropy"], verdicts["sharper"]["entropy"]
    assert wobble["rel_change"] < 0 and wobble["improved"] is None
    assert wobble["verdict"] == "within noise" and wobble["ci_low"] < 0 < wobble["ci_high"]
    assert sharper["improved"] is True and sharper["ci_high"] < 0 and sharper["n_paired"] == 120
    pointing = verdicts["sharper"]["pointing_game"]
    assert pointing["improved"] is False and pointing["vs_chance"] == "at chance"
    md = (tmp_path / "cmp_wobble" / "comparison.md").read_text()
    assert "within noise" in md and "95 % CI of change" in md
