"""Exact and near-duplicate images: SHA-256 of file bytes plus perceptual hashes (ImageHash phash).

* **Exact** duplicates: byte-identical files (SHA-256 of the file content).
* **Near** duplicates: perceptual-hash (DCT ``phash``, 64 bits by default) Hamming distance
  ``<= max_distance``. Images are hashed from a decode of at most :data:`HASH_SIDE` px (JPEGs
  are decoded at reduced scale), which keeps 12k images to seconds; phash itself works on 32x32.

Hamming distances are computed with NumPy on packed ``uint64`` words, in row chunks (no Python
loop over pairs), and groups are the connected components of the duplicate graph.

On the real kidney CT sample, neighbouring slices of one patient are 2-10 bits apart while slices
of different patients are >= 8 apart, hence the default ``max_distance=6``.

Usage::

    from kidney_tf.data.duplicates import find_duplicates
    report = find_duplicates(paths, max_distance=6)
    for pair in report.pairs: print(pair.a, pair.b, pair.distance, pair.exact)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import cv2
import imagehash
import numpy as np
from PIL import Image

from kidney_tf.data.decode import read_image
from kidney_tf.data.pixels import ImageReadError
from kidney_tf.data.records import BadFile

DEFAULT_MAX_DISTANCE = 6
HASH_SIZE = 8
HASH_SIDE = 128  # phash looks at 32x32; decoding at <= 128 px keeps hashing cheap
_CHUNK_ELEMENTS = 4_000_000  # uint64 words per distance block (~32 MB)


@dataclass(frozen=True)
class DuplicatePair:
    """Two images (``a`` before ``b`` in input order) with their phash distance."""

    a: str
    b: str
    distance: int
    exact: bool


@dataclass
class DuplicateReport:
    """Result of :func:`find_duplicates`: hashes, duplicate pairs and groups."""

    paths: list[str]
    phashes: list[str | None]
    sha256: list[str | None]
    pairs: list[DuplicatePair]
    groups: list[list[str]]
    max_distance: int
    bad_files: list[BadFile] = field(default_factory=list)
    constant: list[str] = field(default_factory=list)  # one pixel value: blank, all black

    @property
    def exact_pairs(self) -> list[DuplicatePair]:
        return [p for p in self.pairs if p.exact]

    @property
    def near_pairs(self) -> list[DuplicatePair]:
        return [p for p in self.pairs if not p.exact]

    def to_dict(self) -> dict:
        return {
            "max_distance": self.max_distance,
            "n_images": len(self.paths),
            "pairs": [asdict(p) for p in self.pairs],
            "groups": self.groups,
            "bad_files": [asdict(b) for b in self.bad_files],
            "constant_images": self.constant,
        }


def _as_pil(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    height, width = array.shape[:2]
    if max(height, width) > HASH_SIDE:
        scale = HASH_SIDE / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        array = cv2.resize(array, size, interpolation=cv2.INTER_AREA)
    return Image.fromarray(array)


def image_hash(
    image: str | os.PathLike | np.ndarray | Image.Image, *, hash_size: int = HASH_SIZE
) -> imagehash.ImageHash:
    """Perceptual hash (``imagehash.phash``) of a file path, a uint8 array or a PIL image.

    ``hash_a - hash_b`` is the Hamming distance. Files are decoded with
    :func:`~kidney_tf.data.decode.read_image` at most :data:`HASH_SIDE` px.

    Usage: ``image_hash("a.jpg") - image_hash("b.jpg")``
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image, max_side=HASH_SIDE)
    return imagehash.phash(_as_pil(image), hash_size=hash_size)


