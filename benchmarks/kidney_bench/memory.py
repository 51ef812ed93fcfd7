"""Peak resident memory of training at the default batch size, measured in a fresh subprocess.

The child process does what ``kidney-tf train`` does for a few steps: ``build_datasets`` (decode,
crop, in-memory cache, augmentation) on the phantoms, the ``CamFosteringModel`` (λ = 0) with Adam
and class-weighted cross-entropy, and ``fit``. It reports its own peak RSS (``VmHWM``; see
``_maxrss_mib`` for why not ``ru_maxrss``) after importing TensorFlow, after building and after
training, so nothing of the calling process is counted. Goal: at most 8 GiB (a 16 GB workstation
keeps half its memory).

Usage: ``data = peak_training_memory("phantoms/manifest.csv", arch="resnet50", image_size=224)``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kidney_bench.core import Figure, Goal

MEMORY_GOAL_GIB = 8.0
MEMORY_GOAL = Goal("<=", MEMORY_GOAL_GIB * 1024)


def default_batch_size() -> int:
    """``kidney-tf train``'s default batch size (``TrainConfig.batch_size``)."""
    import dataclasses

    from kidney_tf import TrainConfig

    return int(next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "batch_size"))


def _maxrss_mib() -> float:
    """Peak RSS of this program in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``. Not ``ru_maxrss``: Linux carries ``ru_maxrss``
    across fork + exec, so a child started by a big parent (the benchmark holding ResNet-50,
    pytest with TensorFlow loaded) would report the parent's RSS. Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def peak_training_memory(
    source: str | os.PathLike,
    *,
    arch: str = "resnet50",
    image_size: int = 224,
    batch_size: int | None = None,
    steps: int = 2,
    crop: str | None = None,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Run the training child and return its measurements (raises ``RuntimeError`` if it fails)."""
    config = {
        "source": os.fspath(source),
        "arch": arch,
        "image_size": int(image_size),
        "batch_size": int(batch_size or default_batch_size()),
        "steps": int(steps),
        "crop": crop,
    }
    with tempfile.TemporaryDirectory(prefix="kidney-tf-memory-") as tmp:
        out = Path(tmp) / "result.json"
        # The child imports this suite by name: put the folder holding it on its path.
        suite_root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(filter(None, (suite_root, os.environ.get("PYTHONPATH"))))
        env = {
            **os.environ,
            "PYTHONPATH": path,
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "kidney_bench.memory", json.dumps(config), str(out)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
            raise RuntimeError(
                f"training memory child failed (exit {proc.returncode}): " + " | ".join(tail)
            )
        result = json.loads(out.read_text())
    return {**config, **result}


def _child(config: dict[str, Any]) -> dict[str, Any]:
    """The measurement itself (runs in the subprocess)."""
    start = _maxrss_mib()
    import keras
    import tensorflow as tf

    from kidney_bench.models import build_model, compile_like_trainer
    from kidney_bench.pipeline import _all_train
    from kidney_tf import CamFosteringModel, build_datasets

    imported = _maxrss_mib()
    bundle = build_datasets(
        _all_train(config["source"]),
        image_size=config["image_size"],
        batch_size=config["batch_size"],
        split="folders",
        val_fraction=0.0,
        test_fraction=0.0,
        crop=config["crop"],
        augment=True,
        cache=True,
    )
    model = CamFosteringModel.from_classifier(
        build_model(config["arch"], config["image_size"], bundle.num_classes), cam_weight=0.0
    )
    compile_like_trainer(model, bundle.num_classes)
    built = _maxrss_mib()
    model.fit(bundle.train.repeat(), steps_per_epoch=config["steps"], epochs=1, verbose=0)
    return {
        "rss_start_mib": round(start, 1),
        "rss_after_import_mib": round(imported, 1),
        "rss_after_build_mib": round(built, 1),
        "peak_rss_mib": round(_maxrss_mib(), 1),
        "parameters": int(model.count_params()),
        "images": int(sum(bundle.counts["train"].values())),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def memory_figures(data: dict[str, Any]) -> list[Figure]:
    return [
        Figure(
            f"memory.{data.get('arch')}.peak_rss",
            f"peak RSS of training, {data.get('arch')} batch {data.get('batch_size')}",
            data.get("peak_rss_mib"),
            "MiB",
            MEMORY_GOAL,
            note=f"{data.get('image_size')} px, {data.get('steps')} fit steps in a subprocess; "
            f"{data.get('rss_after_import_mib')} MiB after importing TensorFlow",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    from kidney_tf.utils.io import write_json_atomic

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m kidney_bench.memory CONFIG_JSON OUT_JSON", file=sys.stderr)
        return 2
    write_json_atomic(argv[1], _child(json.loads(argv[0])))
    return 0


__all__ = ["MEMORY_GOAL", "default_batch_size", "memory_figures", "peak_training_memory"]

if __name__ == "__main__":
    sys.exit(main())
