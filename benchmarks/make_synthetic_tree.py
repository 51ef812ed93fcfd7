"""Write a large synthetic image tree (train/val/test split folders of class folders) to scale-test
``kidney-tf data verify`` and ``kidney-tf evaluate``.

Every image is a distinct smooth random pattern (a random 8x8 grid upscaled, plus pixel noise),
so perceptual hashes spread over the 64-bit space like real, varied images; a known number of
twins is planted on purpose: exact copies and lightly noised copies, half of them in another
split (the leakage ``data verify`` must find). The counts are written to ``planted.json``.

Usage::

    python benchmarks/make_synthetic_tree.py --out /tmp/h13/tree --images 100000 --size 64
    kidney-tf data verify --root /tmp/h13/tree --workers 2 --json /tmp/h13/verify.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("Cyst", "Normal", "Stone", "Tumor")
SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))


def _pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    grid = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    image = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-6, 7, image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_tree(out: Path, images: int, size: int, twins: int, seed: int) -> dict:
    """Write ``images`` PNGs (``twins`` of them planted copies) under ``out``; return the counts."""
    rng = np.random.default_rng(seed)
    splits = rng.choice(len(SPLITS), size=images, p=[p for _, p in SPLITS])
    labels = rng.integers(0, len(CLASSES), size=images)
    for split, _ in SPLITS:
        for name in CLASSES:
            (out / split / name).mkdir(parents=True, exist_ok=True)
    originals = images - twins
    paths = [
        out / SPLITS[splits[i]][0] / CLASSES[labels[i]] / f"img_{i:06d}.png" for i in range(images)
    ]
    for i in range(originals):
        cv2.imwrite(str(paths[i]), _pattern(rng, size))
    planted = {"exact": 0, "near": 0, "cross_split": 0}
    for k in range(twins):
        i = originals + k
        source = int(rng.integers(0, originals))
        # Half of the twins go to another split than their original (leakage to find).
        other = k % 2 == 0
        split = (splits[source] + 1) % len(SPLITS) if other else splits[source]
        paths[i] = out / SPLITS[split][0] / CLASSES[labels[source]] / f"img_{i:06d}.png"
        planted["cross_split"] += int(split != splits[source])
        if k % 4 < 2:
            paths[i].write_bytes(paths[source].read_bytes())
            planted["exact"] += 1
        else:
            image = cv2.imread(str(paths[source]), cv2.IMREAD_GRAYSCALE).astype(np.int16)
            image += rng.integers(-3, 4, image.shape, dtype=np.int16)
            cv2.imwrite(str(paths[i]), np.clip(image, 0, 255).astype(np.uint8))
            planted["near"] += 1
    return {"images": images, "size": size, "seed": seed, "twins": planted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="new folder for the tree")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--twins", type=int, default=200, help="planted duplicates")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out}: exists and is not empty (choose a new folder)")
    if not 0 <= args.twins < args.images:
        parser.error("--twins must be in [0, --images)")
    start = time.perf_counter()
    info = make_tree(args.out, args.images, args.size, args.twins, args.seed)
    info["seconds"] = round(time.perf_counter() - start, 1)
    args.out.with_name(args.out.name + ".json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