def file_sha256(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def pack_hashes(hashes: Sequence[imagehash.ImageHash]) -> np.ndarray:
    """Hashes -> ``uint64`` array ``(N, words)`` (bits packed, zero-padded to 64-bit words)."""
    if not hashes:
        return np.zeros((0, 1), dtype=np.uint64)
    bits = np.stack([np.asarray(h.hash, dtype=bool).ravel() for h in hashes])
    packed = np.packbits(bits, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


_POPCOUNT_TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2
        return np.bitwise_count(words)
    as_bytes = words.view(np.uint8).reshape(*words.shape, 8)
    return _POPCOUNT_TABLE[as_bytes].sum(axis=-1, dtype=np.uint8)


def hamming_pairs(
    packed: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with Hamming distance ``<= max_distance``: arrays ``(i, j, d)``.

    Vectorised over row chunks of the upper triangle; memory stays bounded for any N.
    """
    n, words = packed.shape
    rows_i, rows_j, dists = [], [], []
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n * words))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = packed[start:stop, None, :] ^ packed[None, start:, :]
        distance = _popcount(block).sum(axis=-1, dtype=np.int32)
        local_i, local_j = np.nonzero(distance <= max_distance)
        keep = local_j > local_i  # columns start at `start`: strictly upper triangle
        local_i, local_j = local_i[keep], local_j[keep]
        rows_i.append(local_i + start)
        rows_j.append(local_j + start)
        dists.append(distance[local_i, local_j])
    if not rows_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int32)
    return np.concatenate(rows_i), np.concatenate(rows_j), np.concatenate(dists)


def _groups(n: int, i: np.ndarray, j: np.ndarray) -> list[list[int]]:
    """Connected components with more than one member, as sorted index lists."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0 or i.size == 0:
        return []
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for index in np.unique(np.concatenate([i, j])):
        members.setdefault(int(labels[index]), []).append(int(index))
    return sorted((sorted(m) for m in members.values()), key=lambda m: m[0])


def _hash_one(
    path: str, hash_size: int
) -> tuple[imagehash.ImageHash | None, str | None, BadFile | None, bool]:
    """``(phash, sha256, bad file, constant)`` of one file; constant: a single pixel value."""
    try:
        sha = file_sha256(path)
        image = read_image(path, max_side=HASH_SIDE)
        phash = image_hash(image, hash_size=hash_size)
    except ImageReadError as exc:
        return None, None, BadFile(path, exc.reason), False
    except OSError as exc:
        return None, None, BadFile(path, f"cannot read file ({exc.strerror or exc})"), False
    return phash, sha, None, bool(image.min() == image.max())


def find_duplicates(
    paths: Sequence[str | os.PathLike],
    *,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    hash_size: int = HASH_SIZE,
    workers: int | None = None,
) -> DuplicateReport:
    """Find exact (byte-identical) and near (phash distance ``<= max_distance``) duplicates.

    Unreadable files are reported in ``bad_files`` and skipped. Pairs are sorted by
    ``(distance, a, b)``; exact pairs are always included (distance 0 or not).

    Usage: ``report = find_duplicates(sorted(Path("data").rglob("*.jpg")), max_distance=6)``
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    paths = [os.fspath(p) for p in paths]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda p: _hash_one(p, hash_size), paths))
    phashes = [None if r[0] is None else str(r[0]) for r in results]
    shas = [r[1] for r in results]
    bad_files = [r[2] for r in results if r[2] is not None]
    good = np.array([i for i, h in enumerate(phashes) if h is not None], dtype=np.int64)
    packed = pack_hashes([results[k][0] for k in good])
    i, j, d = hamming_pairs(packed, max_distance)
    i, j = good[i], good[j]
    found = {(int(a), int(b)): int(dist) for a, b, dist in zip(i, j, d)}
    by_sha: dict[str, list[int]] = {}
    for k in good:
        by_sha.setdefault(shas[k], []).append(int(k))
    exact = set()
    for members in by_sha.values():
        for x, a in enumerate(members):
            for b in members[x + 1 :]:
                exact.add((a, b))
                found.setdefault((a, b), 0)
    pairs = [
        DuplicatePair(paths[a], paths[b], dist, (a, b) in exact)
        for (a, b), dist in sorted(found.items(), key=lambda kv: (kv[1], kv[0]))
    ]
    index_i = np.array([a for a, _ in found], dtype=np.int64)
    index_j = np.array([b for _, b in found], dtype=np.int64)
    groups = [[paths[k] for k in g] for g in _groups(len(paths), index_i, index_j)]
    return DuplicateReport(
        paths=paths,
        phashes=phashes,
        sha256=shas,
        pairs=pairs,
        groups=groups,
        max_distance=max_distance,
        bad_files=bad_files,
        constant=[p for p, r in zip(paths, results) if r[3]],
    )
