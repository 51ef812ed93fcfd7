"""One file, the same probabilities everywhere: the SavedModel's ``predict_image_bytes``, served
by a process that only has TensorFlow, equals ``kidney-tf evaluate`` (the tf.data pipeline with
its default OpenCV crop backend) on real JPEGs and on the demo's phantoms (PNG)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_export import serve_image_bytes, tiny_cnn

from kidney_tf.cli.main import main
from kidney_tf.data.phantoms import render_phantom
from kidney_tf.export.saved_model import export_saved_model

SIZE = 64
#: Phantoms per crop: (kind, [(class, index)]) at the demo's 160 px and lesion scale 4. Cyst 3
#: is the one whose OpenCV body box was a row taller than the TF box before the two backends
#: shared one nearest-neighbour rule.
PHANTOMS = {
    "body": ("kidney-ct", [("Cyst", 3), ("Cyst", 5), ("Normal", 0), ("Stone", 1), ("Tumor", 2)]),
    "brain": ("brain-mri", [("glioma", 0), ("meningioma", 1), ("notumor", 2), ("pituitary", 3)]),
}


def _tree(out: Path, real: Path, crop: str, per_class: int = 1) -> list[Path]:
    """``per_class`` real JPEGs of every class of ``real`` plus the crop's phantoms."""
    files = []
    for folder in sorted(p for p in real.iterdir() if p.is_dir()):
        for source in sorted(folder.glob("*.jpg"))[:per_class]:
            target = out / folder.name / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            files.append(target)
    kind, picks = PHANTOMS[crop]
    for name, index in picks:
        image, _ = render_phantom(kind, name, index, image_size=160, lesion_scale=4)
        target = out / name / f"phantom_{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image)
        files.append(target)
    return files


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("crop", ["body", "brain"])
def test_bytes_signature_equals_evaluate(crop, kidney_ct_sample, brain_mri_sample, tmp_path):
    real = kidney_ct_sample if crop == "body" else brain_mri_sample
    files = _tree(tmp_path / "data", real, crop)
    names = sorted(p.name for p in (tmp_path / "data").iterdir())
    model = tiny_cnn(size=SIZE, num_classes=len(names), seed=5)
    # sharpen the untrained head so that a pixel moved anywhere moves the probabilities
    logits = model.get_layer("logits")
    logits.set_weights([w * 40.0 for w in logits.get_weights()])
    model.save(tmp_path / "tiny.keras")
    export = export_saved_model(
        model, tmp_path / "export" / "1", class_names=names, crop=crop, include_explain=False
    )

    args = ["evaluate", "--model", str(tmp_path / "tiny.keras"), "--data", str(tmp_path / "data")]
    args += ["--split", "all", "--crop", crop, "--max-cam-images", "0", "--out"]
    assert main([*args, str(tmp_path / "report"), "-q"]) == 0
    with open(tmp_path / "report" / "predictions.csv", newline="") as fh:
        rows = {row["file"]: row for row in csv.DictReader(fh)}
    evaluated = np.array([[float(rows[str(f)][f"p_{c}"]) for c in names] for f in files])

    served = serve_image_bytes(export, files, tmp_path, timeout=600)

    # predictions.csv keeps 6 decimals
    difference = np.abs(np.array(served["probabilities"]) - evaluated)
    worst = int(difference.max(axis=1).argmax())
    assert difference.max() < 1e-4, f"{files[worst].name}: {difference.max():.3g}"
    assert served["class_name"] == [rows[str(f)]["pred"] for f in files]
