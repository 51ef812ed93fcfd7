"""Where records come from: a class-folder tree, a manifest CSV, or either (:func:`load_source`).

Folder layouts understood by :func:`scan_folder`::

    root/<class>/*.{jpg,jpeg,png,bmp,tif,tiff[,dcm]}      (extensions case-insensitive)
    root/masks/<class>/<same file name or stem>            (optional masks)
    root/<Split>/<class>/*  with masks in root/<Split>/masks/<class>/* or root/masks/<Split>/<class>/*
        Split in Training/Testing/train/val/valid/validation/test -> "train"/"val"/"test"

Manifest CSVs (:func:`read_manifest`, :func:`write_manifest`) have the columns
``path,label[,split][,mask_path]`` with paths relative to a data root. (Dataset *descriptions*,
the JSON files of ``data_manifests/``, are :mod:`kidney_tf.data.manifests`.)

Usage::

    from kidney_tf.data.sources import load_source
    result = load_source("CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone")   # or "manifest.csv"
    result.records[0]          # ImageRecord(path, label, split, mask_path)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from kidney_tf.data.decode import DICOM_EXTENSIONS, supported_extensions
from kidney_tf.data.pixels import ImageReadError
from kidney_tf.data.records import (
    SPLIT_ALIASES,
    BadFile,
    ImageRecord,
    ScanResult,
    normalize_split,
    validate_records,
)
from kidney_tf.recipes import SPLITS
from kidney_tf.utils.io import atomic_path
from kidney_tf.utils.logging import get_logger

logger = get_logger(__name__)

MASK_FOLDER = "masks"
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split", "mask_path")


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "__"))


def _list_dir(folder: Path) -> tuple[list[Path], list[Path]]:
    """(visible sub-folders, visible files), both sorted by name."""
    dirs, files = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            path = Path(entry.path)
            if not _visible(path):
                continue
            (dirs if entry.is_dir() else files).append(path)
    return sorted(dirs), sorted(files)


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name`` (case-insensitive), if any."""
    return next((d for d in _list_dir(folder)[0] if d.name.lower() == name.lower()), None)


