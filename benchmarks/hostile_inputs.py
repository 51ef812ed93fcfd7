"""Hostile and careless command lines against a user's files: the bad-input rerun of issue 15.

Builds a user's world in ``DIR/world`` (a small class-folder dataset, the user's own files and
folders next to it, a tiny model, manifests good and bad, a DICOM-like file, corrupt, truncated,
zero-byte and huge images), snapshots every file (sha256, size, mtime), then runs each case as
``python -m kidney_tf ...`` in a subprocess (cwd ``DIR/world``, with a timeout) and checks:

- no Python traceback on stderr;
- the exit status (bad input: 1 or 2, with an error line naming the file or argument);
- the snapshot: no file modified or deleted, nothing created outside the case's own output paths
  (a case's outputs are the only paths it may write; temp folders of a killed run must be gone
  after the rerun).

Writes ``DIR/report.md`` (case, command, exit status, first error line, user files modified, wall
time) and ``DIR/report.json``, and prints ``N cases, M with a traceback, K user files modified``.
Exit status 0 when every case passed, 1 otherwise.

Usage::

    nice -n 10 python benchmarks/hostile_inputs.py --out /tmp/hostile          # every case
    python benchmarks/hostile_inputs.py --out /tmp/hostile --no-tf             # no TensorFlow
    python benchmarks/hostile_inputs.py --out /tmp/hostile --only 'export-*,crop-kill*'
    python benchmarks/hostile_inputs.py --list
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("Cyst", "Normal")
SIZE = 64  # px of the dataset images
MODEL_SIZE = 32  # input size of the tiny model

# --------------------------------------------------------------------------------- the cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One command line and what it must do.

    ``expect``: ``error`` (exit 1 or 2 and an error line), ``ok`` (exit 0), ``checked`` (exit 0
    or 1: a check that reports problems, e.g. ``data verify``), ``usage`` (exit 2, the usage). ``outputs``: paths (relative to
    the world) the case may create or replace. ``mentions``: text the error line must contain
    (the file or argument it names). ``kill``: a glob (relative to the world) of the temp folder
    of the command's atomic write: the first run is killed with SIGKILL once it holds a file,
    then the command runs again and must succeed and leave no temp folder. ``tf``: the case
    imports TensorFlow (slow on a busy machine).
    """

    name: str
    args: tuple[str, ...]
    expect: str = "error"
    outputs: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    kill: str | None = None
    tf: bool = False
    timeout: float = 300.0

    @property
    def command(self) -> str:
        return shlex.join(["kidney-tf", *self.args])


def C(name: str, command: str, expect: str = "error", **kw) -> Case:  # noqa: N802 - table row
    """A case from a ``kidney-tf ...`` command string (shell quoting)."""
    args = shlex.split(command)
    assert args[0] == "kidney-tf", command
    for key in ("outputs", "mentions"):
        if isinstance(kw.get(key), str):
            kw[key] = (kw[key],)
    return Case(name, tuple(args[1:]), expect, **kw)


M = "models/tiny.keras"  # the user's trained model (a tiny Keras classifier)
IMG = "data/Cyst/cyst_000.png"
BAD = "data_bad/Cyst"

