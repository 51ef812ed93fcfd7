"""Train/val/test splits: folder splits, stratified random, and leakage-aware grouped splits.

Random splits of CT slice collections leak: neighbouring slices of one patient land in train and
test, and the test score measures memorisation (a ResNet-50 scored 0.99 on a random split of the
kidney CT data and 0.88 on held-out number ranges). ``method="grouped"`` keeps runs of
consecutively numbered slices (``Cyst- (1219).jpg``, ``Cyst- (1220).jpg``, ...) and, optionally,
perceptual near-duplicates in one split.

Usage::

    from kidney_tf.data.splits import split_records, write_split_csv
    splits = split_records(scan.records, method="auto", seed=42)
    write_split_csv(splits, "runs/exp1/split.csv")   # reload with reading.read_manifest
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import itertools
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kidney_tf.data.records import ImageRecord, ScanResult, normalize_split
from kidney_tf.recipes import EVAL_SPLIT_METHODS, SPLIT_METHODS, SPLITS, check_choice
from kidney_tf.utils.io import atomic_path
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)


#: Default largest gap between slice numbers that still counts as "neighbouring" (the CT-KIDNEY
#: export numbers slices of a series consecutively; a gap of a few tolerates dropped slices).
DEFAULT_SLICE_GAP = 5
#: Default width (in slice numbers) of one group inside a long run. The full CT-KIDNEY dataset
#: numbers every class 1..N without gaps, so runs alone would make one group per class; cutting
#: runs into windows of this many numbers gives "held-out number ranges" that still keep
#: neighbouring slices together (only the slices at a window edge have a neighbour elsewhere).
DEFAULT_BLOCK_SIZE = 100

# Trailing number of a file stem: "Cyst- (1219)", "Tr-gl_0045", "slice_12", "IM-0001-0042".
_CT_SLICE_NAME_RE = re.compile(r"\(\s*\d+\s*\)$")
_SLICE_RE = re.compile(r"^(?P<prefix>.*?)[\s_\-.]*\(?\s*(?P<number>\d+)\s*\)?$")


class Splits(dict):
    """``{"train": [...], "val": [...], "test": [...]}`` plus how the split was made.

    Attributes: ``method`` (the method actually used), ``reason`` (why, for "auto"), ``groups``
    (``{path: group id}`` for grouped splits, else ``None``).

    Usage::

        splits = split_records(records, method="grouped")
        assert not splits.crossing_groups()
    """

    def __init__(
        self,
        data: Mapping[str, list[ImageRecord]],
        *,
        method: str,
        reason: str = "",
        groups: dict[str, int] | None = None,
    ) -> None:
        super().__init__(data)
        self.method = method
        self.reason = reason
        self.groups = groups

    def crossing_groups(self) -> set[int]:
        """Group ids whose members ended up in more than one split (empty = no leakage)."""
        if self.groups is None:
            return set()
        seen: dict[int, set[str]] = collections.defaultdict(set)
        for name, records in self.items():
            for record in records:
                seen[self.groups[record.path]].add(name)
        return {group for group, names in seen.items() if len(names) > 1}

    def counts(self, class_names: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """``{split: {class: n}}`` (every class listed, zeros included)."""
        if class_names is None:
            class_names = sorted({r.label for recs in self.values() for r in recs})
        out = {}
        for name, records in self.items():
            tally = collections.Counter(r.label for r in records)
            out[name] = {c: int(tally.get(c, 0)) for c in class_names}
        return out


# --------------------------------------------------------------------------------------------
# Slice-number grouping
# --------------------------------------------------------------------------------------------


def slice_number(path: str | os.PathLike) -> tuple[str, int] | None:
    """``(prefix, number)`` parsed from the trailing number of a file name, else ``None``.

    Usage: ``slice_number("Cyst/Cyst- (1219).jpg") == ("Cyst", 1219)``.
    """
    match = _SLICE_RE.match(Path(path).stem)
    if match is None:
        return None
    return match.group("prefix").strip(), int(match.group("number"))


def names_look_like_slices(records: Sequence[ImageRecord], *, min_fraction: float = 0.95) -> bool:
    """True if (almost) every file name ends in a slice number (``<Class>- (<n>).jpg``)."""
    if not records:
        return False
    parsed = sum(slice_number(r.path) is not None for r in records)
    return parsed / len(records) >= min_fraction


def slice_groups(
    records: Sequence[ImageRecord],
    *,
    slice_gap: int = DEFAULT_SLICE_GAP,
    block_size: int | None = DEFAULT_BLOCK_SIZE,
    duplicate_distance: int | None = None,
) -> np.ndarray:
    """Group id per record: neighbouring slices (and optional near-duplicates) share a group.

    Within one (label, name prefix) series, numbers sorted ascending form a run while the gap to
    the previous number is ``<= slice_gap``; runs are cut into windows of ``block_size`` numbers
    (``None``: never cut). Files without a trailing number are their own group. With
    ``duplicate_distance`` (perceptual-hash Hamming distance, one pass over the images via
    :mod:`kidney_tf.data.duplicates`) near-duplicates are merged into one group, across classes
    too (union-find via ``scipy.sparse.csgraph.connected_components``).

    Usage: ``groups = slice_groups(records, slice_gap=5)`` -> ``int64 [len(records)]``.
    """
    if slice_gap < 1:
        raise ValueError(f"slice_gap must be >= 1, got {slice_gap}")
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be >= 1 or None, got {block_size}")
    n = len(records)
    series: dict[tuple[str, str], list[tuple[int, int]]] = collections.defaultdict(list)
    group_of = np.full(n, -1, dtype=np.int64)
    next_id = 0
    for i, record in enumerate(records):
        parsed = slice_number(record.path)
        if parsed is None:
            group_of[i] = next_id
            next_id += 1
        else:
            series[(record.label, parsed[0])].append((parsed[1], i))
    for key in sorted(series):
        members = sorted(series[key])
        run_start = previous = None
        current: tuple[int, int] | None = None
        for number, i in members:
            if previous is None or number - previous > slice_gap:
                run_start = number
            block = 0 if block_size is None else (number - run_start) // block_size
            if current != (run_start, block):
                current = (run_start, block)
                next_id += 1
            group_of[i] = next_id - 1
            previous = number
    if duplicate_distance is not None and n > 1:
        group_of = _merge_duplicates(records, group_of, duplicate_distance)
    return group_of


def _merge_duplicates(
    records: Sequence[ImageRecord], group_of: np.ndarray, max_distance: int
) -> np.ndarray:
    """Union the groups of near-duplicate images (connected components of a sparse graph)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from kidney_tf.data.duplicates import find_duplicates

    index = {r.path: i for i, r in enumerate(records)}
    rows, cols = [], []
    report = find_duplicates([r.path for r in records], max_distance=max_distance)
    for cluster in report.groups:
        members = [index[p] for p in cluster if p in index]
        for a, b in zip(members, members[1:]):
            rows.append(group_of[a])
            cols.append(group_of[b])
    n_groups = int(group_of.max()) + 1
    if not rows:
        return group_of
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_groups, n_groups))
    n_merged, labels = connected_components(graph, directed=False)
    log.info(
        "Near-duplicates (hash distance <= %d) merged %d groups into %d",
        max_distance,
        n_groups,
        n_merged,
    )
    return labels[group_of].astype(np.int64)


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def split_records(
    records: Iterable[ImageRecord] | ScanResult,
    *,
    method: str = "auto",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
    slice_gap: int = DEFAULT_SLICE_GAP,
    block_size: int | None = DEFAULT_BLOCK_SIZE,
    duplicate_distance: int | None = None,
) -> Splits:
    """Split records into train/val/test (records come back with ``split`` set accordingly).

    Methods:
      * ``"folders"``: each record's own split (Training/Testing/val...); a missing val (or test)
        split is carved out of train (``val_fraction`` of the train records), grouped if the names
        are slice numbers, else stratified.
      * ``"stratified"``: stratified random split (scikit-learn ``train_test_split``).
      * ``"grouped"``: leakage-aware; :func:`slice_groups` then scikit-learn
        ``StratifiedGroupKFold`` (fractions are met to whole folds, within ~2 points).
      * ``"ranges"``: per class, the highest slice numbers are the test split and the next
        highest the validation split, each cut where consecutive numbers are more than
        ``slice_gap`` apart (a series boundary), so no test slice has a neighbour in train: the
        "held-out slice ranges" of the real-data benchmark (names must carry slice numbers).
      * ``"all"`` (evaluation only): every record in the test split, fractions ignored.
      * ``"auto"``: folders if every record carries a split, else grouped if the names look
        like slice numbers, else stratified (logged).

    The result is deterministic for a given seed and independent of the input order.

    Usage: ``splits = split_records(records, method="grouped", seed=42)``.
    """
    if isinstance(records, ScanResult):
        records = records.records
    records = sorted(records, key=lambda r: (r.label, r.path))
    if not records:
        raise ValueError("split_records: no records to split")
    check_choice(method, SPLIT_METHODS + EVAL_SPLIT_METHODS, "split method")
    if method == "all":
        return Splits(
            {"train": [], "val": [], "test": [_with_split(r, "test") for r in records]},
            method="all",
            reason="every record is a test record (split='all')",
        )
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )
    group_kwargs = {
        "slice_gap": slice_gap,
        "block_size": block_size,
        "duplicate_distance": duplicate_distance,
    }
    reason = f"requested split={method!r}"
    if method == "auto":
        method, reason = _choose_method(records, (val_fraction, test_fraction), group_kwargs)
        log.info("Split: %s (%s)", method, reason)

    if method == "folders":
        result = _folder_split(records, val_fraction, test_fraction, seed, group_kwargs)
        result.reason = reason
        return result

    if method == "ranges":
        return _range_split(records, val_fraction, test_fraction, slice_gap, reason)

    labels = [r.label for r in records]
    groups = None
    if method == "grouped":
        groups = slice_groups(records, **group_kwargs)
    rest, test = _holdout(np.arange(len(records)), labels, groups, test_fraction, seed)
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = _holdout(rest, labels, groups, val_share, seed)
    parts = {"train": train, "val": val, "test": test}
    group_map = None
    if groups is not None:
        group_map = {r.path: int(g) for r, g in zip(records, groups)}
    return Splits(
        {name: [_with_split(records[i], name) for i in sorted(idx)] for name, idx in parts.items()},
        method=method,
        reason=reason,
        groups=group_map,
    )


