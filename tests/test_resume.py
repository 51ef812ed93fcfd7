"""A ``kidney-tf train`` process killed (SIGKILL) mid-epoch resumes when the same command runs
again, and ends with the same result as an uninterrupted run with the same seed.

ResNet-50 at 32 px from scratch on kidney-CT phantoms, 2 epochs of 4 steps, a backup every 2.
The uninterrupted reference run goes alongside the run that gets killed (two processes).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TIMEOUT = 600  # seconds for any one training process (a hang fails the test, never blocks CI)


def _command(data: Path, out: Path, backup_every: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "kidney_tf", "train", "--data", str(data), "--out", str(out),
        "--arch", "resnet50", "--image-size", "32", "--weights", "none", "--epochs", "2",
        "--batch-size", "8", "--patience", "0", "--lr-schedule", "constant",
        "--deterministic", "--backup-every", str(backup_every),
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def _start(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env(), start_new_session=True
    )


def _finish(process: subprocess.Popen, log: Path) -> str:
    try:
        process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        pytest.fail(f"training hung; log:\n{log.read_text()[-3000:]}")
    text = log.read_text()
    assert process.returncode == 0, text[-3000:]
    return text


def _kill_mid_epoch(process: subprocess.Popen, backup: Path, log: Path) -> dict:
    """SIGKILL the run once its backup says: epoch 2 (index 1) started, some steps done."""
    state_file = backup / "state.json"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"run ended before it could be killed; log:\n{log.read_text()[-3000:]}")
        try:
            state = json.loads(state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = None
        if state and state["epoch"] == 1 and state["step"] >= 1:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            return state
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail("no mid-epoch backup appeared in time")


def _epochs(run: Path) -> list[str]:
    with (run / "history.csv").open(newline="") as fh:
        return [row["epoch"] for row in csv.DictReader(fh)]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    from kidney_tf.data.phantoms import generate_phantoms

    data = tmp_path / "phantoms"
    generate_phantoms("kidney-ct", data, per_class=12, image_size=32)
    reference, run = tmp_path / "reference", tmp_path / "run"

    # The backup frequency may differ between runs (it does not change the result).
    ref_process = _start(_command(data, reference, 0), tmp_path / "reference.log")
    victim = _start(_command(data, run), tmp_path / "killed.log")
    state = _kill_mid_epoch(victim, run / "backup", tmp_path / "killed.log")
    assert (run / "config.json").is_file() and not (run / "model.keras").exists()
    assert _epochs(run) == ["0"]  # the first epoch was logged before the kill

    resumed = subprocess.run(
        _command(data, run), capture_output=True, text=True, env=_env(), timeout=TIMEOUT
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resumed and finished: {run}" in resumed.stdout
    assert f"epoch 2, step {state['step']}" in resumed.stdout + resumed.stderr
    assert "Epoch 1/2" not in resumed.stdout  # epoch 1 is not trained again
    _finish(ref_process, tmp_path / "reference.log")

    for name in ("model.keras", "best.keras", "history.csv", "curves.png", "test_metrics.json"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    assert _epochs(run) == _epochs(reference) == ["0", "1"]

    ref_metrics = json.loads((reference / "test_metrics.json").read_text())
    run_metrics = json.loads((run / "test_metrics.json").read_text())
    assert run_metrics == pytest.approx(ref_metrics, rel=1e-4, abs=1e-5)

    from kidney_tf._loading import load_model

    expected = load_model(reference / "model.keras").get_weights()
    actual = load_model(run / "model.keras").get_weights()
    for a, b in zip(expected, actual):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    again = subprocess.run(
        _command(data, run), capture_output=True, text=True, env=_env(), timeout=TIMEOUT
    )
    assert again.returncode == 2 and "already finished" in again.stderr
