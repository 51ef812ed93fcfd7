"""Shared pytest fixtures. Keep each fixture small; edit with targeted additions."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# KIDNEY_TF_SHARED_DATA: only for the test of this fallback (tests/test_readme.py).
SHARED_DATA = Path(os.environ.get("KIDNEY_TF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


# The real samples and how many images ../shared/data/README.md (and our README's claims) count.
REAL_SAMPLES = {"brain_mri_sample": 118, "kidney_ct_sample": 120}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@functools.cache
def _benchmark_module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("real_data")``: a script of benchmarks/ (not installed) as a module."""
    return _benchmark_module


def _count_images(root: Path) -> int:
    if not root.is_dir():
        return 0
    return sum(1 for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _sample_root(name: str) -> Path:
    """The real sample in ../shared/data; in CI (``CI=true``) it must be there, else the few files
    copied into tests/fixtures, with a warning (the test then checks far fewer images)."""
    shared = SHARED_DATA / name
    found = _count_images(shared)
    if found:
        if found != REAL_SAMPLES[name]:
            pytest.fail(
                f"{shared} holds {found} images, the README's claims are about "
                f"{REAL_SAMPLES[name]}: restore the shared sample"
            )
        return shared
    problem = f"{shared} is {'empty' if shared.is_dir() else 'missing'}"
    if IN_CI:
        pytest.fail(f"CI needs the real samples: {problem} (real_data tests never fall back in CI)")
    fallback = FIXTURES / name
    warnings.warn(
        f"{problem}: real_data tests use the {_count_images(fallback)} images in {fallback} "
        f"instead of {REAL_SAMPLES[name]}",
        stacklevel=2,
    )
    return fallback


def pytest_report_header(config) -> list[str]:
    lines = []
    for name, expected in REAL_SAMPLES.items():
        found = _count_images(SHARED_DATA / name)
        if found:
            lines.append(f"real data: {SHARED_DATA / name} ({found} images)")
        elif IN_CI:
            lines.append(f"real data: {SHARED_DATA / name} MISSING: real_data tests fail in CI")
        else:
            lines.append(
                f"real data: {SHARED_DATA / name} missing; real_data tests FALL BACK to "
                f"{_count_images(FIXTURES / name)} fixture images (of {expected})"
            )
    return lines


@pytest.fixture(scope="session")
def brain_mri_sample() -> Path:
    """Real brain MRI slices in class folders (../shared/data/brain_mri_sample)."""
    return _sample_root("brain_mri_sample")


@pytest.fixture(scope="session")
def kidney_ct_sample() -> Path:
    """Real kidney CT slices in class folders (../shared/data/kidney_ct_sample)."""
    return _sample_root("kidney_ct_sample")


def _predict_split(
    model_path, split_csv, *, image_size: int, crop: str | None = None, split="test", root=None
):
    """Reload a saved model and predict one split of a run's split.csv through a fresh pipeline:
    ``(probabilities [N, C], true class indices [N], file paths)``, in split.csv order.

    ``root``: the data folder the split's absolute paths lie in (default: the run's data, from
    the config.json next to the model)."""
    import json

    import numpy as np

    from kidney_tf._loading import load_model
    from kidney_tf.data.pipeline import build_datasets

    if root is None:
        config = Path(model_path).parent / "config.json"
        data = json.loads(config.read_text())["train"].get("data") if config.is_file() else None
        if data:
            root = str(Path(data).parent) if data.endswith(".csv") else data
    model = load_model(model_path)
    bundle = build_datasets(
        split_csv, image_size=image_size, batch_size=8, split="folders", crop=crop,
        augment=False, cache=False, class_names=model.class_names, root=root,
    )  # fmt: skip
    dataset = bundle.dataset(split)
    labels = np.concatenate([y.numpy().argmax(axis=1) for _, y in dataset])
    return model.predict(dataset, verbose=0), labels, [r.path for r in bundle.records[split]]


@pytest.fixture(scope="session")
def predict_split():
    """``predict_split(model_path, split_csv, image_size=..., crop=...)``: see _predict_split."""
    return _predict_split