def _mask_index(mask_dir: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """File name and stem -> mask path, for one class folder of masks."""
    if not mask_dir.is_dir():
        return {}
    index: dict[str, Path] = {}
    for path in _list_dir(mask_dir)[1]:
        if path.suffix.lower() in extensions:
            index.setdefault(path.name, path)
            index.setdefault(path.stem, path)
    return index


def _scan_classes(
    base: Path,
    split: str | None,
    extensions: tuple[str, ...],
    notes: list[str],
    shared_masks: Path | None = None,
) -> list[ImageRecord]:
    class_dirs, stray_files = _list_dir(base)
    masks_dir = next((d for d in class_dirs if d.name.lower() == MASK_FOLDER), shared_masks)
    class_dirs = [d for d in class_dirs if d.name.lower() != MASK_FOLDER]
    stray_images = [f for f in stray_files if f.suffix.lower() in extensions]
    if stray_images:
        notes.append(
            f"{base}: {len(stray_images)} image(s) outside any class folder were ignored "
            f"(e.g. {stray_images[0].name})"
        )
    if not class_dirs:
        notes.append(f"{base}: no class folders found")
    records: list[ImageRecord] = []
    for class_dir in class_dirs:
        subdirs, files = _list_dir(class_dir)
        # one pass by suffix (a membership test in a list per file was quadratic: minutes for
        # one class folder of 20,000 files)
        images, skipped_dicom, others = [], [], []
        for f in files:
            suffix = f.suffix.lower()
            if suffix in extensions:
                images.append(f)
            elif suffix in DICOM_EXTENSIONS:
                skipped_dicom.append(f)
            else:
                others.append(f)
        if skipped_dicom:
            notes.append(
                f"{class_dir}: {len(skipped_dicom)} DICOM file(s) skipped: reading DICOM needs "
                "pydicom (pip install 'kidney_tf[dicom]')"
            )
        if subdirs:
            notes.append(
                f"{class_dir}: {len(subdirs)} sub-folder(s) ignored (only files directly in a "
                f"class folder are read; e.g. {subdirs[0].name})"
            )
        if others:
            notes.append(
                f"{class_dir}: {len(others)} non-image file(s) ignored (e.g. {others[0].name})"
            )
        if not images:
            notes.append(f"{class_dir}: empty class folder (no image files); class left out")
            continue
        masks = _mask_index(masks_dir / class_dir.name, extensions) if masks_dir else {}
        unmatched = 0
        for image in images:
            mask = masks.get(image.name) or masks.get(image.stem)
            unmatched += masks_dir is not None and mask is None
            records.append(
                ImageRecord(str(image), class_dir.name, split, str(mask) if mask else None)
            )
        if masks_dir is not None and unmatched:
            notes.append(f"{class_dir}: {unmatched} of {len(images)} image(s) have no mask")
    return records


def scan_folder(
    root: str | os.PathLike,
    *,
    strict: bool = False,
    validate: bool = True,
    workers: int | None = None,
) -> ScanResult:
    """List a class-folder (or split/class-folder) tree; optionally decode-check every file.

    Args:
        strict: raise :class:`ImageReadError` on the first unreadable file instead of collecting
            :class:`BadFile` entries.
        validate: decode-check every image and mask (masks also size-checked against their image).
        workers: threads for validation (default: up to 8).

    Hidden files/folders and ``masks`` folders never become classes; class names are sorted.
    An empty class folder is reported in ``warnings`` (and left out), never a crash.

    Usage: ``result = scan_folder("brain-tumor-mri-dataset")  # Training/ + Testing/``
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    root = root.absolute()
    extensions = supported_extensions()
    notes: list[str] = []
    subdirs, _ = _list_dir(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    split_dirs.sort(key=lambda d: (SPLITS.index(SPLIT_ALIASES[d.name.lower()]), d.name))
    top_masks = next((d for d in subdirs if d.name.lower() == MASK_FOLDER), None)
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs and d != top_masks]
        if others:
            raise ValueError(
                f"{root}: mixed layout: split folders ({', '.join(d.name for d in split_dirs)}) "
                f"next to other folders ({', '.join(others)}); move class folders into the splits"
            )
        seen: dict[str, str] = {}
        records = []
        for split_dir in split_dirs:
            split = SPLIT_ALIASES[split_dir.name.lower()]
            if split in seen:
                raise ValueError(
                    f"{root}: folders {seen[split]!r} and {split_dir.name!r} are both split {split!r}"
                )
            seen[split] = split_dir.name
            # masks: <Split>/masks/<class>/, else masks/<Split>/<class>/
            shared = _child(top_masks, split_dir.name) if top_masks else None
            records.extend(_scan_classes(split_dir, split, extensions, notes, shared))
    else:
        records = _scan_classes(root, None, extensions, notes)
    return _finish(records, notes, strict=strict, validate=validate, workers=workers)


def _finish(
    records: list[ImageRecord],
    notes: list[str],
    *,
    strict: bool,
    validate: bool,
    workers: int | None,
    bad_files: list[BadFile] | None = None,
) -> ScanResult:
    bad_files = list(bad_files or [])
    if validate and records:
        records, found = validate_records(records, strict=strict, workers=workers)
        bad_files.extend(found)
    for note in notes:
        logger.warning("%s", note)
    if bad_files:
        logger.warning("%d file(s) left out as unreadable; first: %s", len(bad_files), bad_files[0])
    class_names = sorted({r.label for r in records})
    return ScanResult(records, class_names, bad_files, notes)


# --------------------------------------------------------------------------- manifest CSVs


def _inside(base: Path, text: str, *, allow_absolute: bool, where: str) -> Path:
    """Resolve a manifest path lexically under ``base``; reject absolute paths and escapes."""
    candidate = Path(text)
    if candidate.is_absolute():
        if not allow_absolute:
            raise ValueError(
                f"{where}: absolute path {text!r} is not allowed; use a path relative to {base}"
            )
    else:
        candidate = base / candidate
    normal = Path(os.path.normpath(candidate))
    if normal != base and base not in normal.parents:
        raise ValueError(f"{where}: path {text!r} escapes the data root {base}")
    # Lexically inside is not enough: a symbolic link inside the root may point anywhere.
    real, real_base = normal.resolve(), base.resolve()
    if real != real_base and real_base not in real.parents:
        raise ValueError(
            f"{where}: path {text!r} is a link that leads outside the data root {base} (to {real})"
        )
    return normal


def read_manifest(
    csv_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    strict: bool = False,
    validate: bool = True,
    workers: int | None = None,
) -> ScanResult:
    """Read a manifest CSV (``path,label[,split][,mask_path]``; other columns are ignored).

    Relative paths are resolved against ``root`` (default: the CSV's folder) and may not leave
    it (``..`` escapes and absolute paths raise ``ValueError``; with an explicit ``root``,
    absolute paths inside it are accepted). The file is parsed with :mod:`csv`, never evaluated.
    Missing or unreadable files become :class:`BadFile` entries (or raise with ``strict``).

    Usage: ``result = read_manifest("phantoms/manifest.csv")``
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: manifest CSV not found")
    base = Path(os.path.normpath(Path(root if root is not None else csv_path.parent).absolute()))
    if root is not None and not base.is_dir():
        raise FileNotFoundError(f"{base}: data root folder not found")
    records: list[ImageRecord] = []
    bad_files: list[BadFile] = []
    first_line: dict[str, int] = {}
    notes: list[str] = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [(name or "").strip().lower() for name in reader.fieldnames or []]
            missing = [c for c in ("path", "label") if c not in columns]
            if missing:
                raise ValueError(
                    f"{csv_path}: missing column(s) {', '.join(missing)}; expected header "
                    f"{','.join(MANIFEST_COLUMNS)} (split and mask_path optional)"
                )
            for row in reader:
                line = reader.line_num
                where = f"{csv_path}:{line}"
                values = {
                    (k or "").strip().lower(): (v or "").strip()
                    for k, v in row.items()
                    if isinstance(v, str)
                }
                if not any(values.values()):
                    continue
                if not values.get("path"):
                    raise ValueError(f"{where}: empty path")
                if not values.get("label"):
                    raise ValueError(f"{where}: empty label for {values['path']!r}")
                try:
                    split = normalize_split(values.get("split"))
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                allow_abs = root is not None
                image = _inside(base, values["path"], allow_absolute=allow_abs, where=where)
                mask_text = values.get("mask_path")
                mask = (
                    _inside(base, mask_text, allow_absolute=allow_abs, where=where)
                    if mask_text
                    else None
                )
                key = str(image)
                if key in first_line:
                    problem = BadFile(
                        key, f"listed again on line {line} (first on line {first_line[key]})"
                    )
                elif not image.is_file():
                    problem = BadFile(key, f"file not found (line {line} of {csv_path.name})")
                elif mask is not None and not mask.is_file():
                    problem = BadFile(str(mask), f"mask not found (line {line} of {csv_path.name})")
                else:
                    problem = None
                    first_line[key] = line
                    records.append(
                        ImageRecord(key, values["label"], split, str(mask) if mask else None)
                    )
                if problem is not None:
                    if strict:
                        raise ImageReadError(problem.path, problem.reason)
                    bad_files.append(problem)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{csv_path}: not a UTF-8 text CSV ({exc.reason})") from None
    except csv.Error as exc:
        raise ValueError(f"{csv_path}: malformed CSV ({exc})") from None
    if not records and not bad_files:
        notes.append(f"{csv_path}: manifest lists no images")
    return _finish(
        records, notes, strict=strict, validate=validate, workers=workers, bad_files=bad_files
    )


def write_manifest(
    records: Iterable[ImageRecord],
    csv_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
) -> Path:
    """Write ``records`` as a manifest CSV atomically, paths relative to ``root`` (default: the
    CSV's folder) so that ``read_manifest(csv_path, root=root)`` reads them back.

    Usage: ``write_manifest(result.records, "splits/manifest.csv", root="data/")``
    """
    csv_path = Path(csv_path)
    base = Path(os.path.normpath(Path(root if root is not None else csv_path.parent).absolute()))
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_COLUMNS)
        for record in records:
            row = [record.path, record.mask_path]
            for i, value in enumerate(row):
                if value is None:
                    continue
                absolute = Path(os.path.normpath(Path(value).absolute()))
                if absolute != base and base not in absolute.parents:
                    raise ValueError(f"{value}: outside the manifest root {base}; pass root=")
                row[i] = absolute.relative_to(base).as_posix()
            writer.writerow([row[0], record.label, record.split or "", row[1] or ""])
    return csv_path


def load_source(
    source: str | os.PathLike,
    *,
    strict: bool = False,
    validate: bool = True,
    workers: int | None = None,
) -> ScanResult:
    """A dataset folder (:func:`scan_folder`) or a manifest ``.csv`` (:func:`read_manifest`).

    Usage: ``result = load_source("phantoms/manifest.csv")``
    """
    path = Path(source)
    if path.is_dir():
        return scan_folder(path, strict=strict, validate=validate, workers=workers)
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_manifest(path, strict=strict, validate=validate, workers=workers)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset folder or manifest CSV")
    raise ValueError(f"{path}: not a dataset folder or a .csv manifest")