# fmt: off
CASES: tuple[Case, ...] = (
    # ------------------------------------------------------------------- help, no command
    C("help", "kidney-tf --help", "ok"),
    C("no-command", "kidney-tf", "usage"),
    C("unknown-command", "kidney-tf trian --data data", mentions="trian"),
    # ------------------------------------------------------------------------ data verify
    C("verify-ok", "kidney-tf data verify --root data", "checked"),
    C("verify-json-onto-input-image", f"kidney-tf data verify --root data --json {IMG}",
      mentions=IMG),
    C("verify-json-inside-root", "kidney-tf data verify --root data --json data/verify.json",
      mentions="data/verify.json"),
    C("verify-json-onto-user-file", "kidney-tf data verify --root data --json notes.png",
      mentions="notes.png"),
    C("verify-json-folder", "kidney-tf data verify --root data --json reports", mentions="reports"),
    C("verify-json-new", "kidney-tf data verify --root data --json out/verify.json --no-duplicates",
      "checked",
      outputs="out/verify.json"),
    C("verify-json-own-again", "kidney-tf data verify --root data --json out/verify.json "
      "--no-duplicates", "checked", outputs="out/verify.json"),
    C("verify-json-onto-manifest", "kidney-tf data verify --root lists/manifest.csv --json "
      "lists/manifest.csv", mentions="lists/manifest.csv"),
    C("verify-root-missing", "kidney-tf data verify --root nowhere", mentions="nowhere"),
    C("verify-root-is-a-file", "kidney-tf data verify --root notes.png", mentions="notes.png"),
    C("verify-root-empty", "kidney-tf data verify --root empty", mentions="empty"),
    C("verify-root-empty-classes", "kidney-tf data verify --root empty_classes",
      mentions="empty_classes"),
    C("verify-bad-files", "kidney-tf data verify --root data_bad", "checked"),
    C("verify-bad-files-strict", "kidney-tf data verify --root data_bad --strict",
      mentions="data_bad"),
    C("verify-max-distance-negative", "kidney-tf data verify --root data --max-distance -1",
      mentions="--max-distance"),
    C("verify-workers-zero", "kidney-tf data verify --root data --workers 0", mentions="--workers"),
    C("verify-unknown-manifest", "kidney-tf data verify --root data --manifest ct_kidnye",
      mentions="ct_kidnye"),
    C("verify-manifest-not-json", "kidney-tf data verify --root data --manifest notes.png",
      mentions="notes.png"),
    C("verify-split-csv-not-csv", "kidney-tf data verify --root data --split-csv notes.png",
      mentions="notes.png"),
    C("verify-manifest-bad-columns", "kidney-tf data verify --root lists/bad_columns.csv",
      mentions="lists/bad_columns.csv"),
    C("verify-manifest-escaping", "kidney-tf data verify --root lists/escaping.csv",
      mentions="lists/escaping.csv"),
    C("verify-manifest-absolute", "kidney-tf data verify --root lists/absolute.csv",
      mentions="lists/absolute.csv"),
    C("verify-manifest-no-label", "kidney-tf data verify --root lists/no_label.csv",
      mentions="lists/no_label.csv"),
    C("verify-manifest-missing-file", "kidney-tf data verify --root lists/missing_file.csv",
      "checked"),
    C("verify-manifest-empty", "kidney-tf data verify --root lists/empty.csv",
      mentions="lists/empty.csv"),
    C("verify-max-pixels", "kidney-tf data verify --root huge --max-pixels 5000", "checked"),
    C("verify-dicom", "kidney-tf data verify --root dicom", "checked"),
    # -------------------------------------------------------------------------- data crop
    C("crop-inside-source", "kidney-tf data crop --src data --dst data/cropped",
      mentions="data/cropped"),
    C("crop-around-source", "kidney-tf data crop --src data --dst .", mentions="."),
    C("crop-onto-user-folder-overwrite", "kidney-tf data crop --src data --dst thesis --overwrite",
      mentions="thesis"),
    C("crop-onto-user-file-overwrite", "kidney-tf data crop --src data --dst notes.png --overwrite",
      mentions="notes.png"),
    C("crop-onto-export", "kidney-tf data crop --src data --dst serving_user --overwrite",
      mentions="serving_user"),
    C("crop-src-is-a-file", "kidney-tf data crop --src notes.png --dst crops/x",
      mentions="notes.png"),
    C("crop-size-negative", "kidney-tf data crop --src data --dst crops/x --size -3",
      mentions="--size"),
    C("crop-unknown-mode", "kidney-tf data crop --src data --dst crops/x --mode lungs",
      mentions="lungs"),
    C("crop-new", "kidney-tf data crop --src data --dst crops/a --size 32 -q", "ok",
      outputs="crops/a"),
    C("crop-own-again", "kidney-tf data crop --src data --dst crops/a --size 32 -q",
      mentions="--overwrite"),
    C("crop-own-overwrite", "kidney-tf data crop --src data --dst crops/a --size 32 -q --overwrite",
      "ok", outputs="crops/a"),
    C("crop-bad-files", "kidney-tf data crop --src data_bad --dst crops/bad --size 32 -q", "ok",
      outputs="crops/bad"),
    C("crop-empty", "kidney-tf data crop --src empty --dst crops/empty", mentions="empty",
      outputs="crops/empty"),
    C("crop-max-pixels", "kidney-tf data crop --src huge --dst crops/huge --size 32 -q "
      "--max-pixels 5000", "ok", outputs="crops/huge"),
    C("crop-kill-and-rerun", "kidney-tf data crop --src big --dst crops/big --size 32", "ok",
      outputs="crops/big", kill="crops/.big.tmp.*"),
    # ------------------------------------------------------------------------ data figures
    C("figures-inside-data", "kidney-tf data figures --data data --out data/figures",
      mentions="data/figures"),
    C("figures-onto-user-folder", "kidney-tf data figures --data data --out thesis",
      mentions="thesis"),
    C("figures-manifest-escaping", "kidney-tf data figures --manifest lists/escaping.csv "
      "--out figures/esc", mentions="lists/escaping.csv", outputs="figures/esc"),
    C("figures-n-augment-negative", "kidney-tf data figures --data data --out figures/x "
      "--n-augment -1", mentions="--n-augment"),
    # ------------------------------------------------------------------------ data phantom
    C("phantom-onto-user-folder", "kidney-tf data phantom --kind kidney-ct --out thesis",
      mentions="thesis"),
    C("phantom-onto-user-file", "kidney-tf data phantom --kind kidney-ct --out notes.png",
      mentions="notes.png"),
    C("phantom-onto-dataset", "kidney-tf data phantom --kind kidney-ct --out data",
      mentions="data"),
    C("phantom-unknown-kind", "kidney-tf data phantom --kind lung-ct --out ph", mentions="lung-ct"),
    C("phantom-lesion-scale-nan", "kidney-tf data phantom --kind kidney-ct --out ph "
      "--lesion-scale nan", mentions="lesion"),
    C("phantom-new", "kidney-tf data phantom --kind brain-mri --out ph --per-class 1 "
      "--image-size 32 -q", "ok", outputs="ph"),
    C("phantom-other-parameters", "kidney-tf data phantom --kind brain-mri --out ph "
      "--per-class 1 --image-size 32 --seed 3", mentions="ph"),
    # ------------------------------------------------------------------------------ train
    C("train-onto-user-folder", "kidney-tf train --data data --out thesis --epochs 1",
      mentions="thesis"),
    C("train-inside-data", "kidney-tf train --data data --out data/run --epochs 1",
      mentions="data/run"),
    C("train-onto-user-file", "kidney-tf train --data data --out notes.png --epochs 1",
      mentions="notes.png"),
    C("train-epochs-zero", "kidney-tf train --data data --out runs/x --epochs 0",
      mentions="--epochs"),
    C("train-lr-nan", "kidney-tf train --data data --out runs/x --lr nan", mentions="--lr"),
    C("train-data-missing", "kidney-tf train --data nowhere --out runs/x", mentions="nowhere"),
    C("train-no-data", "kidney-tf train --out runs/x", mentions="--data"),
    C("train-init-missing", "kidney-tf train --data data --out runs/x --init nope.keras",
      mentions="nope.keras"),
    C("train-config-is-a-folder", "kidney-tf train --config reports --out runs/x",
      mentions="reports"),
    C("train-head-units-text", "kidney-tf train --data data --out runs/x --head-units wide",
      mentions="--head-units"),
    C("train-augment-contradiction", "kidney-tf train --data data --out runs/x --no-augment "
      "--augment-options rotation=15", mentions="--augment-options"),
    # --------------------------------------------------------------------------- evaluate
    C("evaluate-model-missing", "kidney-tf evaluate --model nope.keras --data data --out ev/x",
      mentions="nope.keras"),
    C("evaluate-model-not-a-model", "kidney-tf evaluate --model notes.png --data data "
      "--out ev/notmodel", mentions="notes.png", outputs="ev/notmodel"),
    C("evaluate-model-random-bytes", "kidney-tf evaluate --model models/broken.keras --data data "
      "--out ev/broken", mentions="models/broken.keras", outputs="ev/broken"),
    C("evaluate-model-is-a-folder", "kidney-tf evaluate --model models --data data --out ev/dir",
      mentions="models", outputs="ev/dir"),
    C("evaluate-onto-user-folder", f"kidney-tf evaluate --model {M} --data data --out reports",
      mentions="reports"),
    C("evaluate-inside-data", f"kidney-tf evaluate --model {M} --data data --out data/report",
      mentions="data/report"),
    C("evaluate-onto-model", f"kidney-tf evaluate --model {M} --data data --out {M}",
      mentions=M),
    C("evaluate-no-data-no-split", f"kidney-tf evaluate --model {M} --out ev/x",
      mentions="split.csv"),
    C("evaluate-batch-size-zero", f"kidney-tf evaluate --model {M} --data data --out ev/x "
      "--batch-size 0", mentions="--batch-size"),
    C("evaluate-temperature-text", f"kidney-tf evaluate --model {M} --data data --out ev/x "
      "--temperature hot", mentions="--temperature"),
    C("evaluate-unknown-method", f"kidney-tf evaluate --model {M} --data data --out ev/x "
      "--method gradcam+++", mentions="gradcam+++"),
    C("evaluate-unknown-extra-method", f"kidney-tf evaluate --model {M} --data data --out ev/x "
      "--extra-methods nope", mentions="nope"),
    C("evaluate-ok", f"kidney-tf evaluate --model {M} --data data --split all --out ev/ok "
      "--max-cam-images 2 --extra-methods '' -q", "ok", outputs="ev/ok", tf=True, timeout=1200),
    # ---------------------------------------------------------------------------- explain
    C("explain-onto-input-folder", f"kidney-tf explain --model {M} --image {IMG} --out data/Cyst",
      mentions="data/Cyst"),
    C("explain-onto-user-folder", f"kidney-tf explain --model {M} --image data --out thesis",
      mentions="thesis"),
    C("explain-onto-world", f"kidney-tf explain --model {M} --image notes.png --out .",
      mentions="."),
    C("explain-image-missing", f"kidney-tf explain --model {M} --image nope.png --out ex/x",
      mentions="nope.png"),
    C("explain-folder-without-images", f"kidney-tf explain --model {M} --image empty --out ex/x",
      mentions="empty"),
    C("explain-zero-byte-image", f"kidney-tf explain --model {M} --image {BAD}/zero.png "
      "--out ex/zero", mentions=f"{BAD}/zero.png", outputs="ex/zero"),
    C("explain-model-missing", "kidney-tf explain --model nope.keras --image notes.png "
      "--out ex/nomodel", mentions="nope.keras", outputs="ex/nomodel"),
    C("explain-ok", f"kidney-tf explain --model {M} --image notes.png {IMG} --out ex/ok -q",
      "ok", outputs="ex/ok", tf=True, timeout=1200),
    # ---------------------------------------------------------------------------- compare
    C("compare-user-folders", "kidney-tf compare reports thesis --out cmp/x", mentions="reports",
      outputs="cmp/x"),
    C("compare-onto-input", "kidney-tf compare reports thesis --out reports", mentions="reports"),
    C("compare-missing", "kidney-tf compare nowhere nowhere2 --out cmp/y", mentions="nowhere",
      outputs="cmp/y"),
    C("compare-max-pairs-negative", "kidney-tf compare ev/ok ev/ok --out cmp/z --max-pairs -1",
      mentions="--max-pairs", outputs="cmp/z"),
    # ----------------------------------------------------------------------------- export
    C("export-model-missing", "kidney-tf export --model nope.keras --out serving/kidney/1",
      mentions="nope.keras"),
    C("export-onto-user-file-overwrite", f"kidney-tf export --model {M} --out notes.png "
      "--overwrite", mentions="notes.png"),
    C("export-version-zero", f"kidney-tf export --model {M} --out serving/kidney --version 0",
      mentions="version"),
    C("export-version-v2", f"kidney-tf export --model {M} --out serving/kidney --version v2",
      mentions="v2"),
    C("export-version-latest", f"kidney-tf export --model {M} --out serving/kidney/latest",
      mentions="serving/kidney/latest"),
    C("export-version-notes", f"kidney-tf export --model {M} --out . --version notes.png",
      mentions="notes.png"),
    C("export-base-is-a-file", f"kidney-tf export --model {M} --out notes.png --version auto",
      mentions="notes.png"),
    C("export-onto-user-version-folder", f"kidney-tf export --model {M} --out serving_user/1 "
      "--overwrite", mentions="serving_user/1"),
    C("export-model-not-a-model", "kidney-tf export --model notes.png --out serving/notes/1",
      mentions="notes.png", outputs="serving/notes"),
    C("export-kill-and-rerun", f"kidney-tf export --model {M} --out serving/kidney/1 -q", "ok",
      outputs="serving/kidney/1", kill="serving/kidney/.1.tmp.*", tf=True, timeout=1200),
    C("export-own-again", f"kidney-tf export --model {M} --out serving/kidney/1",
      mentions="--overwrite"),
    # ------------------------------------------------------------------- reproduce, demo
    C("demo-onto-user-folder", "kidney-tf demo --out thesis", mentions="thesis"),
    C("demo-onto-user-file", "kidney-tf demo --out notes.png", mentions="notes.png"),
    C("demo-onto-crop-output", "kidney-tf demo --out crops/a", mentions="crops/a"),
    C("reproduce-inside-data", "kidney-tf reproduce kidney-cam-fostering --data data "
      "--out data/run", mentions="data/run"),
    C("reproduce-onto-user-folder", "kidney-tf reproduce brain-mri-efficientnet --quick "
      "--out reports", mentions="reports"),
    C("reproduce-unknown-pipeline", "kidney-tf reproduce lung-xray --out runs/r",
      mentions="lung-xray"),
    # ---------------------------------------------------------------------------- benchmark
    C("benchmark-onto-user-file", "kidney-tf benchmark --preset smoke --out notes.png",
      mentions="notes.png"),
    C("benchmark-onto-folder", "kidney-tf benchmark --preset smoke --out reports",
      mentions="reports"),
    C("benchmark-unknown-section", "kidney-tf benchmark --only warp --out b.json",
      mentions="warp"),
    C("benchmark-workdir-user-folder", "kidney-tf benchmark --preset smoke --only crop "
      "--workdir thesis --out bench/b.json", mentions="thesis", outputs="bench"),
)
# fmt: on


