"""The output-path guard: no command writes onto an input, into the input tree, or over a path it
did not write itself (issue 15, cases 1-3 and 6)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_bad_inputs import make_tree, placeholder_model, run_cli, tree_state

from kidney_tf.utils.io import (
    OUTPUT_MARKER,
    atomic_dir,
    check_output_dir,
    check_output_file,
    mark_output_dir,
    remove_stale_temp_dirs,
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.docx").write_bytes(b"years of work")
    (path / "notes.png").write_bytes(b"\x89PNG not really")
    return path


# ------------------------------------------------------------------------------- the guard


def test_guard_accepts_new_empty_and_own_folders_only(tmp_path):
    assert check_output_dir(tmp_path / "new", "evaluate") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", "evaluate", replace=True)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".DS_Store").write_bytes(b"x")
    check_output_dir(hidden, "evaluate")  # written into: hidden files are kept, never replaced
    with pytest.raises(FileExistsError, match="not empty"):
        check_output_dir(hidden, "data crop", replace=True)

    user = _user_folder(tmp_path / "user")
    for replace, overwrite in ((False, False), (True, False), (True, True)):
        with pytest.raises(FileExistsError) as info:
            check_output_dir(user, "evaluate", replace=replace, overwrite=overwrite)
        assert str(user) in str(info.value) and "not an earlier 'kidney-tf evaluate'" in str(
            info.value
        )

    own = mark_output_dir(tmp_path / "own", "evaluate")
    (own / "metrics.json").write_text("{}")
    check_output_dir(own, "evaluate")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        check_output_dir(own, "evaluate", replace=True)
    check_output_dir(own, "evaluate", replace=True, overwrite=True)
    with pytest.raises(FileExistsError, match="holds a 'kidney-tf evaluate' output"):
        check_output_dir(own, "compare")

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "crop_boxes.csv").write_text("path\n")
    check_output_dir(legacy, "data crop", replace=True, overwrite=True, markers=["crop_boxes.csv"])


def test_guard_refuses_inputs_and_the_input_tree(tmp_path):
    data = make_tree(tmp_path / "data", per_class=1)
    image = next((data / "a").iterdir())
    with pytest.raises(ValueError, match="is an input"):
        check_output_dir(data, "evaluate", inputs=[data])
    with pytest.raises(ValueError, match="inside the input folder"):
        check_output_dir(data / "reports", "evaluate", inputs=[data])
    with pytest.raises(ValueError, match="holds the input"):
        check_output_dir(tmp_path, "data crop", inputs=[data], replace=True)
    with pytest.raises(ValueError, match="is an input"):
        check_output_file(image, inputs=[image])
    with pytest.raises(ValueError, match="inside the input folder"):
        check_output_file(data / "verify.json", inputs=[data])
    with pytest.raises(FileExistsError, match="a file is there"):
        check_output_dir(image, "evaluate")
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_output_dir(image / "sub", "evaluate")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        check_output_file(tmp_path, what="report")
    other = tmp_path / "other.json"
    other.write_text("{}")
    with pytest.raises(FileExistsError, match="never replaced"):
        check_output_file(other, is_own=lambda p: False)
    assert check_output_file(other, is_own=lambda p: True) == other


# ------------------------------------------------------------------- case 1: verify --json


def test_verify_json_never_overwrites_an_input_or_a_user_file(tmp_path, capsys):
    root = make_tree(tmp_path / "data", per_class=2)
    image = root / "a" / "a_00_scan.png"
    before = tree_state(root)
    for target in (image, root / "report.json"):
        code, _, err = run_cli(capsys, "data", "verify", "--root", root, "--json", target)
        assert code == 2
        assert err.count("\n") == 1 and str(target) in err and "input" in err
    assert tree_state(root) == before

    user_file = tmp_path / "notes.json"
    user_file.write_text('{"mine": true}')
    code, _, err = run_cli(capsys, "data", "verify", "--root", root, "--json", user_file)
    assert code == 2 and "never replaced" in err and str(user_file) in err
    assert user_file.read_text() == '{"mine": true}'

    folder = tmp_path / "reports"
    folder.mkdir()
    code, _, err = run_cli(capsys, "data", "verify", "--root", root, "--json", folder)
    assert code == 2 and err.count("\n") == 1
    assert f"{folder}: is a folder" in err and "Errno" not in err and ".tmp" not in err

    report = folder / "verify.json"
    code, out, _ = run_cli(capsys, "data", "verify", "--root", root, "--json", report)
    assert code in (0, 1) and f"Report written to {report}" in out
    first = json.loads(report.read_text())
    code, _, _ = run_cli(capsys, "data", "verify", "--root", root, "--json", report)
    assert code in (0, 1)  # an earlier report is replaced
    assert json.loads(report.read_text())["n_images"] == first["n_images"] == 4


# --------------------------------------------------------------------- case 3: data crop --dst


def test_crop_overwrite_replaces_only_an_earlier_crop_output(tmp_path, capsys):
    src = make_tree(tmp_path / "src", per_class=2)
    user = _user_folder(tmp_path / "user")
    before = tree_state(user)
    crop = ("data", "crop", "--src", src, "--size", 24, "--quiet")
    code, _, err = run_cli(capsys, *crop, "--dst", user, "--overwrite")
    assert code == 2 and err.count("\n") == 1
    assert f"{user}: folder is not empty and is not an earlier 'kidney-tf data crop'" in err
    assert tree_state(user) == before

    code, _, err = run_cli(capsys, *crop, "--dst", src / "cropped")
    assert code == 2 and "inside the source folder" in err
    code, _, err = run_cli(capsys, *crop, "--dst", tmp_path)
    assert code == 2 and "contain the source folder" in err

    dst = tmp_path / "dst"
    assert run_cli(capsys, *crop, "--dst", dst)[0] == 0
    assert json.loads((dst / OUTPUT_MARKER).read_text()) == {"command": "data crop"}
    code, _, err = run_cli(capsys, *crop, "--dst", dst)
    assert code == 2 and "pass --overwrite" in err
    (dst / "a" / "stale.png").write_bytes(b"left from an earlier crop")
    assert run_cli(capsys, *crop, "--dst", dst, "--overwrite")[0] == 0
    assert not (dst / "a" / "stale.png").exists() and (dst / "crop_boxes.csv").is_file()

    (dst / OUTPUT_MARKER).unlink()  # an output of an older version: crop_boxes.csv marks it
    assert run_cli(capsys, *crop, "--dst", dst, "--overwrite")[0] == 0


def test_evaluate_compare_explain_refuse_user_folders_and_input_trees(tmp_path, capsys):
    root = make_tree(tmp_path / "data", per_class=2)
    user = _user_folder(tmp_path / "user")
    before = tree_state(user), tree_state(root)
    model = placeholder_model(tmp_path / "model.keras")  # never loaded: the output is refused first
    image = root / "a" / "a_00_scan.png"
    cases = [
        ("evaluate", "--model", model, "--data", root, "--out", user),
        ("evaluate", "--model", model, "--data", root, "--out", root / "report"),
        ("explain", "--model", model, "--image", image, "--out", root / "a"),
        ("explain", "--model", model, "--image", image, "--out", user),
        ("compare", user, root, "--out", root),
        ("data", "figures", "--data", root, "--out", root / "figs"),
    ]
    for argv in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert err.count("\n") == 1 and ("input" in err or "not an earlier" in err), err
    assert (tree_state(user), tree_state(root)) == before


def test_train_refuses_a_user_folder_and_the_data_tree(tmp_path, capsys):
    root = make_tree(tmp_path / "data", per_class=2)
    user = _user_folder(tmp_path / "user")
    before = tree_state(user), tree_state(root)
    train = ("train", "--data", root, "--weights", "none", "--epochs", 1, "--image-size", 32)
    for out in (user, root / "run", root):
        code, _, err = run_cli(capsys, *train, "--out", out)
        assert code == 2 and str(out) in err, err
    assert (tree_state(user), tree_state(root)) == before


# ---------------------------------------------------------- case 6: leftovers of a killed run

KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    from kidney_tf.utils.io import atomic_dir
    with atomic_dir(sys.argv[1]) as tmp:
        (tmp / "half.bin").write_bytes(b"x" * 1000)
        os.kill(os.getpid(), 9)
    """
)


