"""The shared vocabulary (``kidney_tf.recipes``): one parser, one name list, read everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kidney_tf import recipes
from kidney_tf.pipelines.reproduce import ReproduceConfig, setting_names


def test_recipes_imports_the_standard_library_only():
    code = (
        "import sys, kidney_tf.recipes; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'numpy', 'cv2')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "value, expected",
    [(None, None), ("none", None), ("", None), ("brain", "brain"), ("body", "body")],
)
def test_parse_crop(value, expected):
    assert recipes.parse_crop(value) == expected


def test_parse_crop_names_the_accepted_values():
    with pytest.raises(ValueError, match="crop must be one of brain, body, none, got 'lungs'"):
        recipes.parse_crop("lungs")


def test_every_crop_mode_and_architecture_is_implemented():
    from kidney_tf.data import crop, crop_tf
    from kidney_tf.models.builders import ARCHITECTURES

    assert tuple(crop.CROPS) == tuple(crop.FOREGROUND_MASKS) == recipes.CROP_MODES
    assert tuple(crop_tf.TF_CROPS) == recipes.CROP_MODES
    assert {k: v["image_size"] for k, v in ARCHITECTURES.items()} == dict(recipes.ARCHITECTURES)
    assert recipes.parse_arch("ResNet-50") == "resnet50"


@pytest.mark.parametrize(
    "pipeline, preset",
    [(name, preset) for name, r in recipes.RECIPES.items() for preset in r.presets],
)
def test_every_preset_is_a_valid_set_of_overrides(pipeline, preset):
    config = ReproduceConfig.preset(pipeline, "out", preset=preset)
    assert set(recipes.recipe(pipeline).presets[preset]) <= setting_names()
    assert config.train.arch == recipes.recipe(pipeline).arch
    assert config.preset_name == preset
    if recipes.recipe(pipeline).fostering:
        finetune = config.finetune_config()
        assert finetune.freeze_epochs == 0 and finetune.cam_weight == config.train.cam_weight


def test_a_preset_is_applied_on_top_of_the_paper():
    kidney = recipes.recipe(recipes.KIDNEY)
    quick = kidney.settings("quick")
    assert quick["crop"] == "body" and quick["image_size"] == 128
    assert kidney.settings("paper")["image_size"] == recipes.ARCHITECTURES["resnet50"]
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        kidney.settings("nope")


def test_cli_choices_come_from_the_vocabulary():
    from kidney_tf.cli.main import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    train = {a.dest: a for a in commands["train"]._actions}
    assert tuple(train["crop"].choices) == recipes.CROP_CHOICES
    assert tuple(train["arch"].choices) == tuple(recipes.ARCHITECTURES)
    assert tuple(train["cam_method"].choices) == recipes.FOSTERING_CAM_METHODS
    explain = {a.dest: a for a in commands["explain"]._actions}
    assert tuple(explain["method"].choices) == recipes.EXPLAIN_METHODS
    reproduce = {a.dest: a for a in commands["reproduce"]._actions}
    assert tuple(reproduce["pipeline"].choices) == recipes.PIPELINES
