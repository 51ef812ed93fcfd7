"""Splits: determinism, stratification, leakage-aware grouping, folder splits, saved CSVs."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import numpy as np
import pytest

from kidney_tf.data.reading import ImageRecord, read_manifest, scan_folder
from kidney_tf.data.splits import (
    names_look_like_slices,
    slice_groups,
    slice_number,
    split_records,
    write_split_csv,
)


def _records(counts: dict[str, int], *, start: int = 1, step: int = 1) -> list[ImageRecord]:
    """CT-style names ``<Class>- (<n>).jpg``; no files needed (splitting never reads pixels)."""
    return [
        ImageRecord(f"/data/{c}/{c}- ({start + k * step}).jpg", c)
        for c, n in counts.items()
        for k in range(n)
    ]


def _plain(counts: dict[str, int]) -> list[ImageRecord]:
    return [
        ImageRecord(f"/data/{c}/img_{c}_{k:03d}x.png", c)
        for c, n in counts.items()
        for k in range(n)
    ]


def _paths(splits) -> dict[str, list[str]]:
    return {name: [r.path for r in recs] for name, recs in splits.items()}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Cyst/Cyst- (1219).jpg", ("Cyst", 1219)),
        ("Normal- (12).jpg", ("Normal", 12)),
        ("Tr-gl_0045.jpg", ("Tr-gl", 45)),
        ("slice7.png", ("slice", 7)),
        ("IM-0001-0042.dcm", ("IM-0001", 42)),
        ("abc.jpg", None),
    ],
)
def test_slice_number_parses_trailing_numbers(name, expected):
    assert slice_number(name) == expected


@pytest.mark.parametrize("method", ["stratified", "grouped"])
def test_same_seed_same_split_and_input_order_irrelevant(method):
    records = _records({"A": 120, "B": 60, "C": 30})
    kwargs = {"block_size": 10} if method == "grouped" else {}
    first = split_records(records, method=method, seed=7, **kwargs)
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)
    again = split_records(shuffled, method=method, seed=7, **kwargs)
    other = split_records(records, method=method, seed=8, **kwargs)
    assert _paths(first) == _paths(again)
    assert _paths(first) != _paths(other)
    # a partition: every record exactly once, split field set
    all_paths = [p for recs in _paths(first).values() for p in recs]
    assert sorted(all_paths) == sorted(r.path for r in records)
    for name, recs in first.items():
        assert {r.split for r in recs} <= {name}


def test_stratified_keeps_class_proportions():
    counts = {"Cyst": 200, "Normal": 120, "Stone": 60, "Tumor": 40}
    splits = split_records(
        _plain(counts), method="stratified", val_fraction=0.15, test_fraction=0.2
    )
    assert splits.method == "stratified"
    total = sum(counts.values())
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes["test"] == pytest.approx(0.2 * total, abs=2)
    assert sizes["val"] == pytest.approx(0.15 * total, abs=2)
    for name, per_class in splits.counts().items():
        n = sizes[name]
        for c, k in per_class.items():
            assert k / n == pytest.approx(counts[c] / total, abs=0.02), (name, c)


def test_stratified_with_a_singleton_class_falls_back_instead_of_crashing():
    records = _plain({"A": 30, "B": 1})
    splits = split_records(records, method="stratified", seed=0)
    assert sum(len(v) for v in splits.values()) == 31


def test_grouped_split_keeps_number_windows_together():
    # Every number 1..400 present, as in the full CT-KIDNEY dataset: runs never break, so the
    # groups are windows of block_size numbers.
    records = _records({"Cyst": 400, "Normal": 400, "Stone": 200, "Tumor": 200})
    splits = split_records(records, method="grouped", block_size=50, seed=3)
    assert splits.method == "grouped"
    assert splits.crossing_groups() == set()
    where = {r.path: name for name, recs in splits.items() for r in recs}
    for r in records:
        label, number = slice_number(r.path)
        window_start = (number - 1) // 50 * 50 + 1
        mate = f"/data/{label}/{label}- ({window_start}).jpg"
        assert where[r.path] == where[mate]
    sizes = {k: len(v) for k, v in splits.items()}
    assert 0.10 * len(records) <= sizes["test"] <= 0.20 * len(records)
    assert 0.10 * len(records) <= sizes["val"] <= 0.20 * len(records)
    assert all(v > 0 for c in splits.counts().values() for v in c.values())


def test_slice_groups_runs_and_blocks():
    numbers = [1, 2, 3, 9, 10, 30, 31, 32, 33, 34]
    records = [ImageRecord(f"/d/A/A- ({n}).jpg", "A") for n in numbers]
    groups = slice_groups(records, slice_gap=2, block_size=None)
    assert len(set(groups[:3])) == 1 and len(set(groups[3:5])) == 1 and len(set(groups[5:])) == 1
    assert len(set(groups)) == 3
    cut = slice_groups(records, slice_gap=2, block_size=3)
    assert len({cut[5], cut[6], cut[7]}) == 1 and cut[8] != cut[7]
    # same number in another class is another group
    other = slice_groups([*records, ImageRecord("/d/B/B- (2).jpg", "B")], slice_gap=2)
    assert other[-1] not in set(other[:-1])


@pytest.mark.real_data
def test_grouped_split_on_real_kidney_names(kidney_ct_sample):
    scan = scan_folder(kidney_ct_sample, validate=False)
    assert names_look_like_slices(scan.records)
    # The sample keeps every ~10th-50th slice; a gap of 40 makes real multi-slice groups.
    gap = 40
    splits = split_records(scan.records, method="grouped", slice_gap=gap, block_size=None, seed=42)
    sizes = collections.Counter(splits.groups.values())
    assert max(sizes.values()) > 1, "expected neighbouring slices to form groups"
    assert splits.crossing_groups() == set()
    # independent check: no two same-class images within `gap` numbers sit in different splits
    where = {r.path: name for name, recs in splits.items() for r in recs}
    by_class = collections.defaultdict(list)
    for r in scan.records:
        by_class[r.label].append((slice_number(r.path)[1], r.path))
    for items in by_class.values():
        items.sort()
        for (n1, p1), (n2, p2) in zip(items, items[1:]):
            if n2 - n1 <= gap:
                assert where[p1] == where[p2], (p1, p2)
    assert all(splits[name] for name in ("train", "val", "test"))


@pytest.mark.real_data
def test_auto_picks_grouped_for_slice_names(kidney_ct_sample, caplog):
    scan = scan_folder(kidney_ct_sample, validate=False)
    with caplog.at_level("INFO", logger="kidney_tf"):
        splits = split_records(scan.records, method="auto")
    assert splits.method == "grouped"
    assert "slice numbers" in splits.reason
    assert "grouped" in caplog.text


def test_auto_picks_folders_then_stratified():
    with_split = [
        ImageRecord(f"/d/A/a{k}x.png", "A", "train" if k < 8 else "test") for k in range(10)
    ]
    assert split_records(with_split, method="auto").method == "folders"
    assert split_records(_plain({"A": 10, "B": 10}), method="auto").method == "stratified"
    mixed = [*with_split, ImageRecord("/d/A/zz.png", "A")]
    with pytest.raises(ValueError, match="carry a split"):
        split_records(mixed, method="auto")


def test_folder_split_keeps_test_and_carves_val(tmp_path):
    for split in ("Training", "Testing"):
        for c, n in (
            ("glioma", 20 if split == "Training" else 5),
            ("notumor", 10 if split == "Training" else 4),
        ):
            folder = tmp_path / split / c
            folder.mkdir(parents=True)
            for k in range(n):
                (folder / f"img{k}x.jpg").write_bytes(b"")
    scan = scan_folder(tmp_path, validate=False)
    splits = split_records(scan.records, method="folders", val_fraction=0.2, seed=1)
    test_paths = {r.path for r in scan.records if r.split == "test"}
    assert {r.path for r in splits["test"]} == test_paths
    assert len(splits["val"]) == 6  # 20% of the 30 training images, stratified
    assert splits.counts()["val"] == {"glioma": 4, "notumor": 2}
    assert not {r.path for r in splits["val"]} & {r.path for r in splits["train"]}
    assert all(r.split == "val" for r in splits["val"])


def test_folder_split_carves_missing_test_and_rejects_unknown_split_names():
    records = [ImageRecord(f"/d/A/a{k}x.png", "A", "Training") for k in range(40)]
    splits = split_records(records, method="folders", val_fraction=0.1, test_fraction=0.25)
    assert len(splits["test"]) == 10 and len(splits["val"]) == 4
    with pytest.raises(ValueError, match="unknown split"):
        split_records([ImageRecord("/d/A/a.png", "A", "holdout")], method="folders")
    with pytest.raises(ValueError, match="no split"):
        split_records([ImageRecord("/d/A/a.png", "A")], method="folders")


def test_argument_validation():
    records = _plain({"A": 10})
    with pytest.raises(ValueError, match="method"):
        split_records(records, method="random")
    with pytest.raises(ValueError, match="< 1"):
        split_records(records, method="stratified", val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="no records"):
        split_records([], method="stratified")


def test_grouped_split_merges_near_duplicates(tmp_path):
    rng = np.random.default_rng(0)
    import cv2

    paths = []
    for k in range(12):
        image = (rng.random((64, 64)) * 255).astype(np.uint8)
        image = cv2.GaussianBlur(image, (0, 0), 4)
        path = tmp_path / "A" / f"scan_{chr(97 + k)}x.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), image)
        paths.append(path)
    # b is a byte-identical copy of a under an unrelated name
    paths[1].write_bytes(paths[0].read_bytes())
    records = [ImageRecord(str(p), "A") for p in paths]
    plain = slice_groups(records)
    assert plain[0] != plain[1]
    merged = slice_groups(records, duplicate_distance=0)
    assert merged[0] == merged[1]
    assert len(set(merged)) == len(records) - 1


def test_write_split_csv_round_trip(tmp_path):
    data = tmp_path / "data"
    for c in ("A", "B"):
        (data / c).mkdir(parents=True)
        for k in range(10):
            (data / c / f"{c}- ({k + 1}).png").write_bytes(b"x")
    scan = scan_folder(data, validate=False)
    splits = split_records(scan.records, method="stratified", seed=5)
    csv_path = write_split_csv(splits, data / "split.csv")
    assert "/data/" not in csv_path.read_text()  # relative paths
    back = read_manifest(csv_path, validate=False)
    assert sorted((r.path, r.split) for r in back.records) == sorted(
        (r.path, r.split) for recs in splits.values() for r in recs
    )
    assert [p.name for p in data.iterdir() if p.name.startswith(".")] == []  # no temp leftovers
    again = split_records(back.records, method="folders")
    assert _paths(again) == _paths(splits)


def test_write_split_csv_outside_data_root_reloads_with_root(tmp_path):
    data = tmp_path / "data" / "A"
    data.mkdir(parents=True)
    records = []
    for k in range(4):
        (data / f"a{k}.png").write_bytes(b"x")
        records.append(ImageRecord(str(data / f"a{k}.png"), "A", "train" if k else "test"))
    csv_path = write_split_csv(
        {"train": records[1:], "val": [], "test": records[:1]}, tmp_path / "run" / "split.csv"
    )
    back = read_manifest(csv_path, root=tmp_path / "data", validate=False)
    assert {Path(r.path).name: r.split for r in back.records} == {
        "a0.png": "test",
        "a1.png": "train",
        "a2.png": "train",
        "a3.png": "train",
    }


def test_auto_treats_generated_indices_as_independent_images(caplog):
    # Phantom-style names numbered 0..49 per class are indices, not CT slice numbers.
    records = [
        ImageRecord(f"/p/{c}/kidney-ct_{c}_{k:05d}.png", c)
        for c in ("Cyst", "Stone")
        for k in range(50)
    ]
    with caplog.at_level("WARNING", logger="kidney_tf"):
        splits = split_records(records, method="auto")
    assert splits.method == "stratified"
    assert "not CT slice numbers" in splits.reason
    assert caplog.text == ""
    forced = split_records(records, method="grouped", block_size=5)
    assert forced.method == "grouped" and forced.crossing_groups() == set()


def test_auto_does_not_group_long_consecutive_runs(caplog):
    # CT-style names numbered 1..50 per class: one run per class, nothing to hold out.
    records = [
        ImageRecord(f"/p/{c}/{c}- ({k}).jpg", c) for c in ("Cyst", "Stone") for k in range(1, 51)
    ]
    with caplog.at_level("WARNING", logger="kidney_tf"):
        splits = split_records(records, method="auto")
    assert splits.method == "stratified"
    assert "too few number runs" in splits.reason
    assert "block_size" in caplog.text