def test_next_run_removes_temp_folders_of_a_killed_run(tmp_path):
    target = tmp_path / "out" / "1"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(target)],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert proc.returncode == -9
    left = [p for p in target.parent.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(".1.tmp.") and not target.exists()
    # A live writer's folder (this process) and an unrelated hidden folder are kept.
    live = target.parent / f".1.tmp.{left[0].name.split('.')[3]}.{os.getpid()}.abc"
    live.mkdir()
    (target.parent / ".1.keep").mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "done").write_text("ok")
    names = sorted(p.name for p in target.parent.iterdir())
    assert names == sorted([".1.keep", live.name, "1"])
    assert remove_stale_temp_dirs(target) == []


def test_crop_cleans_up_after_a_killed_run(tmp_path, capsys):
    src = make_tree(tmp_path / "src", per_class=1)
    dst = tmp_path / "dst"
    dead = _dead_pid()
    leftover = tmp_path / f".dst.tmp.{_host()}.{dead}.x1y2z3"
    leftover.mkdir()
    (leftover / "a").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(leftover / "a" / "half.png")
    assert run_cli(capsys, "data", "crop", "--src", src, "--dst", dst, "--quiet")[0] == 0
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]


def _host() -> str:
    from kidney_tf.utils.io import _host as host

    return host()


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        timeout=60,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)