def _range_split(
    records: Sequence[ImageRecord],
    val_fraction: float,
    test_fraction: float,
    slice_gap: int,
    reason: str,
) -> Splits:
    """Per class: test = the highest-numbered runs, val = the next, train = the rest."""
    numbered: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for i, record in enumerate(records):
        parsed = slice_number(record.path)
        if parsed is None:
            raise ValueError(
                f"{record.path}: split='ranges' needs a slice number at the end of every file "
                "name (e.g. 'Cyst- (1219).jpg'); use split='grouped' or 'stratified'"
            )
        numbered[record.label].append((parsed[1], i))
    parts: dict[str, list[int]] = {name: [] for name in SPLITS}
    for label in sorted(numbered):
        members = sorted(numbered[label])
        numbers = [n for n, _ in members]
        end = len(members)
        for name, fraction in (("test", test_fraction), ("val", val_fraction)):
            if fraction <= 0:
                continue
            cut = _range_cut(numbers[:end], fraction * len(members), slice_gap)
            if cut is None:
                raise ValueError(
                    f"split='ranges': class {label!r} has no gap of more than {slice_gap} slice "
                    f"numbers to cut a {name} range at (lower slice_gap or use 'grouped')"
                )
            parts[name] += [i for _, i in members[cut:end]]
            end = cut
        parts["train"] += [i for _, i in members[:end]]
    return Splits(
        {name: [_with_split(records[i], name) for i in sorted(idx)] for name, idx in parts.items()},
        method="ranges",
        reason=reason,
    )


