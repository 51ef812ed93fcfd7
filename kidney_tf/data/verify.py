"""Check a dataset against its manifest: classes, counts, unreadable files, names, duplicates, leakage.

``verify_dataset`` reads a class-folder tree, a split-folder tree or a manifest CSV (for example
the split CSV a training run wrote), decode-checks every file, compares classes and counts with a
:class:`~kidney_tf.data.manifests.DatasetManifest`, and looks for exact and near-duplicate
images. Duplicates **across** splits are errors (test images with a twin in train measure
memorisation); duplicates **within** a split are reported as info, with a leakage summary that
says how many images a random image-level split would put on both sides.

Severity: ``error`` (missing/extra classes, unreadable files, cross-split or cross-label exact
duplicates) and ``warning`` (count mismatches, layout notes, unexpected file names, near
duplicates with different labels) make :attr:`VerifyReport.exit_code` 1; ``info`` does not.

Usage::

    from kidney_tf.data.verify import verify_dataset
    report = verify_dataset("CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone", "ct_kidney")
    print(report.summary()); report.write_json("verify.json")
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kidney_tf.data.duplicates import DEFAULT_MAX_DISTANCE, find_duplicates
from kidney_tf.data.manifests import DatasetManifest, load_manifest
from kidney_tf.data.records import BadFile, ImageRecord, ScanResult, split_order
from kidney_tf.data.sources import load_source, read_manifest
from kidney_tf.utils.io import check_output_file, input_tree, write_json_atomic
from kidney_tf.utils.logging import get_logger

logger = get_logger(__name__)

SEVERITIES = ("error", "warning", "info")
_EXAMPLES = 5  # examples shown per issue in the text summary
_MAX_EXAMPLES = 20  # examples kept per issue in the report (full lists are in "pairs"/"files")


def _examples(items: list[str]) -> dict[str, Any]:
    return {"count": len(items), "examples": items[:_MAX_EXAMPLES]}


@dataclass
class Issue:
    """One finding: ``severity`` in error/warning/info, a stable ``code``, a one-line message."""

    severity: str
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyReport:
    """Everything :func:`verify_dataset` found; ``summary()`` for people, ``to_dict()`` for JSON."""

    source: str
    data_root: str
    manifest: str | None
    n_images: int
    class_names: list[str]
    counts: dict[str, dict[str, int]]
    expected: dict[str, dict[str, int]] | None
    issues: list[Issue]
    bad_files: list[BadFile]
    duplicates: dict[str, Any]
    leakage: dict[str, Any]
    count_table: list[dict[str, Any]] = field(default_factory=list)

    def _of(self, severity: str) -> list[Issue]:
        return [i for i in self.issues if i.severity == severity]

    @property
    def errors(self) -> list[Issue]:
        return self._of("error")

    @property
    def warnings(self) -> list[Issue]:
        return self._of("warning")

    @property
    def infos(self) -> list[Issue]:
        return self._of("info")

    @property
    def ok(self) -> bool:
        """True when there is no error and no warning."""
        return not self.errors and not self.warnings

    @property
    def exit_code(self) -> int:
        """0 clean, 1 problems found."""
        return 0 if self.ok else 1

    def codes(self) -> set[str]:
        return {i.code for i in self.issues}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "data_root": self.data_root,
            "manifest": self.manifest,
            "n_images": self.n_images,
            "class_names": self.class_names,
            "counts": self.counts,
            "expected": self.expected,
            "count_table": self.count_table,
            "summary": {s: len(self._of(s)) for s in SEVERITIES},
            "issues": [asdict(i) for i in self.issues],
            "bad_files": [asdict(b) for b in self.bad_files],
            "duplicates": self.duplicates,
            "leakage": self.leakage,
        }

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` atomically (only onto a new file or an earlier report)."""
        check_output_file(
            path, inputs=[input_tree(self.data_root)], is_own=is_verify_report, what="report"
        )
        return write_json_atomic(path, self.to_dict())

    def summary(self) -> str:
        """A readable multi-line summary."""
        lines = [f"Dataset: {self.source}"]
        if self.data_root != self.source:
            lines.append(f"Data root: {self.data_root}")
        if self.manifest:
            lines.append(f"Manifest: {self.manifest}")
        splits = [s for s in self.counts if s != "all"]
        lines.append(
            f"Images: {self.n_images} readable, {len(self.bad_files)} unreadable; "
            f"classes: {', '.join(self.class_names) or 'none'}; "
            f"splits: {', '.join(splits) if splits else 'none'}"
        )
        if self.count_table:
            lines.append("Counts:")
            lines.append(f"  {'split':<6} {'class':<12} {'expected':>9} {'found':>7} {'diff':>7}")
            for row in self.count_table:
                expected = "-" if row["expected"] is None else row["expected"]
                lines.append(
                    f"  {row['split']:<6} {row['class']:<12} {expected!s:>9} {row['found']:>7} "
                    f"{row['diff']:>+7}"
                )
        else:
            for split, row in self.counts.items():
                lines.append(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
        if self.duplicates:
            d = self.duplicates
            lines.append(
                f"Duplicates (phash distance <= {d['max_distance']}): {d['exact_pairs']} exact "
                f"pair(s), {d['near_pairs']} near pair(s), {d['groups']} group(s); "
                f"across splits: {d['cross_split_pairs']}"
            )
        if self.leakage.get("advice"):
            lines.append(f"Leakage: {self.leakage['advice']}")
        for title, severities in (("Problems:", ("error", "warning")), ("Notes:", ("info",))):
            chosen = [i for i in self.issues if i.severity in severities]
            if not chosen:
                continue
            lines.append(title)
            for issue in chosen:
                lines.append(f"  [{issue.severity}] {issue.message}")
                examples = issue.details.get("examples", [])
                for example in examples[:_EXAMPLES]:
                    lines.append(f"      {example}")
                more = issue.details.get("count", len(examples)) - min(len(examples), _EXAMPLES)
                if more > 0:
                    lines.append(f"      ... and {more} more")
        n_err, n_warn = len(self.errors), len(self.warnings)
        verdict = "CLEAN" if self.ok else f"PROBLEMS FOUND ({n_err} error(s), {n_warn} warning(s))"
        lines.append(f"Result: {verdict}")
        return "\n".join(lines)


def locate_data_root(root: str | os.PathLike, manifest: DatasetManifest | None) -> Path:
    """Descend into the manifest's download folder if ``root`` is its parent (Kaggle nests it)."""
    path = Path(root)
    if manifest is None or not manifest.folder or not path.is_dir():
        return path
    for _ in range(3):
        inner = path / manifest.folder
        if not inner.is_dir():
            break
        path = inner
    return path


def _load(
    root: Path, split_csv: str | os.PathLike | None, strict: bool, workers: int | None
) -> ScanResult:
    if split_csv is not None:
        return read_manifest(split_csv, root=root, strict=strict, workers=workers)
    return load_source(root, strict=strict, workers=workers)


def _compare_counts(
    manifest: DatasetManifest, counts: dict[str, dict[str, int]], issues: list[Issue]
) -> list[dict[str, Any]]:
    """Count table rows (split, class, expected, found, diff); adds warnings to ``issues``."""
    assert manifest.counts is not None
    expected = manifest.counts
    found_splits = [s for s in counts if s != "all"]
    if "all" in expected or not found_splits:
        if "all" not in expected:
            folders = ", ".join(manifest.split_folders) or ", ".join(expected)
            issues.append(
                Issue(
                    "warning",
                    "missing_splits",
                    f"expected splits {', '.join(expected)} (folders {folders}); the data has "
                    "none, so totals per class are compared",
                )
            )
        target = {"all": manifest.class_totals()}
        merged: dict[str, dict[str, int]] = {"all": Counter()}
        for row in counts.values():
            merged["all"].update(row)
    else:
        target = expected
        merged = {s: Counter(row) for s, row in counts.items() if s in expected}
        if "val" in counts and "val" not in expected and "train" in expected:
            merged.setdefault("train", Counter()).update(counts["val"])
            issues.append(
                Issue(
                    "info",
                    "val_from_train",
                    "validation images counted with train for the comparison (the dataset "
                    "has no official val split)",
                )
            )
        for split in expected:
            if split not in counts:
                issues.append(Issue("warning", "missing_split", f"split {split!r} has no images"))
        for split in counts:
            if split not in expected and not (split == "val" and "train" in expected):
                issues.append(
                    Issue("warning", "extra_split", f"split {split!r} is not in the manifest")
                )
    rows, mismatched = [], []
    for split in split_order(set(target) | set(merged)):
        classes = list(manifest.classes) + sorted(
            set(merged.get(split, {})) - set(manifest.classes)
        )
        for name in classes:
            want = target.get(split, {}).get(name)
            have = int(merged.get(split, {}).get(name, 0))
            row = {
                "split": split,
                "class": name,
                "expected": want,
                "found": have,
                "diff": have - (want or 0),
            }
            rows.append(row)
            if want != have:
                mismatched.append(row)
    if mismatched:
        total_want = sum(r["expected"] or 0 for r in rows)
        total_have = sum(r["found"] for r in rows)
        issues.append(
            Issue(
                "warning",
                "count_mismatch",
                f"{len(mismatched)} of {len(rows)} split/class counts differ from the manifest "
                f"(expected {total_want} images in total, found {total_have})",
                {
                    "rows": mismatched,
                    **_examples(
                        [
                            f"{r['split']}/{r['class']}: expected {r['expected']}, "
                            f"found {r['found']}"
                            for r in mismatched
                        ]
                    ),
                },
            )
        )
    return rows


def _check_manifest(
    manifest: DatasetManifest, scan: ScanResult, issues: list[Issue]
) -> list[dict[str, Any]]:
    found = set(scan.class_names)
    expected = set(manifest.classes)
    if expected - found:
        missing = sorted(expected - found)
        issues.append(
            Issue(
                "error",
                "missing_classes",
                f"missing class(es): {', '.join(missing)}",
                {"classes": missing},
            )
        )
    if found - expected:
        extra = sorted(found - expected)
        issues.append(
            Issue(
                "error",
                "extra_classes",
                f"class(es) not in the manifest: {', '.join(extra)}",
                {"classes": extra},
            )
        )
    rows = _compare_counts(manifest, scan.counts(), issues) if manifest.counts else []
    unexpected = []
    for record in scan.records:
        pattern = manifest.pattern(record.label)
        if pattern is not None and not pattern.fullmatch(Path(record.path).name):
            unexpected.append(f"{record.label}/{Path(record.path).name}")
    if unexpected:
        issues.append(
            Issue(
                "warning",
                "unexpected_file_names",
                f"{len(unexpected)} file(s) do not follow the dataset's file naming (added or "
                "augmented copies?)",
                {"files": unexpected, **_examples(unexpected)},
            )
        )
    return rows


def _pair_entry(pair: Any, a: ImageRecord, b: ImageRecord) -> dict[str, Any]:
    return {
        "a": pair.a,
        "b": pair.b,
        "distance": pair.distance,
        "exact": pair.exact,
        "split_a": a.split,
        "split_b": b.split,
        "label_a": a.label,
        "label_b": b.label,
    }


def _describe(entry: dict[str, Any]) -> str:
    kind = "exact" if entry["exact"] else f"d={entry['distance']}"
    a = f"{entry['split_a'] or 'all'}/{entry['label_a']}/{Path(entry['a']).name}"
    b = f"{entry['split_b'] or 'all'}/{entry['label_b']}/{Path(entry['b']).name}"
    return f"{a} <-> {b} ({kind})"


def _check_duplicates(
    scan: ScanResult, max_distance: int, workers: int | None, issues: list[Issue]
) -> tuple[dict[str, Any], dict[str, Any], list[BadFile]]:
    by_path = {r.path: r for r in scan.records}
    report = find_duplicates(list(by_path), max_distance=max_distance, workers=workers)
    if report.constant:
        issues.append(
            Issue(
                "warning",
                "constant_images",
                f"{len(report.constant)} image(s) hold a single pixel value (blank or all black; "
                f"nothing to learn from), e.g. {report.constant[0]}",
                _examples(report.constant),
            )
        )
    cross, within, conflicts = [], [], []
    for pair in report.pairs:
        a, b = by_path[pair.a], by_path[pair.b]
        entry = _pair_entry(pair, a, b)
        if a.split and b.split and a.split != b.split:
            cross.append(entry)
        else:
            within.append(entry)
        if a.label != b.label:
            conflicts.append(entry)
    has_splits = any(r.split for r in scan.records)
    totals = Counter(r.split or "all" for r in scan.records)
    twins: dict[str, set[str]] = {}
    for entry in cross:
        twins.setdefault(entry["split_a"], set()).add(entry["a"])
        twins.setdefault(entry["split_b"], set()).add(entry["b"])
    in_groups = sum(len(g) for g in report.groups)
    largest = max((len(g) for g in report.groups), default=0)
    n = len(scan.records)
    leakage: dict[str, Any] = {
        "has_splits": has_splits,
        "cross_split_pairs": len(cross),
        "exact_cross_split_pairs": sum(e["exact"] for e in cross),
        "images_with_twin_in_other_split": {s: len(twins.get(s, ())) for s in split_order(totals)},
        "fraction_with_twin_in_other_split": {
            s: round(len(twins.get(s, ())) / totals[s], 4) for s in split_order(totals)
        },
        "duplicate_groups": len(report.groups),
        "images_in_duplicate_groups": in_groups,
        "largest_group": largest,
    }
    if cross:
        worst = {s: v for s, v in leakage["images_with_twin_in_other_split"].items() if v}
        leakage["advice"] = (
            "images with a twin in another split: "
            + ", ".join(f"{s} {v}/{totals[s]}" for s, v in worst.items())
            + "; keep each duplicate group in one split (grouped split) or drop the twins"
        )
        n_exact = leakage["exact_cross_split_pairs"]
        issues.append(
            Issue(
                "error",
                "cross_split_duplicates",
                f"{len(cross)} duplicate pair(s) across splits ({n_exact} exact, "
                f"{len(cross) - n_exact} near): split leakage",
                {"pairs": cross, **_examples([_describe(e) for e in cross])},
            )
        )
    elif not has_splits and report.groups:
        leakage["advice"] = (
            f"no split yet: {in_groups} of {n} images ({in_groups / max(n, 1):.0%}) sit in "
            f"{len(report.groups)} near-duplicate group(s) (largest {largest}); a random "
            "image-level split would put twins in train and test: use a grouped split "
            "(kidney_tf.data.splits, method='grouped') and re-check it with --split-csv"
        )
    elif has_splits:
        leakage["advice"] = "no duplicates across splits"
    exact_conflicts = [e for e in conflicts if e["exact"]]
    near_conflicts = [e for e in conflicts if not e["exact"]]
    if exact_conflicts:
        issues.append(
            Issue(
                "error",
                "label_conflict",
                f"{len(exact_conflicts)} byte-identical image pair(s) carry different labels",
                {"pairs": exact_conflicts, **_examples([_describe(e) for e in exact_conflicts])},
            )
        )
    if near_conflicts:
        issues.append(
            Issue(
                "warning",
                "near_duplicate_label_conflict",
                f"{len(near_conflicts)} near-duplicate pair(s) carry different labels (the same "
                "anatomy in two classes, or a mislabelled copy)",
                {"pairs": near_conflicts, **_examples([_describe(e) for e in near_conflicts])},
            )
        )
    if within:
        n_exact = sum(e["exact"] for e in within)
        issues.append(
            Issue(
                "info",
                "within_split_duplicates",
                f"{len(within)} duplicate pair(s) within a split ({n_exact} exact, "
                f"{len(within) - n_exact} near) in {len(report.groups)} group(s)",
                {
                    "pairs": within,
                    "groups": report.groups,
                    **_examples([_describe(e) for e in within]),
                },
            )
        )
    summary = {
        "max_distance": max_distance,
        "exact_pairs": len(report.exact_pairs),
        "near_pairs": len(report.near_pairs),
        "groups": len(report.groups),
        "cross_split_pairs": len(cross),
        "within_split_pairs": len(within),
    }
    return summary, leakage, report.bad_files


def is_verify_report(path: str | os.PathLike) -> bool:
    """True when ``path`` is a JSON report written by :meth:`VerifyReport.write_json`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and {"ok", "source", "data_root", "issues"} <= set(data)


def verify_dataset(
    root: str | os.PathLike,
    manifest: str | os.PathLike | DatasetManifest | None = None,
    *,
    split_csv: str | os.PathLike | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    strict: bool = False,
    check_duplicates: bool = True,
    workers: int | None = None,
) -> VerifyReport:
    """Verify a dataset folder or manifest CSV (optionally against a dataset manifest).

    Args:
        root: dataset folder (class folders, split folders, or the folder that contains the
            manifest's download folder) or a manifest CSV with a ``split`` column.
        manifest: a :class:`DatasetManifest`, a manifest name (``"ct_kidney"``) or JSON path;
            None checks integrity and duplicates only.
        split_csv: a proposed split (``path,label,split``) whose paths lie under ``root``
            (relative to ``root`` or absolute inside it); checked instead of the folder layout.
        max_distance: phash Hamming distance up to which images count as near duplicates.
        strict: raise :class:`~kidney_tf.data.pixels.ImageReadError` on the first bad file.
        check_duplicates: set False to skip hashing (integrity and counts only).

    Usage: ``verify_dataset("brain-tumor-mri-dataset", "brain_tumor_mri").exit_code``
    """
    spec = load_manifest(manifest) if manifest is not None else None
    data_root = locate_data_root(root, spec)
    if split_csv is not None and not data_root.is_dir():
        raise FileNotFoundError(f"{data_root}: --root must be the data folder with --split-csv")
    logger.info("Checking %s%s", split_csv or data_root, f" against {spec.name}" if spec else "")
    scan = _load(data_root, split_csv, strict, workers)
    issues: list[Issue] = [Issue("warning", "layout", note) for note in scan.warnings]
    bad_files = list(scan.bad_files)
    count_table = _check_manifest(spec, scan, issues) if spec else []
    duplicates: dict[str, Any] = {}
    leakage: dict[str, Any] = {}
    if check_duplicates and scan.records:
        logger.info("Hashing %d images for duplicates", len(scan.records))
        duplicates, leakage, more_bad = _check_duplicates(scan, max_distance, workers, issues)
        bad_files.extend(more_bad)
    if bad_files:
        issues.append(
            Issue(
                "error",
                "bad_files",
                f"{len(bad_files)} unreadable or inconsistent file(s) left out",
                {"files": [asdict(b) for b in bad_files], **_examples([str(b) for b in bad_files])},
            )
        )
    order = {s: i for i, s in enumerate(SEVERITIES)}
    issues.sort(key=lambda i: order[i.severity])
    source = os.fspath(split_csv) if split_csv is not None else os.fspath(root)
    return VerifyReport(
        source=source,
        data_root=os.fspath(data_root),
        manifest=f"{spec.name} ({spec.title})" if spec else None,
        n_images=len(scan.records),
        class_names=list(scan.class_names),
        counts=scan.counts(),
        expected=spec.counts if spec else None,
        issues=issues,
        bad_files=bad_files,
        duplicates=duplicates,
        leakage=leakage,
        count_table=count_table,
    )