# ------------------------------------------------------------------------- the user's world


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _huge_header_png(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming ``width x height``, with a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _phantoms(kind: str, cls: str, count: int, size: int) -> list[np.ndarray]:
    from kidney_tf.data.phantoms import render_phantom

    return [render_phantom(kind, cls, i, image_size=size, seed=7)[0] for i in range(count)]


def _write(path: Path, content: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)


def build_world(world: Path, *, tf: bool = True) -> None:
    """Create the user's files (see the module docstring). ``tf=False``: the model file is a
    placeholder zip archive that passes the file checks (every case that would load it is then
    skipped)."""
    rng = np.random.default_rng(0)
    world.mkdir(parents=True)
    # a small class-folder dataset
    for cls in CLASSES:
        for i, image in enumerate(_phantoms("kidney-ct", cls, 4, SIZE)):
            _write(world / "data" / cls / f"{cls.lower()}_{i:03d}.png", _png(image))
    # the same with every kind of bad file
    good = _phantoms("kidney-ct", "Cyst", 3, SIZE)
    png, jpeg = _png(good[0]), _jpeg(good[0])
    for i, image in enumerate(good):
        _write(world / "data_bad" / "Cyst" / f"ok_{i}.png", _png(image))
        _write(world / "data_bad" / "Normal" / f"ok_{i}.jpg", _jpeg(image))
    bad = world / "data_bad" / "Cyst"
    _write(bad / "zero.png", b"")
    _write(bad / "truncated.png", png[: len(png) // 2])
    _write(bad / "truncated.jpg", jpeg[: len(jpeg) // 2])
    _write(bad / "corrupt.jpg", jpeg[:20] + rng.bytes(400))
    _write(bad / "text.jpg", "this is not a JPEG\n")
    _write(bad / "huge_header.png", _huge_header_png(60_000, 60_000))
    _write(world / "data_bad" / "Normal" / "black.png", _png(np.zeros((SIZE, SIZE), np.uint8)))
    _write(world / "data_bad" / "Normal" / "README.txt", "how I collected these scans\n")
    # images above a pixel limit: a real 100 x 100 image and a header claiming 60,000 squared
    for i, image in enumerate(_phantoms("kidney-ct", "Normal", 2, 100)):
        _write(world / "huge" / "Normal" / f"big_{i}.png", _png(image))
    _write(world / "huge" / "Cyst" / "claims_huge.png", _huge_header_png(60_000, 60_000))
    _write(world / "huge" / "Cyst" / "small.png", _png(good[1]))
    # a larger dataset, so a crop runs long enough to be killed
    sources = _phantoms("kidney-ct", "Normal", 6, 192)
    for cls in CLASSES:
        for i in range(60):
            _write(world / "big" / cls / f"{cls}_{i:03d}.png", _png(sources[i % 6]))
    # DICOM-like files (a preamble, DICM and no valid data set)
    _write(world / "dicom" / "Cyst" / "slice_001.dcm", b"\0" * 128 + b"DICM" + rng.bytes(300))
    _write(world / "dicom" / "Normal" / "slice_002.dcm", b"\0" * 128 + b"DICM" + rng.bytes(300))
    _write(world / "dicom" / "Normal" / "ok.png", _png(good[2]))
    # empty folders
    (world / "empty").mkdir()
    for cls in CLASSES:
        (world / "empty_classes" / cls).mkdir(parents=True)
    # manifests: a good one and broken ones, each in lists/ beside its images
    lists = world / "lists"
    for i, image in enumerate(good):
        _write(lists / "img" / f"scan_{i}.png", _png(image))
    rows = "".join(f"img/scan_{i}.png,{CLASSES[i % 2]},,\n" for i in range(3))
    _write(lists / "manifest.csv", "path,label,split,mask_path\n" + rows)
    _write(lists / "bad_columns.csv", "file,class\nimg/scan_0.png,Cyst\n")
    _write(lists / "escaping.csv", "path,label\n../notes.png,Cyst\nimg/scan_1.png,Normal\n")
    _write(lists / "absolute.csv", f"path,label\n{world / 'notes.png'},Cyst\n")
    _write(lists / "no_label.csv", "path,label\nimg/scan_0.png,\nimg/scan_1.png,Normal\n")
    _write(lists / "missing_file.csv", "path,label\nimg/scan_0.png,Cyst\nimg/gone.png,Normal\n")
    _write(lists / "empty.csv", b"")
    _write(lists / "binary.csv", b"\xff\xfe\x00\x01" + rng.bytes(200))
    # the user's own files and folders
    _write(world / "notes.png", _png(good[1]))
    _write(world / "notes.txt", "remember: never lose the thesis\n")
    _write(world / "reports" / "summary.md", "# My results\n")
    _write(world / "reports" / "results.json", '{"accuracy": 0.97}\n')
    _write(world / "thesis" / "thesis.docx", rng.bytes(2000))
    _write(world / "thesis" / "figures" / "fig1.png", _png(good[0]))
    _write(world / "serving_user" / "1" / "my_model.pb", rng.bytes(500))
    _write(world / "models" / "broken.keras", rng.bytes(256))
    if tf:
        _make_model(world / "models" / "tiny.keras")
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("config.json", "placeholder: never loaded with --no-tf")
        _write(world / "models" / "tiny.keras", buffer.getvalue())


MAKE_MODEL = textwrap.dedent(
    """
    import sys
    import keras
    from kidney_tf.models.builders import Classifier
    keras.utils.set_random_seed(0)
    size, names = int(sys.argv[2]), sys.argv[3].split(",")
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(len(names), name="logits")(x)
    out = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    Classifier(inputs, out, class_names=names, metadata={"image_size": size}).save(sys.argv[1])
    """
)


def _make_model(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", MAKE_MODEL, str(path), str(MODEL_SIZE), ",".join(CLASSES)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=_env(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"could not build the tiny model: {proc.stderr[-2000:]}")


# ------------------------------------------------------------------------------ the snapshot

Snapshot = dict[str, tuple[str, int, int]]


def snapshot(world: Path) -> Snapshot:
    """Relative path -> (sha256 or 'dir', size, mtime_ns) of everything under ``world``."""
    state: Snapshot = {}
    for path in sorted(world.rglob("*")):
        stat = path.lstat()
        if path.is_dir() and not path.is_symlink():
            state[str(path.relative_to(world))] = ("dir", 0, 0)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "other"
            state[str(path.relative_to(world))] = (digest, stat.st_size, stat.st_mtime_ns)
    return state


def _under(path: str, roots: Iterable[str]) -> bool:
    parts = Path(path).parts
    return any(parts[: len(Path(r).parts)] == Path(r).parts for r in roots)


def diff(before: Snapshot, after: Snapshot, outputs: Sequence[str]) -> dict[str, list[str]]:
    """Paths modified, deleted or created outside ``outputs`` (relative paths)."""
    outputs = [os.path.normpath(o) for o in outputs]
    changed = {
        "modified": [
            p
            for p in before
            if p in after
            and after[p] != before[p]
            and before[p][0] != "dir"
            and not _under(p, outputs)
        ],
        "deleted": [p for p in before if p not in after and not _under(p, outputs)],
        "created": [
            p
            for p in after
            if p not in before
            and not _under(p, outputs)
            and not (after[p][0] == "dir" and any(_under(o, [p]) for o in outputs))
        ],
    }
    return changed


# ------------------------------------------------------------------------------- running


@dataclasses.dataclass
class Result:
    name: str
    command: str
    rc: int | None
    seconds: float
    first_line: str
    error_line: str
    traceback: bool
    changed: dict[str, list[str]]
    problems: list[str]
    killed: str = ""
    skipped: str = ""

    @property
    def user_files_modified(self) -> int:
        return sum(len(v) for v in self.changed.values())


POISON = "raise ImportError('hostile_inputs --no-tf: this case imports TensorFlow')\n"
_poison: list[str] = []  # a folder whose tensorflow/keras packages refuse to import (--no-tf)


def poison_tensorflow(folder: Path) -> None:
    """Make every later case fail loudly if it imports TensorFlow or Keras (``--no-tf``)."""
    for name in ("tensorflow", "keras"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(POISON)
    _poison[:] = [str(folder)]


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [*_poison, str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _launch(case: Case, world: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kidney_tf", *case.args],
        cwd=world,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int | None, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err + f"\n[harness: timed out after {timeout:.0f} s]"
    return proc.returncode, out, err


def _kill_midway(case: Case, world: Path) -> tuple[str, list[str]]:
    """Start the command, SIGKILL it once its temp folder holds a file; return what was seen."""
    problems = []
    seen = ""
    with tempfile.TemporaryFile(mode="w+") as log:  # the first run's stderr, outside the world
        proc = subprocess.Popen(
            [sys.executable, "-m", "kidney_tf", *case.args],
            cwd=world,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=_env(),
            start_new_session=True,
        )
        deadline = time.monotonic() + case.timeout
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in world.glob(case.kill) if p.is_dir() and any(p.rglob("*"))]
            if temps:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                seen = str(temps[0].relative_to(world))
                break
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        last = [line for line in log.read().splitlines() if line.strip()][-1:]
    if not seen:
        problems.append(
            f"kill: the command ended (exit {proc.returncode}) before its temp folder appeared"
            + (f": {last[0][:200]}" if last else "")
        )
    elif not (world / seen).exists():
        problems.append(f"kill: {seen} vanished although the process was killed")
    return seen, problems


def run_case(case: Case, world: Path) -> Result:
    before = snapshot(world)
    start = time.monotonic()
    killed, problems = ("", [])
    if case.kill:
        killed, problems = _kill_midway(case, world)
    rc, out, err = _wait(_launch(case, world), case.timeout)
    seconds = time.monotonic() - start
    after = snapshot(world)
    lines = [line for line in err.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    error = next((line for line in lines if "error:" in line), first if rc else "")
    poisoned = "this case imports TensorFlow" in err
    traceback = "Traceback (most recent call last)" in err and not poisoned
    if poisoned:
        problems.append("imports TensorFlow (not marked tf)")
    elif traceback:
        problems.append("traceback on stderr")
    if rc is None:
        problems.append("timed out")
    elif case.expect == "ok" and rc != 0:
        problems.append(f"exit {rc}, expected 0")
    elif case.expect == "usage" and (rc != 2 or not out.lstrip().startswith("usage:")):
        problems.append(f"exit {rc}, expected 2 and the usage")
    elif case.expect == "checked" and rc not in (0, 1):
        problems.append(f"exit {rc}, expected 0 or 1")
    elif case.expect == "error":
        if rc not in (1, 2):
            problems.append(f"exit {rc}, expected 1 or 2")
        if not error:
            problems.append("no error line")
        for text in case.mentions:
            if text not in error:
                problems.append(f"error line does not name {text!r}")
    if case.expect == "error" and len([line for line in lines if "error:" in line]) > 1:
        problems.append("more than one error line")
    changed = diff(before, after, case.outputs)
    for kind, paths in changed.items():
        if paths:
            problems.append(f"{kind}: {', '.join(paths[:5])}" + (" ..." if len(paths) > 5 else ""))
    if killed and any(world.glob(case.kill)):
        problems.append(f"temp folder of the killed run left: {killed}")
    return Result(
        case.name, case.command, rc, round(seconds, 1), first[:300], error[:300], traceback,
        changed, problems, killed,
    )  # fmt: skip


def select(cases: Sequence[Case], only: str | None = None) -> list[Case]:
    """The cases whose names match one of the comma-separated globs ``only``."""
    patterns = [p.strip() for p in (only or "*").split(",") if p.strip()]
    return [c for c in cases if any(fnmatch.fnmatch(c.name, p) for p in patterns)]


def run_cases(
    cases: Sequence[Case], world: Path, *, tf: bool = True, progress: bool = True
) -> list[Result]:
    """Run ``cases`` in order against ``world`` (built by :func:`build_world`)."""
    results = []
    for i, case in enumerate(cases, 1):
        if case.tf and not tf:
            results.append(
                Result(case.name, case.command, None, 0.0, "", "", False,
                       {"modified": [], "deleted": [], "created": []}, [], skipped="--no-tf")
            )  # fmt: skip
            continue
        result = run_case(case, world)
        results.append(result)
        if progress:
            state = "ok" if not result.problems else "FAIL: " + "; ".join(result.problems)
            print(f"[{i:3d}/{len(cases)}] {case.name:<40} rc={result.rc} "
                  f"{result.seconds:6.1f} s  {state}", flush=True)  # fmt: skip
    return results


def totals(results: Sequence[Result]) -> dict[str, int]:
    ran = [r for r in results if not r.skipped]
    return {
        "cases": len(ran),
        "skipped": len(results) - len(ran),
        "tracebacks": sum(r.traceback for r in ran),
        "user_files_modified": sum(r.user_files_modified for r in ran),
        "failed": sum(bool(r.problems) for r in ran),
    }


def totals_line(t: dict[str, int]) -> str:
    return (
        f"{t['cases']} cases, {t['tracebacks']} with a traceback, "
        f"{t['user_files_modified']} user files modified ({t['failed']} failed a check"
        + (f", {t['skipped']} skipped" if t["skipped"] else "")
        + ")"
    )


def write_report(out: Path, results: Sequence[Result], final: dict[str, list[str]]) -> None:
    t = totals(results)
    t["user_files_changed_since_start"] = sum(len(v) for v in final.values())
    md = [
        "# Hostile inputs: kidney-tf against a user's files",
        "",
        f"**{totals_line(t)}**; files of the original world changed at the end: "
        f"{t['user_files_changed_since_start']}.",
        "",
        "| case | command | exit | first error line | user files modified | s | problems |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [
            r.name, f"`{r.command}`", "skip" if r.skipped else str(r.rc),
            (r.error_line or r.first_line).replace("|", "\\|"), str(r.user_files_modified),
            f"{r.seconds:.1f}", "; ".join(r.problems).replace("|", "\\|") or "–",
        ]  # fmt: skip
        md.append("| " + " | ".join(cells) + " |")
    (out / "report.md").write_text("\n".join(md) + "\n")
    data = {
        "totals": t,
        "final_changes": final,
        "results": [dataclasses.asdict(r) for r in results],
    }
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder for the world and the report (must not exist)")
    parser.add_argument("--only", help="comma-separated case-name globs (default: every case)")
    parser.add_argument("--no-tf", action="store_true", help="skip the cases that need TensorFlow")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    cases = select(CASES, args.only)
    if args.list:
        for case in cases:
            print(f"{case.name:<40} {'[tf] ' if case.tf else ''}{case.command}")
        return 0
    if not args.out:
        parser.error("--out is required")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out}: exists and is not empty; give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    world = out / "world"
    start = time.monotonic()
    build_world(world, tf=not args.no_tf and any(c.tf or M in c.args for c in cases))
    print(f"world built in {time.monotonic() - start:.0f} s: {world}", flush=True)
    if args.no_tf:
        poison_tensorflow(out / "no-tf")
    original = snapshot(world)
    results = run_cases(cases, world, tf=not args.no_tf)
    outputs = [o for c in cases for o in c.outputs]
    final = diff(original, snapshot(world), outputs)
    write_report(out, results, final)
    t = totals(results)
    print(totals_line(t))
    print(f"report: {out / 'report.md'}")
    return 0 if not t["failed"] and not any(final.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