def _range_cut(numbers: Sequence[int], size: float, slice_gap: int) -> int | None:
    """The index ``i`` nearest ``len(numbers) - size`` with a series boundary before it."""
    target = len(numbers) - size
    cuts = [i for i in range(1, len(numbers)) if numbers[i] - numbers[i - 1] > slice_gap]
    if not cuts:
        return None
    return min(cuts, key=lambda i: (abs(i - target), -i))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def _choose_method(
    records: Sequence[ImageRecord], fractions: tuple[float, float], group_kwargs: dict[str, Any]
) -> tuple[str, str]:
    with_split = sum(bool(r.split) for r in records)
    if with_split == len(records):
        return "folders", "every record carries a split (Training/Testing folders or CSV column)"
    if with_split:
        raise ValueError(
            f"{with_split} of {len(records)} records carry a split and the rest do not; "
            "give every record a split or none (or pass split='stratified'/'grouped')"
        )
    if not names_look_like_slices(records):
        return "stratified", "no split folders and no slice numbers in the file names"
    if not any(_CT_SLICE_NAME_RE.search(Path(r.path).stem) for r in records):
        # Only the CT-KIDNEY naming "<Class>- (<n>)" says that neighbouring numbers are
        # neighbouring slices; an index in a generated name (phantoms) says nothing of the kind.
        return "stratified", "file names carry indices, not CT slice numbers ('<Class>- (<n>)')"
    # Enough groups per class to hold out the smallest fraction as whole groups?
    held = [f for f in fractions if f > 0]
    needed = math.ceil(1.0 / min(held)) if held else 1
    plain = {k: v for k, v in group_kwargs.items() if k != "duplicate_distance"}
    groups = slice_groups(records, **plain)
    per_class: dict[str, set[int]] = collections.defaultdict(set)
    for record, group in zip(records, groups):
        per_class[record.label].add(int(group))
    fewest = min(per_class, key=lambda c: len(per_class[c]))
    if len(per_class[fewest]) < needed:
        log.warning(
            "File names end in numbers, but class %r forms only %d run(s) of consecutive numbers "
            "(need >= %d to hold out whole runs): using a stratified random split, which leaks if "
            "neighbouring numbers are neighbouring slices; pass split='grouped' with a smaller "
            "block_size to force grouping",
            fewest,
            len(per_class[fewest]),
            needed,
        )
        return "stratified", (
            f"slice-numbered names, but too few number runs in class {fewest!r} to group"
        )
    return "grouped", "file names end in slice numbers: neighbouring slices kept together"


