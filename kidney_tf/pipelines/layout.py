"""Find the public datasets' class folders in what users pass as ``--data``.

Accepted, as downloaded (and the folders inside them):

- kidney CT (CT-KIDNEY): ``DATA/CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone/<Class>/*.jpg``, the
  same folder nested twice (the Kaggle zip), that folder itself, or any ``DATA/<Class>/`` tree;
- brain MRI (Nickparvar): ``DATA/Training/<class>/`` + ``DATA/Testing/<class>/`` (also one level
  down, e.g. ``DATA/brain-tumor-mri-dataset/Training``; or ``DATA`` being ``Training`` itself
  with a ``Testing`` sibling), or a plain ``DATA/<class>/`` tree;
- for both: a manifest CSV (``path,label,split,mask_path``).

Usage::

    layout = find_dataset_root("~/data", "kidney-cam-fostering")
    layout.root, layout.kind  # (Path(".../CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"), "class-folders")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kidney_tf.recipes import BRAIN, KIDNEY

KIDNEY_FOLDER = "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"
CLASSES = {
    KIDNEY: ("Cyst", "Normal", "Stone", "Tumor"),
    BRAIN: ("glioma", "meningioma", "notumor", "pituitary"),
}
SPLIT_FOLDERS = (("Training", "Testing"), ("train", "test"))


@dataclass(frozen=True)
class DatasetLayout:
    """Where the images are and how they are laid out."""

    root: Path
    kind: str  # "class-folders" | "split-folders" | "manifest"
    class_names: tuple[str, ...]
    splits: tuple[str, ...] = ()

    def describe(self) -> str:
        splits = f" (splits: {', '.join(self.splits)})" if self.splits else ""
        return f"{self.kind} layout at {self.root}{splits}; classes {', '.join(self.class_names)}"


def _class_dirs(folder: Path, classes: tuple[str, ...]) -> list[str]:
    return [c for c in classes if (folder / c).is_dir()]


def _split_layout(folder: Path, classes: tuple[str, ...]) -> DatasetLayout | None:
    for train, test in SPLIT_FOLDERS:
        if (folder / train).is_dir() and (folder / test).is_dir():
            found = _class_dirs(folder / train, classes)
            if found:
                splits = [train] + (["val"] if (folder / "val").is_dir() else []) + [test]
                return DatasetLayout(folder, "split-folders", tuple(found), tuple(splits))
    return None


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def find_dataset_root(data: str | os.PathLike, pipeline: str) -> DatasetLayout:
    """Locate the dataset inside ``data`` for ``pipeline``; raise with what was expected.

    Raises ``FileNotFoundError`` when ``data`` does not exist or holds no known layout.
    """
    if pipeline not in CLASSES:
        raise ValueError(f"unknown pipeline {pipeline!r}")
    classes = CLASSES[pipeline]
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: data folder not found")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return DatasetLayout(path, "manifest", classes)
        raise FileNotFoundError(f"{path}: expected a dataset folder or a manifest .csv")

    if pipeline == KIDNEY:
        candidates = [path / KIDNEY_FOLDER / KIDNEY_FOLDER, path / KIDNEY_FOLDER, path]
        for candidate in candidates:
            found = _class_dirs(candidate, classes) if candidate.is_dir() else []
            if len(found) >= 2:
                return DatasetLayout(candidate, "class-folders", tuple(found))
        expected = (
            f"<Class>/ folders ({', '.join(classes)}) in {path}, {path / KIDNEY_FOLDER} "
            f"or {path / KIDNEY_FOLDER / KIDNEY_FOLDER}"
        )
    else:
        candidates = [path, *_subfolders(path)]
        if path.name in {train for train, _ in SPLIT_FOLDERS}:
            candidates.insert(0, path.parent)
        for candidate in candidates:
            layout = _split_layout(candidate, classes)
            if layout is not None:
                return layout
        found = _class_dirs(path, classes)
        if len(found) >= 2:
            return DatasetLayout(path, "class-folders", tuple(found))
        expected = (
            f"Training/ and Testing/ folders with <class>/ subfolders ({', '.join(classes)}) "
            f"in {path} or one level below, or <class>/ folders in {path}"
        )
    present = ", ".join(p.name for p in _subfolders(path)[:8]) or "no folders"
    raise FileNotFoundError(
        f"{path}: no {pipeline} dataset layout found; expected {expected} (found: {present})"
    )
