"""Dataset records: one labelled image (and mask), files left out, scan results, split names.

Usage::

    from kidney_tf.data.records import ImageRecord, validate_records
    good, bad = validate_records([ImageRecord("Cyst/a.jpg", "Cyst", "train")])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kidney_tf.data.decode import validate_image
from kidney_tf.data.pixels import ImageReadError
from kidney_tf.recipes import SPLITS

#: Folder (or CSV) split names, lower-cased, -> canonical split name.
SPLIT_ALIASES: dict[str, str] = {
    "training": "train",
    "train": "train",
    "validation": "val",
    "valid": "val",
    "val": "val",
    "testing": "test",
    "test": "test",
}


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image (and optional mask) of a dataset."""

    path: str
    label: str
    split: str | None = None
    mask_path: str | None = None


@dataclass
class BadFile:
    """A file left out of a dataset, with the reason (decode error, size mismatch, missing...)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ScanResult:
    """Readable records, the sorted class names and the files that were left out.

    ``warnings`` holds dataset-level notes (empty class folder, images outside class folders,
    images without masks...) that are not tied to one bad file.
    """

    records: list[ImageRecord]
    class_names: list[str]
    bad_files: list[BadFile]
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split or "all": {class: n}}`` with every class listed (0 when absent)."""
        table: dict[str, dict[str, int]] = {}
        for record in self.records:
            row = table.setdefault(record.split or "all", dict.fromkeys(self.class_names, 0))
            row[record.label] = row.get(record.label, 0) + 1
        return {split: table[split] for split in split_order(table)}


def split_order(names: Iterable[str]) -> list[str]:
    """Split names in train, val, test, all order (others after them, sorted)."""
    order = {name: i for i, name in enumerate((*SPLITS, "all"))}
    return sorted(names, key=lambda s: (order.get(s, len(order)), s))


def normalize_split(value: str | None) -> str | None:
    """Map a split folder/CSV value (``Training``, ``valid``...) to train/val/test; '' -> None."""
    if value is None or not value.strip():
        return None
    split = SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        raise ValueError(
            f"unknown split {value!r} (use one of: {', '.join(sorted(SPLIT_ALIASES))})"
        )
    return split


def check_record(record: ImageRecord) -> BadFile | None:
    """Decode-check a record's image and mask (and their sizes); None when it is usable."""
    try:
        height, width = validate_image(record.path)
    except ImageReadError as exc:
        return BadFile(record.path, exc.reason)
    if record.mask_path:
        try:
            mask_h, mask_w = validate_image(record.mask_path)
        except ImageReadError as exc:
            return BadFile(record.mask_path, f"mask of {Path(record.path).name}: {exc.reason}")
        if (mask_h, mask_w) != (height, width):
            return BadFile(
                record.mask_path,
                f"mask size {mask_w}x{mask_h} (WxH) differs from image size {width}x{height} "
                f"({record.path})",
            )
    return None


def validate_records(
    records: Sequence[ImageRecord], *, strict: bool = False, workers: int | None = None
) -> tuple[list[ImageRecord], list[BadFile]]:
    """Split ``records`` into (readable records, bad files), in input order.

    With ``strict=True`` the first bad file (in input order) raises :class:`ImageReadError`.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    good: list[ImageRecord] = []
    bad: list[BadFile] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for record, problem in zip(records, pool.map(check_record, records)):
                if problem is None:
                    good.append(record)
                elif strict:
                    raise ImageReadError(problem.path, problem.reason)
                else:
                    bad.append(problem)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return good, bad
