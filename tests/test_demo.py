"""``kidney-tf demo``: the kidney pipeline's quick preset on phantoms (the run itself is too long
for tests; ``test_reproduce.py`` runs the same pipeline end to end with tiny settings)."""

from __future__ import annotations

import pytest

from kidney_tf.pipelines.reproduce import KIDNEY, ReproduceConfig


def test_demo_runs_the_kidney_quick_pipeline_on_phantoms(tmp_path, monkeypatch, capsys):
    import kidney_tf.pipelines.reproduce as rp
    from kidney_tf.cli.main import main

    seen = {}

    def fake(pipeline, out, *, quick, data, **overrides):
        seen.update(pipeline=pipeline, out=out, quick=quick, data=data, **overrides)
        return {}

    monkeypatch.setattr(rp, "reproduce", fake)
    monkeypatch.setattr(rp, "summary_table", lambda summary: "SUMMARY")
    argv = ["demo", "--out", str(tmp_path), "--cam-weight", "0.3", "--finetune-lr", "5e-5"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == "SUMMARY"
    assert seen == {
        "pipeline": KIDNEY,
        "out": str(tmp_path),
        "quick": True,
        "data": None,
        "cam_weight": 0.3,
        "finetune_lr": 5e-5,
        "verbose": 2,
    }


def test_demo_has_no_data_option():
    from kidney_tf.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--out", "x", "--data", "somewhere"])


def test_demo_preset_is_resnet50_from_scratch_on_phantoms():
    config = ReproduceConfig.preset(KIDNEY, "out", quick=True)
    assert config.data is None and config.train.split == "stratified"
    assert config.train.weights is None and config.train.image_size == 128
    assert config.train.bn_momentum == 0.9  # 0.99 leaves eval-mode accuracy at chance from scratch
    assert config.train.cam_weight > 0 and config.train.crop == "body"
    # fostering penalises the map the evaluation measures (Grad-CAM++ of a GAP + dense head)
    assert config.train.cam_method == "gradcam++"
    # conspicuous lesions: at 1.0 a from-scratch ResNet-50 stays near 0.5 accuracy on a CPU budget
    assert config.phantom_lesion_scale > 1.0
