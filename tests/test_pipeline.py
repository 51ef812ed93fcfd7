"""tf.data pipelines: shapes, labels, class weights, bad files, determinism, masks, crops, caches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from kidney_tf.data import reading
from kidney_tf.data.augment import AugmentConfig
from kidney_tf.data.pipeline import DataBundle, build_datasets
from kidney_tf.data.reading import ImageReadError, ImageRecord

CLASSES = ("A", "B", "C")


def _write_tree(root: Path, counts: dict[str, int], *, size: int = 40, ext: str = ".png") -> Path:
    """Class k is a flat image of gray level 40 + 80 k (so a pixel tells its label); sizes vary."""
    rng = np.random.default_rng(0)
    for k, (label, n) in enumerate(counts.items()):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = size + int(rng.integers(0, 9)), size + int(rng.integers(0, 9))
            image = np.full((h, w, 3), 40 + 80 * k, np.uint8)
            cv2.imwrite(str(folder / f"{label.lower()}img{i:03d}x{ext}"), image)
    return root


def _label_from_pixels(images: np.ndarray) -> np.ndarray:
    return np.rint((images[:, 16, 16, 0] - 40) / 80).astype(int)


def _batches(ds: tf.data.Dataset) -> list[tuple[np.ndarray, ...]]:
    return [tf.nest.map_structure(lambda t: t.numpy(), tuple(element)) for element in ds]


@pytest.fixture
def tree(tmp_path) -> Path:
    return _write_tree(tmp_path / "data", {"A": 12, "B": 8, "C": 6})


def test_shapes_dtypes_range_and_labels_match_images(tree):
    bundle = build_datasets(
        tree, image_size=32, batch_size=4, split="stratified", augment=False, seed=1
    )
    assert isinstance(bundle, DataBundle)
    assert bundle.class_names == list(CLASSES)
    for name in ("train", "val", "test"):
        total = 0
        for images, labels in _batches(bundle.dataset(name)):
            assert images.dtype == np.float32 and images.shape[1:] == (32, 32, 3)
            assert labels.dtype == np.float32 and labels.shape[1:] == (3,)
            assert images.min() >= 0 and images.max() <= 255
            np.testing.assert_array_equal(labels.sum(axis=1), 1.0)
            np.testing.assert_array_equal(_label_from_pixels(images), labels.argmax(axis=1))
            total += len(images)
        assert total == len(bundle.records[name]) == sum(bundle.counts[name].values())
    assert sum(len(r) for r in bundle.records.values()) == 26
    n_train = len(bundle.records["train"])
    assert int(bundle.train.cardinality()) == -(-n_train // 4)  # known length: Keras progress


def test_val_and_test_follow_bundle_records_order(tree):
    bundle = build_datasets(tree, image_size=32, batch_size=3, split="stratified", augment=False)
    for name in ("val", "test"):
        labels = np.concatenate([y.argmax(1) for _, y in _batches(bundle.dataset(name))])
        expected = [CLASSES.index(r.label) for r in bundle.records[name]]
        np.testing.assert_array_equal(labels, expected)


def test_class_weights_are_balanced_on_the_train_split(tmp_path):
    tree = _write_tree(tmp_path / "skewed", {"A": 30, "B": 10, "C": 5}, size=16)
    bundle = build_datasets(tree, image_size=16, batch_size=8, split="stratified", augment=False)
    train = bundle.counts["train"]
    n = sum(train.values())
    for i, name in enumerate(CLASSES):
        assert bundle.class_weights[i] == pytest.approx(n / (len(CLASSES) * train[name]))
    assert bundle.class_weights[2] > bundle.class_weights[1] > bundle.class_weights[0]


def test_bad_files_are_skipped_and_counted_strict_raises(tree):
    (tree / "A" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tree / "B" / "empty.jpg").write_bytes(b"")
    bundle = build_datasets(tree, image_size=32, batch_size=4, split="stratified", augment=False)
    assert sorted(Path(b.path).name for b in bundle.bad_files) == ["broken.png", "empty.jpg"]
    assert sum(len(r) for r in bundle.records.values()) == 26
    assert sum(len(x) for x, _ in _batches(bundle.train)) == len(bundle.records["train"])
    assert "Bad files skipped: 2" in bundle.describe()
    with pytest.raises(ImageReadError, match="broken.png|empty.jpg"):
        build_datasets(tree, image_size=32, split="stratified", strict=True)


def test_record_list_input_is_screened_too(tree, tmp_path):
    records = [ImageRecord(str(p), p.parent.name) for p in sorted(tree.rglob("*.png"))]
    records.append(ImageRecord(str(tmp_path / "missing.png"), "A"))
    bundle = build_datasets(records, image_size=16, batch_size=4, split="stratified", augment=False)
    assert [Path(b.path).name for b in bundle.bad_files] == ["missing.png"]
    assert sum(len(x) for x, _ in _batches(bundle.test)) == len(bundle.records["test"])


def test_same_seed_same_first_batch_and_reshuffled_epochs(tree):
    def first(seed: int) -> tuple[np.ndarray, np.ndarray]:
        bundle = build_datasets(
            tree, image_size=32, batch_size=8, split="stratified", seed=seed, augment=True
        )
        return next(iter(bundle.train))

    (xa, ya), (xb, yb), (xc, _) = first(3), first(3), first(4)
    np.testing.assert_array_equal(xa.numpy(), xb.numpy())
    np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    assert not np.allclose(xa.numpy(), xc.numpy())

    bundle = build_datasets(tree, image_size=16, batch_size=64, split="stratified", augment=False)
    epoch1 = next(iter(bundle.train))[1].numpy().argmax(1)
    epoch2 = next(iter(bundle.train))[1].numpy().argmax(1)
    assert sorted(epoch1) == sorted(epoch2) and list(epoch1) != list(epoch2)


def test_augmentation_changes_train_only(tree):
    plain = build_datasets(tree, image_size=32, batch_size=64, split="stratified", augment=False)
    config = AugmentConfig(horizontal_flip=False, rotation=0, zoom=0, brightness=0.3, contrast=0)
    aug = build_datasets(tree, image_size=32, batch_size=64, split="stratified", augment=config)
    np.testing.assert_array_equal(_batches(plain.test)[0][0], _batches(aug.test)[0][0])
    x, y = next(iter(aug.train))
    flat = np.ptp(x.numpy().reshape(len(x), -1), axis=1)
    assert np.allclose(flat, 0)  # brightness shifts whole images; flat images stay flat
    means = x.numpy().mean(axis=(1, 2, 3))
    assert not np.allclose(means, 40 + 80 * y.numpy().argmax(1))


def test_masks_follow_image_through_crop_resize_and_augmentation(tmp_path):
    """Off-centre 'head' on black with a bright lesion: after the brain crop the mask still fits."""
    root = tmp_path / "masked"
    rng = np.random.default_rng(1)
    for label in ("A", "B"):
        (root / label).mkdir(parents=True)
        (root / "masks" / label).mkdir(parents=True)
        for i in range(6):
            image = np.zeros((120, 160, 3), np.uint8)
            cx, cy = int(rng.integers(50, 110)), int(rng.integers(45, 75))
            cv2.ellipse(image, (cx, cy), (40, 35), 0, 0, 360, (90, 90, 90), -1)
            mask = np.zeros((120, 160), np.uint8)
            cv2.rectangle(mask, (cx - 5, cy - 20), (cx + 15, cy + 2), 255, -1)
            image[mask > 0] = 240
            cv2.imwrite(str(root / label / f"s{i}x.png"), image)
            if not (label == "B" and i == 0):  # one image without a mask
                cv2.imwrite(str(root / "masks" / label / f"s{i}x.png"), mask)
    for augment in (False, AugmentConfig(rotation=30, zoom=0.2, brightness=0, contrast=0, seed=2)):
        bundle = build_datasets(
            root,
            image_size=48,
            batch_size=16,
            split="stratified",
            test_fraction=0.34,
            crop="brain",
            with_masks=True,
            augment=augment,
        )
        images, labels, masks = _batches(bundle.train)[0]
        assert masks.shape == (*images.shape[:3], 1) and masks.dtype == np.float32
        assert set(np.unique(masks)) <= {0.0, 1.0}
        checked = 0
        for image, mask in zip(images, masks):
            lesion = image[..., 0] > 170
            if not mask.any():
                continue
            checked += 1
            iou = (lesion & (mask[..., 0] > 0)).sum() / (lesion | (mask[..., 0] > 0)).sum()
            assert iou > 0.8
            # the crop removed the black border: the head fills most of the frame
            if augment is False:
                assert (image[..., 0] > 45).mean() > 0.6
        assert checked >= 4
    records = [r for recs in bundle.records.values() for r in recs]
    unmasked = [r for r in records if r.mask_path is None]
    assert len(unmasked) == 1


def test_sixteen_bit_png_and_tiff_decode_like_reading(tmp_path):
    root = tmp_path / "deep"
    (root / "A").mkdir(parents=True)
    (root / "B").mkdir(parents=True)
    ramp = np.tile(np.linspace(0, 65535, 24, dtype=np.uint16), (24, 1))
    for i in range(4):
        cv2.imwrite(str(root / "A" / f"d{i}x.png"), ramp)
        cv2.imwrite(str(root / "B" / f"t{i}x.tif"), np.full((24, 24, 3), 90 + i, np.uint8))
    bundle = build_datasets(
        root, image_size=24, batch_size=8, split="stratified", augment=False, cache=False
    )
    images, labels = next(iter(bundle.test))
    for image, label, record in zip(images.numpy(), labels.numpy(), bundle.records["test"]):
        expected = reading.read_image(record.path).astype(np.float32)
        np.testing.assert_allclose(image, expected, atol=1.0)
        assert CLASSES[label.argmax()] == record.label


def test_file_cache_and_preprocess(tree, tmp_path):
    cache = tmp_path / "cache" / "run1"
    kwargs = {"image_size": 16, "batch_size": 4, "split": "stratified", "augment": False}
    bundle = build_datasets(tree, cache=str(cache), preprocess=lambda x: x / 255.0, **kwargs)
    first = _batches(bundle.val)
    assert any(p.name.startswith("run1-val-") for p in cache.parent.iterdir())
    assert max(x.max() for x, _ in first) <= 1.0
    again = build_datasets(tree, cache=str(cache), preprocess=lambda x: x / 255.0, **kwargs)
    for (a, _), (b, _) in zip(first, _batches(again.val)):
        np.testing.assert_array_equal(a, b)
    other = build_datasets(tree, cache=str(cache), **{**kwargs, "image_size": 8})
    assert next(iter(other.val))[0].shape[1] == 8  # settings change -> new cache file


def test_describe_and_argument_errors(tree):
    bundle = build_datasets(tree, image_size=16, batch_size=4, split="stratified", augment=False)
    text = bundle.describe()
    assert "3 classes (A, B, C)" in text and "stratified" in text
    assert f"train {sum(bundle.counts['train'].values()):>6}" in text
    with pytest.raises(ValueError, match="crop"):
        build_datasets(tree, crop="liver")
    with pytest.raises(ValueError, match="class_names"):
        build_datasets(tree, class_names=["A", "B"])
    empty = build_datasets(
        tree, image_size=16, split="stratified", val_fraction=0.0, test_fraction=0.2
    )
    assert empty.val is None and empty.test is not None


def test_works_under_a_distribution_strategy(tree):
    bundle = build_datasets(tree, image_size=16, batch_size=4, split="stratified")
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    dist = strategy.experimental_distribute_dataset(bundle.train)
    images, labels = next(iter(dist))
    assert images.shape == (4, 16, 16, 3) and labels.shape == (4, 3)


@pytest.mark.real_data
def test_real_brain_mri_with_brain_crop(brain_mri_sample):
    scan = reading.scan_folder(brain_mri_sample)
    picked = [r for c in scan.class_names for r in [x for x in scan.records if x.label == c][:3]]
    bundle = build_datasets(
        picked, image_size=64, batch_size=12, split="stratified", crop="brain", augment=False
    )
    uncropped = build_datasets(
        picked, image_size=64, batch_size=12, split="stratified", augment=False
    )
    (x, y), (u, _) = next(iter(bundle.train)), next(iter(uncropped.train))
    assert x.shape[1:] == (64, 64, 3) and x.dtype == tf.float32 and y.shape[1] == 4
    assert float(tf.reduce_min(x)) >= 0 and float(tf.reduce_max(x)) <= 255
    black = lambda t: float(tf.reduce_mean(tf.cast(t[..., 0] < 10, tf.float32)))  # noqa: E731
    assert black(x) < black(u)  # the brain crop removed black border


def test_saved_split_reloads_exactly(tree, tmp_path):
    from kidney_tf.data.splits import write_split_csv

    bundle = build_datasets(tree, image_size=16, batch_size=4, split="stratified", seed=9)
    inside = write_split_csv(bundle.records, tree / "split.csv")
    outside = write_split_csv(bundle.records, tmp_path / "run" / "split.csv")
    with pytest.raises(ValueError, match="root="):
        build_datasets(outside, split="folders")
    for csv_path, root in ((inside, None), (outside, tree)):
        again = build_datasets(csv_path, image_size=16, split="folders", root=root)
        for name in ("train", "val", "test"):
            assert [r.path for r in again.records[name]] == [r.path for r in bundle.records[name]]


def test_foreground_and_lesion_masks_come_as_a_dict_next_to_the_image(tmp_path):
    """CAM fostering's inputs: the body mask the evaluation computes, the lesion mask as with_masks."""
    from kidney_tf.data.crop import body_mask
    from kidney_tf.data.phantoms import generate_phantoms

    manifest = generate_phantoms("kidney-ct", tmp_path / "ph", per_class=5, image_size=96, seed=1)
    options = dict(
        image_size=48, batch_size=20, split="stratified", test_fraction=0.4, crop="body", seed=3
    )
    plain = build_datasets(manifest, with_masks=True, augment=False, **options)
    fostering = build_datasets(
        manifest, with_foreground=True, with_lesion_masks=True, augment=False, **options
    )
    (x, labels), (images, labels_ref, masks) = _batches(fostering.test)[0], _batches(plain.test)[0]
    assert sorted(x) == ["foreground", "image", "lesion_mask"]
    np.testing.assert_array_equal(x["image"], images)
    np.testing.assert_array_equal(labels, labels_ref)
    np.testing.assert_array_equal(x["lesion_mask"], masks)
    expected = np.stack([body_mask(img.astype(np.uint8)) for img in images])
    np.testing.assert_array_equal(x["foreground"][..., 0] > 0.5, expected)
    assert 0.2 < x["foreground"].mean() < 1.0
    # augmentation moves both masks with the image (rotation/zoom; no photometric change)
    augment = AugmentConfig(rotation=30, zoom=0.2, brightness=0, contrast=0, seed=2)
    moved = build_datasets(
        manifest, with_foreground="body", with_lesion_masks=True, augment=augment, **options
    )
    x, _ = _batches(moved.train)[0]
    assert set(np.unique(x["foreground"])) <= {0.0, 1.0}
    body = x["image"][..., 0] > 0
    inside = (x["foreground"][..., 0] > 0.5) & body
    assert inside.sum() / max(1, (x["foreground"][..., 0] > 0.5).sum()) > 0.9
    with pytest.raises(ValueError, match="with_masks"):
        build_datasets(manifest, with_masks=True, with_foreground=True, **options)
    with pytest.raises(ValueError, match="with_foreground"):
        build_datasets(manifest, with_foreground="table", **options)


