"""``kidney-tf benchmark`` and ``benchmarks/kidney_bench``: goals, settings, report format, CLI,
packaging, and a smoke run of the suite (tiny CNN; checks the JSON structure, never timings)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kidney_bench.core import Figure, Goal, format_value
from kidney_bench.suite import SECTIONS, BenchSettings, format_report, run_suite
from kidney_tf.cli.main import main as cli_main

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _keep_logging():
    logger = logging.getLogger("kidney_tf")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


# -------------------------------------------------------------------------------- goals


def test_goal_and_figure_status():
    assert Goal(">=", 5).met(5.0) is True
    assert Goal(">=", 5).met(4.99) is False
    assert Goal("<=", 10).met(-3) is True
    assert Goal("<=", 10).met(None) is None
    with pytest.raises(ValueError, match="operator"):
        Goal("<", 1)
    assert Figure("a", "A", 6.0, "x", Goal(">=", 5)).status == "pass"
    assert Figure("a", "A", 12.0, "%", Goal("<=", 10)).status == "miss"
    assert Figure("a", "A", 3.0, "x").status == "info"
    assert Figure("a", "A", None, "x", Goal(">=", 5)).status == "n/a"
    record = Figure("k", "label", 2.5, "x", Goal("<=", 3), note="n").to_dict()
    assert record == {
        "key": "k",
        "label": "label",
        "value": 2.5,
        "unit": "x",
        "goal": "<= 3x",
        "goal_op": "<=",
        "goal_threshold": 3.0,
        "status": "pass",
        "passed": True,
        "note": "n",
    }


def test_choose_clock():
    from kidney_bench.core import choose_clock, cpu_count

    assert choose_clock("wall", [99.0, 0, 0])[0] == "wall"
    assert choose_clock("cpu", [0.0, 0, 0])[0] == "cpu"
    assert choose_clock("auto", [0.0, 0.0, 0.0])[0] == "wall"
    clock, why = choose_clock("auto", [4.0 * cpu_count(), 0.0, 0.0])
    assert clock == "cpu" and "load average" in why
    with pytest.raises(ValueError, match="clock"):
        choose_clock("gpu")


def test_stopwatch_measures_wall_and_cpu_time():
    import time

    from kidney_bench.core import Stopwatch, measure

    with Stopwatch() as idle:
        time.sleep(0.05)
    assert idle.seconds >= 0.05 and idle.cpu_seconds < idle.seconds
    timing = measure(lambda: sum(i * i for i in range(20000)), 10, repeats=2)
    assert set(timing) == {"seconds", "cpu_seconds", "per_s"}
    assert set(timing["per_s"]) == {"wall", "cpu"} and timing["per_s"]["cpu"] > 0


def test_format_value():
    assert format_value(6.2, "x") == "6.20x"
    assert format_value(1234.5, "images/s") == "1,234 images/s"
    assert format_value(0.0031, "x") == "0.0031x"
    assert format_value(None, "x") == "n/a"


# ----------------------------------------------------------------------------- settings


def test_presets_and_validation():
    quick, full = BenchSettings.from_preset("quick"), BenchSettings.from_preset("full")
    assert quick.preset == "quick" and quick.sections == SECTIONS
    assert set(quick.archs) == {"resnet50", "efficientnetb1"}
    assert full.train_steps * full.train_blocks > quick.train_steps * quick.train_blocks
    assert quick.memory_batch is None  # -> kidney-tf train's default batch size
    assert quick.size_for("resnet50") == 224 and quick.size_for("efficientnetb1") == 240
    assert BenchSettings.from_preset("quick", image_size=128).size_for("efficientnetb1") == 128
    with pytest.raises(ValueError, match="preset"):
        BenchSettings.from_preset("slow")
    with pytest.raises(ValueError, match="unknown benchmark section"):
        BenchSettings.from_preset("quick", sections=("pipeline", "gpu"))
    with pytest.raises(ValueError, match="unknown architecture"):
        BenchSettings.from_preset("quick", archs=("vgg16",))
    with pytest.raises(ValueError, match="cam_weight"):
        BenchSettings.from_preset("quick", cam_weight=0.0)
    with pytest.raises(ValueError, match="pipeline_epochs"):
        BenchSettings.from_preset("quick", pipeline_epochs=1)


def test_memory_batch_is_the_training_default():
    from kidney_bench.memory import default_batch_size
    from kidney_tf.training.trainer import TrainConfig

    assert default_batch_size() == TrainConfig(out="x").batch_size


# -------------------------------------------------------------------------------- report


def _fake_report() -> dict:
    figures = [
        Figure("pipeline.r.cold_ratio", "pipeline (cold) / training, r", 7.0, "x", Goal(">=", 5)),
        Figure("fostering.r.overhead", "fostering overhead, r", 14.0, "%", Goal("<=", 10), "n1"),
        Figure("crop.brain.x", "TF crop / OpenCV crop", 0.5, "x"),
    ]
    return {
        "preset": "quick",
        "elapsed_s": 12.0,
        "machine": {
            "platform": "Linux",
            "cpu_count_usable": 2,
            "cpu_model": "CPU",
            "versions": {"tensorflow": "2.x", "keras": "3.x"},
            "load_average_start": [3.0, 2.0, 1.0],
            "load_average_end": [2.5, 2.0, 1.0],
        },
        "clock": {"used": "cpu", "reason": "load average 3.00 on 2 CPUs"},
        "sections": {"explain": {"data": {"r": {"diagnosis": {"cpu": "eager forward"}}}}},
        "figures": [f.to_dict() for f in figures],
        "summary": {"pass": 1, "miss": 1, "info": 1, "errors": {"memory": "RuntimeError: x"}},
    }


def test_format_report_is_a_plain_table():
    text = format_report(_fake_report())
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("figure"))
    assert lines[header].split() == ["figure", "value", "goal", "status"]
    body = "\n".join(lines[header:])
    assert "7.00x" in body and ">= 5x" in body and "PASS" in body
    assert "14.0%" in body and "<= 10%" in body and "MISS" in body
    assert "info" in body
    assert "machine was busy" in text
    assert "ratios by cpu time: load average 3.00 on 2 CPUs" in text
    assert "explanation cost, r: eager forward" in text
    assert "section memory failed: RuntimeError: x" in text
    assert all(ord(ch) < 0x2500 for ch in text)  # no box-drawing characters (rich-free)


# ----------------------------------------------------------------------------------- CLI


def test_benchmark_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from kidney_tf.cli.main import build_parser\n"
        "build_parser().parse_args(['benchmark', '--quick', '--out', 'x.json'])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    result = subprocess.run(
        [sys.executable, "-m", "kidney_tf", "benchmark", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--quick" in result.stdout and "examples:" in result.stdout


def test_benchmark_fails_in_one_line_without_the_suite(tmp_path):
    """As in a wheel install: the suite lives in the source checkout, not in the package."""
    env = {**os.environ, "KIDNEY_TF_BENCHMARKS": str(tmp_path)}
    code = (
        "import sys\n"
        "from kidney_tf.cli.main import main\n"
        "code = main(['benchmark', '--quick', '--out', sys.argv[1]])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "b.json")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(REPO),
    )
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(err) == 1, result.stderr
    assert err[0].startswith(
        f"kidney-tf benchmark: error: no benchmark suite in {tmp_path.resolve()}"
    )
    assert "KIDNEY_TF_BENCHMARKS" in err[0] and "--benchmarks-dir" in err[0]
    assert not (tmp_path / "b.json").exists()


def test_the_suite_is_found_and_is_not_installed():
    import configparser

    import setuptools

    from kidney_tf.cli.benchmark import load_suite

    assert Path(load_suite(REPO / "benchmarks").__file__).parent == REPO / "benchmarks" / (
        "kidney_bench"
    )
    assert not list((REPO / "kidney_tf").glob("bench/*.py"))  # (a stale __pycache__ may stay)
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    include = [p.strip() for p in cfg["options.packages.find"]["include"].split(",")]
    packages = setuptools.find_packages(str(REPO), include=include)
    assert "kidney_tf.cli" in packages
    assert not [p for p in packages if "bench" in p], packages


def test_benchmark_models_compile_with_the_trainers_step():
    import keras

    from kidney_bench.models import ModelPool
    from kidney_tf import TrainConfig, WeightedCrossEntropy

    model = ModelPool(num_classes=4).trainable("tiny", 16, 0.0)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(TrainConfig(out="x").resolved_lr())
    assert isinstance(model.loss, WeightedCrossEntropy)


def test_benchmark_cli_rejects_unknown_sections(tmp_path, capsys):
    with _keep_logging():
        code = cli_main(
            ["benchmark", "--quick", "--only", "pipeline,gpu", "--out", str(tmp_path / "b.json")]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("kidney-tf benchmark: error: --only: unknown section(s) gpu")
    assert not (tmp_path / "b.json").exists()


# ------------------------------------------------------------------------- smoke run


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    with _keep_logging():
        code = cli_main(["benchmark", "--preset", "smoke", "--out", str(out), "--quiet"])
    assert code == 0
    return out, json.loads(out.read_text())


@pytest.mark.slow
def test_smoke_run_writes_every_section_and_figure(smoke_report):
    out, report = smoke_report
    assert report["schema"] == "kidney_tf.benchmark/1" and report["preset"] == "smoke"
    machine = report["machine"]
    for key in ("platform", "python", "cpu_count", "cpu_count_usable", "memory_total_gib"):
        assert key in machine
    assert machine["cpu_count"] >= 1
    assert {"tensorflow", "keras", "numpy", "opencv", "tf-keras-vis", "kidney_tf"} <= set(
        machine["versions"]
    )
    assert report["summary"]["errors"] == {}
    assert list(report["sections"]) == list(SECTIONS)
    for name, section in report["sections"].items():
        assert section["error"] is None and section["figures"], name
        assert section["seconds"] >= 0

    keys = {f["key"] for f in report["figures"]}
    assert {
        "pipeline.tiny.cold_ratio",
        "pipeline.tiny.cached_ratio",
        "fostering.tiny.overhead",
        "explain.tiny.cost_ratio",
        "stats.summary_basic_vs_explain",
        "crop.brain.tf_vs_opencv_per_image",
        "crop.body.tf_vs_opencv_batched",
        "memory.tiny.peak_rss",
    } <= keys
    for figure in report["figures"]:
        assert set(figure) >= {"key", "label", "value", "unit", "goal", "status", "note"}
        assert figure["status"] in ("pass", "miss", "info", "n/a")
        expected = ("info", "n/a") if figure["goal"] is None else ("pass", "miss", "n/a")
        assert figure["status"] in expected, figure
    goals = {f["key"]: f["goal"] for f in report["figures"]}
    assert goals["pipeline.tiny.cold_ratio"] == ">= 5x"
    assert goals["fostering.tiny.overhead"] == "<= 10%"
    assert goals["explain.tiny.cost_ratio"] == "<= 3x"

    pipeline = report["sections"]["pipeline"]["data"]["tiny"]
    assert len(pipeline["pipeline"]["epochs"]) == 2
    assert pipeline["pipeline"]["images"] == 4 * 3
    assert pipeline["training"]["batch_size"] == 4
    fostering = report["sections"]["fostering"]["data"]["tiny"]
    assert len(fostering["rounds"]) == 2 and fostering["cam_weight"] == {"exact": 0.1}
    assert set(fostering["overhead_percent"]["exact"]) == {"wall", "cpu"}
    assert set(fostering["images_per_sec"]) == {"plain", "exact"}
    memory = report["sections"]["memory"]["data"]["tiny"]
    assert memory["peak_rss_mib"] >= memory["rss_after_import_mib"] > 0
    assert report["clock"]["used"] in ("wall", "cpu") and report["clock"]["reason"]
    assert "eager" in report["sections"]["explain"]["data"]["tiny"]["diagnosis"]["cpu"]
    timings = report["sections"]["explain"]["data"]["tiny"]["timings"]
    assert {"predict", "explainer", "compute_cams", "eager_forward", "graph_cam"} <= set(timings)
    assert {"tape_gradient", "tape_gradient_input_watched"} <= set(timings)
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # atomic: no temp files


def test_run_suite_records_a_failing_section_and_keeps_going(tmp_path, monkeypatch):
    from kidney_bench import suite

    def broken(ctx, result):
        raise RuntimeError("simulated failure")

    monkeypatch.setitem(suite._RUNNERS, "crop", broken)
    settings = BenchSettings.from_preset("smoke", sections=("stats", "crop"))
    report = run_suite(settings, out=tmp_path / "b.json", workdir=tmp_path / "work")
    assert report["summary"]["errors"] == {"crop": "RuntimeError: simulated failure"}
    assert report["sections"]["stats"]["error"] is None
    assert [f["key"].split(".")[0] for f in report["figures"]] == ["stats", "stats"]
    assert json.loads((tmp_path / "b.json").read_text())["summary"] == report["summary"]
    text = format_report(report)
    assert "section crop failed: RuntimeError: simulated failure" in text


def test_fostering_overhead_stops_on_a_non_finite_loss():
    import numpy as np

    from kidney_bench.fostering import fostering_overhead
    from kidney_bench.models import ModelPool

    pool = ModelPool(num_classes=4)
    plain = pool.trainable("tiny", 16, 0.0)
    fostered = pool.trainable("tiny", 16, 0.1, cam_method="gradcam++")
    kernel = plain.get_layer("logits").kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))  # shared by both views
    with pytest.raises(FloatingPointError, match="plain: non-finite training loss"):
        fostering_overhead(plain, fostered, batch_size=4, image_size=16, rounds=1)