def _folder_split(
    records: list[ImageRecord],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    group_kwargs: dict[str, Any],
) -> Splits:
    missing = [r.path for r in records if not r.split]
    if missing:
        raise ValueError(
            f"split='folders' but {len(missing)} records have no split (first: {missing[0]}); "
            "use a Training/Testing folder layout or a CSV split column"
        )
    parts: dict[str, list[ImageRecord]] = {name: [] for name in SPLITS}
    for record in records:
        parts[normalize_split(record.split)].append(record)
    if not parts["train"]:
        raise ValueError("split='folders' but there is no training split")
    train = parts["train"]
    carve = [(name, f) for name, f in (("test", test_fraction), ("val", val_fraction)) if f > 0]
    carve = [(name, f) for name, f in carve if not parts[name]]
    group_map = None
    if carve:
        labels = [r.label for r in train]
        grouped = names_look_like_slices(train)
        # One grouping of the whole training folder, shared by both carves.
        groups = slice_groups(train, **group_kwargs) if grouped else None
        keep = np.arange(len(train))
        for name, fraction in carve:
            # Fractions are of the training folder, so test then val take the same share.
            share = fraction * len(train) / len(keep)
            keep, carved = _holdout(keep, labels, groups, min(share, 0.9), seed)
            parts[name] = [train[i] for i in sorted(carved)]
            log.info(
                "Split: no %s folder; carved %d of %d training records (%s)",
                name,
                len(carved),
                len(train),
                "grouped by slice number" if grouped else "stratified",
            )
        parts["train"] = [train[i] for i in sorted(keep)]
        if groups is not None:
            group_map = {r.path: int(g) for r, g in zip(train, groups)}
            offset = int(groups.max()) + 1
            for i, r in enumerate(parts["val"] + parts["test"]):
                group_map.setdefault(r.path, offset + i)
    return Splits(
        {name: [_with_split(r, name) for r in recs] for name, recs in parts.items()},
        method="folders",
        groups=group_map,
    )


def _with_split(record: ImageRecord, split: str) -> ImageRecord:
    return record if record.split == split else dataclasses.replace(record, split=split)


