"""Shared pytest fixtures. Keep each fixture small; edit with targeted additions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _sample_root(name: str) -> Path:
    """The real sample in ../shared/data if present, else the few files copied into fixtures."""
    shared = SHARED_DATA / name
    return shared if shared.is_dir() else FIXTURES / name


@pytest.fixture(scope="session")
def brain_mri_sample() -> Path:
    """Real brain MRI slices in class folders (../shared/data/brain_mri_sample)."""
    return _sample_root("brain_mri_sample")


@pytest.fixture(scope="session")
def kidney_ct_sample() -> Path:
    """Real kidney CT slices in class folders (../shared/data/kidney_ct_sample)."""
    return _sample_root("kidney_ct_sample")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