@pytest.mark.real_data
def test_in_graph_jpeg_decode_equals_read_image_and_opencv(kidney_ct_sample, brain_mri_sample):
    # TensorFlow's default IDCT (INTEGER_FAST) was up to 34 grey levels off on these files
    from kidney_tf.data.pipeline import decode_image_bytes

    files = (
        sorted(kidney_ct_sample.glob("*/*.jpg"))[::15]
        + sorted(brain_mri_sample.glob("*/*.jpg"))[::15]
    )
    for path in files:
        data = path.read_bytes()
        ours = decode_image_bytes(tf.constant(data)).numpy()
        np.testing.assert_array_equal(ours, reading.read_image(path), err_msg=path.name)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(ours, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), err_msg=path.name)


@pytest.mark.parametrize("option", [{"mixup": 0.4}, {"cutmix": 1.0}])
def test_mixup_and_cutmix_blend_train_images_and_their_labels_alike(tree, option):
    # Flat images of level 40 + 80 k: a mixed image's mean level is its soft label's mix.
    config = AugmentConfig(horizontal_flip=False, rotation=0, zoom=0, brightness=0, contrast=0)
    config = AugmentConfig(**{**config.to_dict(), **option, "seed": 3})
    bundle = build_datasets(tree, image_size=32, batch_size=16, split="stratified", augment=config)
    x, y = (t.numpy() for t in next(iter(bundle.train)))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    assert ((y > 0.01) & (y < 0.99)).any()  # soft labels: some images were mixed
    levels = 40 + 80 * np.arange(3)
    if "mixup" in option:
        np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), y @ levels, atol=1.0)
    else:
        # CutMix pastes a box of another image: two levels at most, both in the label, the
        # larger share the label's top class (Keras' label weight is the drawn box area, which
        # rounding to whole pixels makes only approximate at 32 px)
        for image, label in zip(x, y):
            found, counts = np.unique(np.rint((image[..., 0] - 40) / 80), return_counts=True)
            assert set(found.astype(int)) <= set(np.flatnonzero(label > 0))
            if label.max() > 0.6:  # clearly one image's: far from the rounding
                assert found[counts.argmax()] == label.argmax()
    for _images, labels in _batches(bundle.test):  # held-out splits are never mixed
        np.testing.assert_array_equal(labels.sum(axis=1), 1.0)
        assert set(np.unique(labels)) <= {0.0, 1.0}


def test_mixing_refuses_masks_and_two_mixers(tree):
    with pytest.raises(ValueError, match="mixup or cutmix, not both"):
        AugmentConfig(mixup=0.2, cutmix=1.0)
    with pytest.raises(ValueError, match="no mask of its own"):
        build_datasets(
            tree, image_size=32, split="stratified", augment={"mixup": 0.2}, with_foreground=True
        )
