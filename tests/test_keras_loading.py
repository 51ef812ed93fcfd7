"""``import kidney_tf`` then plain ``keras.models.load_model``: the Keras convention, in fresh processes."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import kidney_tf as ktf

    base = ktf.build_classifier("resnet50", num_classes=2, image_size=32, weights=None)
    path = tmp_path_factory.mktemp("keras") / "fostered.keras"
    ktf.CamFosteringModel.from_classifier(base, cam_weight=0.1).save(path)
    return path


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "imports", ["import kidney_tf, keras", "import keras, kidney_tf"], ids=["first", "after"]
)
def test_keras_load_model_after_importing_kidney_tf(saved, imports):
    result = _run(
        f"{imports}\nmodel = keras.models.load_model({str(saved)!r})\n"
        "print(type(model).__name__, model.cam_weight)"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["CamFosteringModel", "0.1"]


def test_without_kidney_tf_keras_names_the_missing_class_and_custom_objects_work(saved):
    plain = _run(f"import keras\nkeras.models.load_model({str(saved)!r})")
    assert plain.returncode != 0 and "CamFosteringModel" in plain.stderr
    documented = _run(
        "import keras, kidney_tf\n"
        f"model = keras.models.load_model({str(saved)!r}, "
        "custom_objects=kidney_tf.custom_objects())\nprint(type(model).__name__)"
    )
    assert documented.returncode == 0, documented.stderr[-2000:]
    assert documented.stdout.strip() == "CamFosteringModel"


def test_import_kidney_tf_stays_tensorflow_free():
    result = _run(
        "import sys, kidney_tf\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
