"""Atomic writes, the stage runner and the package's cheap import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kidney_tf.pipelines.stages import StageRunner
from kidney_tf.utils.io import atomic_dir, atomic_path, ensure_writable_dir, write_json_atomic


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_write_json_atomic_handles_numpy(tmp_path):
    import numpy as np

    path = write_json_atomic(tmp_path / "a" / "m.json", {"x": np.float32(0.5), "v": np.arange(3)})
    assert json.loads(path.read_text()) == {"x": 0.5, "v": [0, 1, 2]}


def test_atomic_dir_refuses_existing_and_cleans_up(tmp_path):
    target = tmp_path / "export" / "1"
    with atomic_dir(target) as tmp:
        (tmp / "saved_model.pb").write_bytes(b"x")
    assert (target / "saved_model.pb").is_file()
    with pytest.raises(FileExistsError, match="already exists"), atomic_dir(target):
        pass
    with pytest.raises(RuntimeError), atomic_dir(target, overwrite=True) as tmp:
        (tmp / "partial").write_text("x")
        raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["saved_model.pb"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["1"]


def test_ensure_writable_dir_fails_fast(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="not writable"):
        ensure_writable_dir(blocker / "sub")
    assert ensure_writable_dir(tmp_path / "ok").is_dir()


def test_stage_runner_skips_finished_stages(tmp_path):
    calls = []
    runner = StageRunner(tmp_path)
    assert runner.run("a", lambda: calls.append("a") or {"v": 1}) == {"v": 1}
    with pytest.raises(RuntimeError):
        runner.run("b", lambda: (_ for _ in ()).throw(RuntimeError("killed")))
    again = StageRunner(tmp_path)
    assert again.run("a", lambda: calls.append("a2") or {"v": 2}) == {"v": 1}
    assert again.run("b", lambda: {"v": 3}) == {"v": 3}
    assert calls == ["a"]
    assert again.completed() == ["a", "b"]


def test_import_is_lazy_and_quiet():
    code = "import sys, kidney_tf; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False False"
    assert out.stderr == ""


def test_cli_help_lists_the_readme_commands_without_importing_tensorflow():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['kidney-tf', '--help']\n"
        "try:\n"
        "    runpy.run_module('kidney_tf', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    print('EXIT', exc.code, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.splitlines()[-1] == "EXIT 0 False"
    listed = re.findall(r"^    ([a-z]+)\b", out, flags=re.MULTILINE)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = re.findall(r"^\| `kidney-tf ([a-z]+)", readme, flags=re.MULTILINE)
    assert len(listed) == 9 and set(listed) == set(documented), (listed, documented)


def test_unknown_public_name_raises():
    import kidney_tf

    with pytest.raises(AttributeError):
        kidney_tf.does_not_exist  # noqa: B018


def test_atomic_outputs_get_normal_permissions(tmp_path):
    path = write_json_atomic(tmp_path / "m.json", {})
    assert path.stat().st_mode & 0o644 == 0o644
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "d").stat().st_mode & 0o755 == 0o755
