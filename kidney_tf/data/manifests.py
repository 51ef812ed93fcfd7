"""Dataset manifests: what a public dataset should contain (classes, counts, layout, split rule).

Manifests are JSON files in the repository's ``data_manifests/`` folder (one per dataset, e.g.
``ct_kidney.json``, ``brain_tumor_mri.json``). :func:`load_manifest` accepts a name or a path.
The folder is found in this order: ``$KIDNEY_TF_MANIFESTS``, the source checkout
(``<repo>/data_manifests``), ``<sys.prefix>/share/kidney_tf/data_manifests``.

JSON fields (``schema_version`` 1): ``name``, ``title``, ``classes`` (list), ``counts``
(``{split: {class: n}}``, split ``"all"`` when the dataset has no official split, or ``null`` when
counts are not fixed), ``total``, ``modality``, ``folder`` (top folder as downloaded, or null),
``layout`` (human-readable folder layout), ``split_folders``
(``{folder name: split}``), ``file_patterns`` (``{class: regex}`` for file names),
``split`` (``official``, ``rule``, ``recommended``...), ``image``, ``source`` (url, citation...),
``notes``.

Usage::

    from kidney_tf.data.manifests import load_manifest
    manifest = load_manifest("ct_kidney")
    manifest.total            # 12446
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ENV_VAR = "KIDNEY_TF_MANIFESTS"


@dataclass(frozen=True)
class DatasetManifest:
    """Expected content of a dataset (see the module docstring for the JSON fields)."""

    name: str
    title: str
    classes: tuple[str, ...]
    counts: dict[str, dict[str, int]] | None = None
    modality: str | None = None
    folder: str | None = None
    layout: str | None = None
    split_folders: dict[str, str] = field(default_factory=dict)
    file_patterns: dict[str, str] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    image: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    path: str | None = None

    @property
    def total(self) -> int | None:
        """Total expected image count, or None when counts are not fixed."""
        if self.counts is None:
            return None
        return sum(sum(row.values()) for row in self.counts.values())

    @property
    def splits(self) -> tuple[str, ...]:
        """Expected split names (``("all",)`` when the dataset has no official split)."""
        return tuple(self.counts) if self.counts else ()

    def class_totals(self) -> dict[str, int]:
        """Expected images per class over all splits."""
        totals = dict.fromkeys(self.classes, 0)
        for row in (self.counts or {}).values():
            for name, n in row.items():
                totals[name] += n
        return totals

    def pattern(self, class_name: str) -> re.Pattern[str] | None:
        """Compiled file-name regex for ``class_name`` (or the ``"*"`` pattern), if any."""
        text = self.file_patterns.get(class_name, self.file_patterns.get("*"))
        return re.compile(text) if text else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "title": self.title,
            "classes": list(self.classes),
            "counts": self.counts,
            "modality": self.modality,
            "folder": self.folder,
            "layout": self.layout,
            "split_folders": self.split_folders,
            "file_patterns": self.file_patterns,
            "split": self.split,
            "image": self.image,
            "source": self.source,
            "notes": list(self.notes),
        }


def manifest_dirs() -> list[Path]:
    """Folders searched for named manifests, in order (existing ones only)."""
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates.append(Path(__file__).resolve().parents[2] / "data_manifests")
    candidates.append(Path(sys.prefix) / "share" / "kidney_tf" / "data_manifests")
    return [c for c in candidates if c.is_dir()]


def list_manifests() -> list[str]:
    """Names of the manifests that :func:`load_manifest` can load by name."""
    names: set[str] = set()
    for folder in manifest_dirs():
        names.update(p.stem for p in folder.glob("*.json"))
    return sorted(names)


def _fail(source: str, reason: str) -> ValueError:
    return ValueError(f"{source}: invalid dataset manifest: {reason}")


def manifest_from_dict(data: dict[str, Any], *, source: str = "<dict>") -> DatasetManifest:
    """Validate a parsed manifest and build a :class:`DatasetManifest`."""
    if not isinstance(data, dict):
        raise _fail(source, "top level must be a JSON object")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise _fail(source, f"schema_version {version!r} not supported (expected 1)")
    for key in ("name", "title", "classes"):
        if key not in data:
            raise _fail(source, f"missing field {key!r}")
    classes = data["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _fail(source, "'classes' must be a non-empty list of names")
    if len(set(classes)) != len(classes):
        raise _fail(source, "'classes' has duplicates")
    counts = data.get("counts")
    if counts is not None:
        if not isinstance(counts, dict) or not counts:
            raise _fail(source, "'counts' must be {split: {class: n}} or null")
        for split, row in counts.items():
            if split not in ("train", "val", "test", "all"):
                raise _fail(source, f"counts split {split!r} must be train, val, test or all")
            if not isinstance(row, dict) or set(row) != set(classes):
                raise _fail(source, f"counts[{split!r}] must list exactly the classes {classes}")
            if not all(isinstance(n, int) and n >= 0 for n in row.values()):
                raise _fail(source, f"counts[{split!r}] values must be non-negative integers")
        if "all" in counts and len(counts) > 1:
            raise _fail(source, "counts split 'all' cannot be combined with other splits")
    patterns = data.get("file_patterns") or {}
    for name, text in patterns.items():
        try:
            re.compile(text)
        except re.error as exc:
            raise _fail(source, f"file_patterns[{name!r}] is not a valid regex ({exc})") from None
    if "total" in data and counts is not None:
        total = sum(sum(row.values()) for row in counts.values())
        if data["total"] != total:
            raise _fail(source, f"'total' {data['total']} != sum of counts {total}")
    return DatasetManifest(
        name=str(data["name"]),
        title=str(data["title"]),
        classes=tuple(classes),
        counts={s: dict(row) for s, row in counts.items()} if counts else None,
        modality=data.get("modality"),
        folder=data.get("folder"),
        layout=data.get("layout"),
        split_folders=dict(data.get("split_folders") or {}),
        file_patterns=dict(patterns),
        split=dict(data.get("split") or {}),
        image=dict(data.get("image") or {}),
        source=dict(data.get("source") or {}),
        notes=tuple(data.get("notes") or ()),
        path=None if source == "<dict>" else source,
    )


def resolve_manifest_path(name_or_path: str | os.PathLike) -> Path:
    """Path of a manifest given as a file path (``.json`` optional) or a bare name."""
    text = os.fspath(name_or_path)
    candidates = [Path(text), Path(text + ".json")] if not text.endswith(".json") else [Path(text)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    stem = Path(text).stem if text.endswith(".json") else Path(text).name
    for folder in manifest_dirs():
        candidate = folder / f"{stem}.json"
        if candidate.is_file():
            return candidate
    known = ", ".join(list_manifests()) or "none found"
    raise FileNotFoundError(f"{text}: no such dataset manifest (known names: {known})")


def load_manifest(name_or_path: str | os.PathLike | DatasetManifest) -> DatasetManifest:
    """Load a manifest by name (``"ct_kidney"``) or JSON path; validated, never evaluated.

    Usage: ``load_manifest("brain_tumor_mri").counts["test"]["glioma"]  # 300``
    """
    if isinstance(name_or_path, DatasetManifest):
        return name_or_path
    path = resolve_manifest_path(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _fail(str(path), f"not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise _fail(str(path), "not a JSON text file (binary content)") from None
    return manifest_from_dict(data, source=str(path))