def _holdout(
    indices: np.ndarray,
    labels: Sequence[str],
    groups: np.ndarray | None,
    fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, held out ~``fraction``), stratified by label, by group."""
    indices = np.asarray(indices)
    if fraction <= 0 or len(indices) == 0:
        return indices, indices[:0]
    y = np.asarray([labels[i] for i in indices])
    if groups is None:
        return _stratified_holdout(indices, y, fraction, seed)
    return _grouped_holdout(indices, y, np.asarray(groups)[indices], fraction, seed)


def _stratified_holdout(
    indices: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    if len(indices) < 2:
        raise ValueError(f"cannot hold out {fraction:.0%} of {len(indices)} record(s)")
    try:
        return tuple(train_test_split(indices, test_size=fraction, stratify=y, random_state=seed))
    except ValueError as exc:
        log.warning("Stratified split impossible (%s); falling back to a plain random split", exc)
        return tuple(train_test_split(indices, test_size=fraction, random_state=seed))


def _grouped_holdout(
    indices: np.ndarray, y: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    largest_class = max(collections.Counter(y.tolist()).values())
    n_splits, n_held = _fold_plan(fraction, max_splits=min(20, n_groups, largest_class))
    if n_splits < 2:
        raise ValueError(
            f"grouped split: only {n_groups} group(s) of neighbouring slices; cannot hold out "
            f"{fraction:.0%} without leakage (lower slice_gap/block_size or use 'stratified')"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        folds = [test for _, test in splitter.split(indices, y, groups)]
    held = np.concatenate(_best_folds(folds, y, n_held, fraction))
    mask = np.zeros(len(indices), dtype=bool)
    mask[held] = True
    for part in (mask, ~mask):
        missing = sorted(set(y.tolist()) - set(y[part].tolist()))
        if missing:
            log.warning(
                "Grouped split: class(es) %s have too few slice groups to appear in every split "
                "(lower block_size, or use split='stratified' if the images are independent)",
                ", ".join(missing),
            )
            break
    return indices[~mask], indices[mask]


def _best_folds(
    folds: list[np.ndarray], y: np.ndarray, n_held: int, fraction: float
) -> list[np.ndarray]:
    """The ``n_held`` folds that cover the most classes, then best match class mix and size.

    With few groups per class some folds miss a class; picking among folds (the seed still
    decides their make-up) avoids a test split without, say, any Stone images.
    """
    classes, y_codes = np.unique(y, return_inverse=True)
    target = np.bincount(y_codes, minlength=len(classes)) / len(y)
    best, best_score = None, None
    candidates = itertools.combinations(range(len(folds)), n_held)
    for combo in itertools.islice(candidates, 5000):
        idx = np.concatenate([folds[i] for i in combo])
        tally = np.bincount(y_codes[idx], minlength=len(classes))
        mix = np.abs(tally / max(len(idx), 1) - target).sum()
        score = (int((tally > 0).sum()), -(mix + abs(len(idx) / len(y) - fraction)))
        if best_score is None or score > best_score:
            best, best_score = combo, score
    return [folds[i] for i in best]


def _fold_plan(fraction: float, *, max_splits: int, tolerance: float = 0.02) -> tuple[int, int]:
    """(n_splits, folds to hold out): the fewest folds whose share is within ``tolerance``.

    Fewer, larger folds are better stratified (each fold is balanced, a union of small folds is
    not), so 0.15 -> hold out 1 of 7 folds (14.3%); otherwise the closest share wins.
    """
    best, best_err = (1, 0), float("inf")
    for n in range(2, max(max_splits, 1) + 1):
        k = min(max(round(fraction * n), 1), n - 1)
        err = abs(k / n - fraction)
        if err <= tolerance:
            return n, k
        if err < best_err - 1e-9:
            best, best_err = (n, k), err
    return best


# --------------------------------------------------------------------------------------------
# Saving a split
# --------------------------------------------------------------------------------------------


def write_split_csv(
    splits: Mapping[str, Sequence[ImageRecord]] | Sequence[ImageRecord],
    path: str | os.PathLike,
) -> Path:
    """Write the split as a manifest CSV (``path,label,split,mask_path``) atomically.

    Files inside the CSV's folder are written relative to it (portable; reload with
    ``build_datasets(csv, split="folders")``). Files elsewhere are written as absolute paths,
    which ``read_manifest`` only accepts under an explicit data root: reload with
    ``build_datasets(csv, split="folders", root=<data folder>)``.

    Usage: ``write_split_csv(bundle.records, "runs/exp1/split.csv")``.
    """
    from kidney_tf.data.sources import MANIFEST_COLUMNS

    path = Path(path)
    if isinstance(splits, Mapping):
        rows = [_with_split(r, name) for name, records in splits.items() for r in records]
    else:
        rows = list(splits)
    base = Path(os.path.normpath(path.parent.absolute()))
    outside = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        for r in rows:
            image, inside = _manifest_path(r.path, base)
            outside += not inside
            mask = _manifest_path(r.mask_path, base)[0] if r.mask_path else ""
            writer.writerow([image, r.label, r.split or "", mask])
    log.info("Wrote split of %d records to %s", len(rows), path)
    if outside:
        log.info(
            "%d path(s) lie outside %s and were written absolute; reload with root=<data folder>",
            outside,
            base,
        )
    return path


def _manifest_path(file: str, base: Path) -> tuple[str, bool]:
    """(path as written, whether it is inside ``base``)."""
    absolute = Path(os.path.normpath(Path(file).absolute()))
    if base in absolute.parents:
        return absolute.relative_to(base).as_posix(), True
    return absolute.as_posix(), False
