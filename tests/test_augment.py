"""Augmentation layer: paper defaults, value range, determinism, mask alignment, serialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kidney_tf.data.augment import AugmentConfig, ScanAugmenter, build_augmenter


def _lesion_batch(n: int = 6, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Dim 'anatomy' with one bright off-centre rectangle per image; mask = the rectangle."""
    rng = np.random.default_rng(0)
    images = np.full((n, size, size, 3), 40.0, np.float32)
    masks = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        y, x = rng.integers(4, size // 2, 2)
        h, w = rng.integers(8, size // 3, 2)
        images[i, y : y + h, x : x + w] = 230.0
        masks[i, y : y + h, x : x + w] = 1.0
    return images, masks


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_defaults_reproduce_the_brain_paper_recipe():
    config = AugmentConfig()
    assert config.horizontal_flip and not config.vertical_flip
    assert config.rotation == 10.0 and config.zoom == 0.1
    assert config.brightness > 0 and config.contrast > 0
    assert not config.randaugment
    names = [layer.name for layer in build_augmenter(config).geometric]
    assert names == ["flip", "rotation", "zoom"]
    rotation = build_augmenter(config).geometric[1]
    assert rotation.factor == pytest.approx((-10 / 360, 10 / 360))


def test_output_shape_range_and_inference_identity():
    images, _ = _lesion_batch()
    augmenter = build_augmenter(AugmentConfig(brightness=0.5, contrast=0.5, seed=1))
    out = keras.ops.convert_to_numpy(augmenter(images, training=True))
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert not np.allclose(out, images)
    same = keras.ops.convert_to_numpy(augmenter(images, training=False))
    np.testing.assert_array_equal(same, images)


def test_mask_follows_the_image_under_geometric_augmentation():
    images, masks = _lesion_batch()
    config = AugmentConfig(
        vertical_flip=True, rotation=40, zoom=0.3, translation=0.2, brightness=0, contrast=0, seed=3
    )
    out_images, out_masks = build_augmenter(config)(images, masks=masks, training=True)
    out_images = keras.ops.convert_to_numpy(out_images)
    out_masks = keras.ops.convert_to_numpy(out_masks)
    assert out_masks.shape == masks.shape
    assert set(np.unique(out_masks)) <= {0.0, 1.0}
    moved = 0
    for i in range(len(images)):
        lesion = out_images[i, ..., 0] > 135  # the bright rectangle after the transform
        mask = out_masks[i, ..., 0] > 0
        assert _iou(lesion, mask) > 0.85, i
        moved += _iou(mask, masks[i, ..., 0] > 0) < 0.9
    assert moved >= len(images) // 2, "augmentation should actually move most lesions"


def test_photometric_ops_leave_masks_alone():
    images, masks = _lesion_batch()
    config = AugmentConfig(
        horizontal_flip=False, rotation=0, zoom=0, brightness=0.4, contrast=0.4, seed=0
    )
    out_images, out_masks = build_augmenter(config)(images, masks=masks, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out_masks), masks)
    assert not np.allclose(keras.ops.convert_to_numpy(out_images), images)


def test_same_seed_same_augmentation_in_tf_data():
    images, masks = _lesion_batch()

    def first_two(seed: int) -> list[np.ndarray]:
        augmenter = build_augmenter(AugmentConfig(seed=seed, rotation=30))
        ds = tf.data.Dataset.from_tensor_slices(images).batch(3)
        ds = ds.map(lambda x: augmenter(x, training=True))
        return [x.numpy() for x in ds]

    a, b, c = first_two(5), first_two(5), first_two(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0], c[0])
    assert not np.allclose(a[0], a[1])  # batches get different transforms


def test_randaugment_on_images_and_refused_with_masks():
    images, masks = _lesion_batch()
    augmenter = build_augmenter(AugmentConfig(randaugment=True, seed=0))
    assert "randaugment" in [layer.name for layer in augmenter.photometric]
    out = keras.ops.convert_to_numpy(augmenter(images, training=True))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    with pytest.raises(ValueError, match="RandAugment"):
        augmenter(images, masks=masks, training=True)


def test_config_validation_and_dict_round_trip():
    config = AugmentConfig(rotation=15, vertical_flip=True, seed=9)
    assert AugmentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown AugmentConfig keys"):
        AugmentConfig.from_dict({"rotate": 10})
    with pytest.raises(ValueError, match="fill_mode"):
        AugmentConfig(fill_mode="mirror")
    with pytest.raises(ValueError, match="rotation"):
        AugmentConfig(rotation=-1)
    assert AugmentConfig(
        horizontal_flip=False, rotation=0, zoom=0, brightness=0, contrast=0
    ).is_identity


def test_layer_serialises_inside_a_saved_model(tmp_path):
    config = AugmentConfig(rotation=20, seed=4)
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, build_augmenter(config)(inputs))
    model.save(tmp_path / "aug.keras")
    loaded = keras.models.load_model(tmp_path / "aug.keras")
    layer = next(layer for layer in loaded.layers if isinstance(layer, ScanAugmenter))
    assert layer.config == config
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), x)
