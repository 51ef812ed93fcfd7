"""Safety: models load in Keras safe mode, configs/manifests are data (never code), and manifest
paths cannot leave the data root."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import kidney_tf
from kidney_tf.data.reading import read_manifest

PACKAGE_DIR = Path(kidney_tf.__file__).resolve().parent
PAYLOAD = "__import__('os').system('touch {marker}')"


def _png(path: Path, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), 90, np.uint8)).save(path)
    return path


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "split", "mask_path"])
        writer.writeheader()
        writer.writerows(rows)
    return path


# ----------------------------------------------------------------------------- model loading


def _lambda_model(marker: Path) -> keras.Model:
    """A model whose Lambda layer touches ``marker`` whenever its function runs."""
    code = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]"
    inputs = keras.Input((8,))
    x = keras.layers.Lambda(eval(code), name="payload")(inputs)  # test fixture only
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_load_model_refuses_lambda_layers_without_running_them(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "lambda.keras"
    _lambda_model(marker).save(path)
    marker.unlink()  # building the model ran the function once; loading must not

    with pytest.raises(ValueError) as info:
        kidney_tf.load_model(path)
    message = str(info.value)
    assert str(path) in message
    assert "lambda" in message.lower() or "safe_mode" in message
    assert not marker.exists()

    # Control: without safe mode Keras WOULD run the payload, so the refusal above matters.
    keras.models.load_model(path, safe_mode=False)
    assert marker.exists()


def test_load_model_reads_a_safe_model(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(inputs))
    model.save(tmp_path / "plain.keras")
    loaded = kidney_tf.load_model(tmp_path / "plain.keras")
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# ------------------------------------------------------------------- data, never evaluated


def test_manifest_csv_code_strings_are_plain_data(tmp_path):
    marker = tmp_path / "pwned"
    payload = PAYLOAD.format(marker=marker)
    _png(tmp_path / "a" / "img.png")
    manifest = _write_csv(
        tmp_path / "manifest.csv",
        [
            {"path": "a/img.png", "label": payload, "split": "", "mask_path": ""},
            {"path": payload, "label": "b", "split": "", "mask_path": ""},
        ],
    )
    result = read_manifest(manifest)
    assert [r.label for r in result.records] == [payload]
    assert len(result.bad_files) == 1 and "file not found" in result.bad_files[0].reason
    assert not marker.exists()


def test_manifest_csv_code_in_split_column_is_rejected_as_data(tmp_path):
    marker = tmp_path / "pwned"
    _png(tmp_path / "a" / "img.png")
    manifest = _write_csv(
        tmp_path / "manifest.csv",
        [{"path": "a/img.png", "label": "a", "split": PAYLOAD.format(marker=marker)}],
    )
    with pytest.raises(ValueError, match="manifest.csv:2"):
        read_manifest(manifest)
    assert not marker.exists()


def test_dataset_manifest_json_strings_are_data(tmp_path):
    from kidney_tf.data.manifests import load_manifest

    marker = tmp_path / "pwned"
    payload = PAYLOAD.format(marker=marker)
    path = tmp_path / "evil.json"
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "name": payload,
                "title": payload,
                "classes": [payload, "b"],
                "notes": [payload],
            }
        )
    )
    manifest = load_manifest(path)
    assert manifest.name == payload and manifest.classes == (payload, "b")
    assert not marker.exists()


def test_training_and_augment_configs_are_data(tmp_path):
    from kidney_tf.data.augment import AugmentConfig
    from kidney_tf.training.trainer import TrainConfig

    marker = tmp_path / "pwned"
    payload = PAYLOAD.format(marker=marker)
    config = TrainConfig.from_dict({"out": payload, "data": payload, "arch": payload})
    assert config.arch == payload
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"out": "x", payload: 1})
    with pytest.raises(ValueError, match="unknown AugmentConfig keys"):
        AugmentConfig.from_dict({payload: True})
    assert not marker.exists()


def test_evaluate_run_config_json_is_parsed_not_evaluated(tmp_path, capsys):
    from kidney_tf.cli.main import main
    from kidney_tf.models.builders import Classifier

    marker = tmp_path / "pwned"
    payload = PAYLOAD.format(marker=marker)
    run = tmp_path / "run"
    run.mkdir()
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(2, 3, name="last_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(
        keras.layers.Dense(2, name="logits")(x)
    )
    Classifier(inputs, outputs, class_names=["a", "b"]).save(run / "model.keras")
    _write_csv(run / "split.csv", [{"path": "/nowhere/a/x.png", "label": "a", "split": "test"}])
    (run / "config.json").write_text(json.dumps({"train": {"data": payload, "seed": 1}}))
    # The run's data folder is a code string: it is used as a (missing) folder name, nothing more.
    code = main(["evaluate", "--model", str(run / "model.keras"), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "data root folder not found" in capsys.readouterr().err
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = (
                func.value.id
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                else ""
            )
            yield node, owner, name


UNSAFE_BUILTINS = ("eval", "exec", "compile", "__import__")


def _unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """eval/exec/pickle/marshal/yaml.load, np.load(allow_pickle=True) and any ``load_model``
    (``keras.models.``, ``models.``, ``tf.keras.models.`` or bare) not left in safe mode."""
    problems = []
    for node, owner, name in _calls(ast.parse(source, filename=filename)):
        where = f"{filename}:{node.lineno}"
        flags = {k.arg: k.value for k in node.keywords}
        if owner == "" and isinstance(node.func, ast.Name) and name in UNSAFE_BUILTINS:
            problems.append(f"{where}: {name}()")
        if owner in ("pickle", "marshal", "dill", "cloudpickle") and name.startswith("load"):
            problems.append(f"{where}: {owner}.{name}()")
        if owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
            problems.append(f"{where}: yaml.{name}()")
        if name == "load" and owner in ("np", "numpy"):
            value = flags.get("allow_pickle")
            if isinstance(value, ast.Constant) and value.value is True:
                problems.append(f"{where}: np.load(allow_pickle=True)")
        if name == "load_model" and "safe_mode" in flags:
            value = flags["safe_mode"]
            if not (isinstance(value, ast.Constant) and value.value is True):
                problems.append(f"{where}: load_model(safe_mode={ast.unparse(value)})")
    return problems


def test_unsafe_call_scan_catches_every_form():
    forms = [
        "keras.models.load_model(p, safe_mode=False)",
        "tf.keras.models.load_model(p, safe_mode=False)",
        "models.load_model(p, safe_mode=False)",
        "load_model(p, safe_mode=flag)",
        "saving.load_model(p, compile=False, safe_mode=0)",
        "eval(text)",
        "pickle.loads(blob)",
        "np.load(f, allow_pickle=True)",
        "yaml.load(f)",
    ]
    for form in forms:
        assert len(_unsafe_calls(form)) == 1, form
    safe = "keras.models.load_model(p)\nkeras.models.load_model(p, safe_mode=True)\nre.compile(x)"
    assert _unsafe_calls(safe) == []


def test_package_never_evaluates_or_unpickles_data():
    """No eval/exec/pickle/marshal/yaml.load in kidney_tf; np.load never allows pickles; every
    load_model stays in safe mode."""
    problems = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        problems += _unsafe_calls(
            path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE_DIR))
        )
    assert problems == []


# --------------------------------------------------------------------- paths stay in the root


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    _png(root / "a" / "in.png")
    _png(tmp_path / "outside.png")
    return root


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("path", "../outside.png", "escapes the data root"),
        ("path", "a/../../outside.png", "escapes the data root"),
        ("path", "ABSOLUTE", "absolute path"),
        ("mask_path", "../outside.png", "escapes the data root"),
        ("mask_path", "ABSOLUTE", "absolute path"),
    ],
)
def test_manifest_paths_cannot_escape_the_data_root(data_root, column, value, reason):
    outside = str(data_root.parent / "outside.png")
    row = {"path": "a/in.png", "label": "a", "split": "", "mask_path": ""}
    row[column] = outside if value == "ABSOLUTE" else value
    manifest = _write_csv(data_root / "manifest.csv", [row])
    with pytest.raises(ValueError, match=reason) as info:
        read_manifest(manifest)
    assert "manifest.csv:2" in str(info.value)


def test_explicit_root_accepts_absolute_paths_inside_it_only(data_root):
    inside = str(data_root / "a" / "in.png")
    outside = str(data_root.parent / "outside.png")
    manifest = _write_csv(
        data_root.parent / "split.csv", [{"path": inside, "label": "a", "split": "test"}]
    )
    assert [r.path for r in read_manifest(manifest, root=data_root).records] == [inside]
    _write_csv(manifest, [{"path": outside, "label": "a", "split": "test"}])
    with pytest.raises(ValueError, match="escapes the data root"):
        read_manifest(manifest, root=data_root)


def test_pipeline_refuses_escaping_manifests(data_root):
    from kidney_tf.data.pipeline import build_datasets

    manifest = _write_csv(
        data_root / "manifest.csv", [{"path": "../outside.png", "label": "a", "split": "train"}]
    )
    with pytest.raises(ValueError, match="escapes the data root"):
        build_datasets(manifest, image_size=16, batch_size=1)


def test_manifest_symlink_cannot_escape_the_data_root(tmp_path):
    import pytest

    from kidney_tf.data.reading import read_manifest

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"not really an image")
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "link.png").symlink_to(outside / "secret.png")
    manifest = root / "manifest.csv"
    manifest.write_text("path,label,split,mask_path\na/link.png,a,,\n")
    with pytest.raises(ValueError, match="leads outside the data root"):
        read_manifest(manifest, validate=False)


def test_every_subprocess_in_the_tests_has_a_timeout():
    """A hung child must fail its test, never block CI: run/check_output/call and the waits on a
    Popen all pass ``timeout=``."""
    missing = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node, owner, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            subprocess_call = owner == "subprocess" and name in (
                "run", "call", "check_call", "check_output"
            )  # fmt: skip
            popen_wait = isinstance(node.func, ast.Attribute) and name in ("wait", "communicate")
            if (subprocess_call or popen_wait) and "timeout" not in {k.arg for k in node.keywords}:
                missing.append(f"{path.name}:{node.lineno}: {ast.unparse(node.func)}()")
    assert missing == []
