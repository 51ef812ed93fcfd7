"""Perceptual/exact duplicate detection: vectorised Hamming search and real CT slices."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from kidney_tf.data import duplicates
from kidney_tf.data.duplicates import (
    find_duplicates,
    hamming_pairs,
    image_hash,
    pack_hashes,
)
from kidney_tf.data.reading import read_image


def _brute_force(hashes: list[imagehash.ImageHash], max_distance: int) -> set[tuple[int, int, int]]:
    return {
        (i, j, hashes[i] - hashes[j])
        for i, j in itertools.combinations(range(len(hashes)), 2)
        if hashes[i] - hashes[j] <= max_distance
    }


@pytest.mark.parametrize("hash_size", [8, 16, 5])
def test_hamming_pairs_match_brute_force_across_chunks(monkeypatch, hash_size):
    rng = np.random.default_rng(hash_size)
    base = rng.random((12, hash_size, hash_size)) > 0.5
    bits = []
    for b in base:  # each base hash plus a few copies with 0..3 flipped bits
        bits.append(b)
        for flips in range(1, 4):
            c = b.copy().ravel()
            c[rng.choice(c.size, flips, replace=False)] ^= True
            bits.append(c.reshape(b.shape))
    hashes = [imagehash.ImageHash(b) for b in bits]
    expected = _brute_force(hashes, 3)
    assert expected  # the test is not vacuous
    for chunk_elements in (1, 7, 10_000_000):  # one row per chunk, odd chunks, one chunk
        monkeypatch.setattr(duplicates, "_CHUNK_ELEMENTS", chunk_elements)
        i, j, d = hamming_pairs(pack_hashes(hashes), 3)
        assert set(zip(i.tolist(), j.tolist(), d.tolist())) == expected


def test_pack_hashes_words_and_empty():
    assert pack_hashes([]).shape == (0, 1)
    h = imagehash.ImageHash(np.ones((16, 16), bool))
    packed = pack_hashes([h])
    assert packed.dtype == np.uint64 and packed.shape == (1, 4)
    assert hamming_pairs(pack_hashes([]), 5)[0].size == 0


def test_image_hash_accepts_paths_arrays_and_pil(tmp_path):
    rng = np.random.default_rng(1)
    image = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    from_path = image_hash(tmp_path / "a.png")
    assert from_path - image_hash(image) == 0
    assert from_path - image_hash(Image.fromarray(image)) == 0
    with pytest.raises(ValueError, match="uint8"):
        image_hash(image.astype(np.float32))


def _slice_number(path: str) -> int:
    return int(re.search(r"\((\d+)\)", Path(path).name).group(1))


@pytest.mark.real_data
def test_consecutive_ct_slices_are_near_duplicates(kidney_ct_sample):
    paths = sorted(str(p) for p in Path(kidney_ct_sample).glob("*/*.jpg"))
    everything = find_duplicates(paths, max_distance=64)  # every pair with its distance
    distance = {(p.a, p.b): p.distance for p in everything.pairs}
    assert len(distance) == len(paths) * (len(paths) - 1) // 2
    by_class: dict[str, list[str]] = {}
    for path in paths:
        by_class.setdefault(Path(path).parent.name, []).append(path)
    neighbours = []  # adjacent slice numbers within a class (same series)
    for members in by_class.values():
        members.sort(key=_slice_number)
        neighbours += [tuple(sorted(pair)) for pair in itertools.pairwise(members)]
    cross = [d for (a, b), d in distance.items() if Path(a).parent != Path(b).parent]
    closest = min(distance[pair] for pair in neighbours)
    assert closest < min(cross)  # neighbouring slices are closer than any two patients/classes
    report = find_duplicates(paths, max_distance=closest)
    found = {(p.a, p.b) for p in report.pairs}
    assert found & set(neighbours)
    assert all(Path(a).parent == Path(b).parent for a, b in found)
    assert not any(p.exact for p in report.pairs)


@pytest.mark.real_data
def test_exact_copy_and_reencoded_copy_of_a_real_slice(kidney_ct_sample, tmp_path):
    source = sorted(Path(kidney_ct_sample).glob("Tumor/*.jpg"))[0]
    others = sorted(Path(kidney_ct_sample).glob("Normal/*.jpg"))[:2]
    copy = tmp_path / "copy.jpg"
    shutil.copyfile(source, copy)
    reencoded = tmp_path / "reencoded.png"
    shifted = np.clip(read_image(source).astype(int) + 3, 0, 255).astype(np.uint8)
    Image.fromarray(shifted).save(reencoded)
    paths = [str(source), *map(str, others), str(copy), str(reencoded)]
    report = find_duplicates(paths)
    exact = [(p.a, p.b) for p in report.exact_pairs]
    assert exact == [(str(source), str(copy))]
    near = {(p.a, p.b) for p in report.near_pairs}
    assert (str(source), str(reencoded)) in near and (str(copy), str(reencoded)) in near
    assert sorted(report.groups) == [[str(source), str(copy), str(reencoded)]]
    assert report.sha256[0] == report.sha256[3] != report.sha256[4]
    assert report.to_dict()["n_images"] == 5


def test_unreadable_files_are_reported_not_fatal(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_text("text")
    report = find_duplicates([tmp_path / "a.png", tmp_path / "b.jpg"])
    assert report.pairs == [] and report.groups == []
    assert [b.path for b in report.bad_files] == [str(tmp_path / "b.jpg")]
    assert report.phashes[1] is None
    with pytest.raises(ValueError, match="max_distance"):
        find_duplicates([], max_distance=-1)
