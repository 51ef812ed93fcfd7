"""Deletion/insertion AUC on a toy model whose evidence region is known exactly."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from kidney_tf.explain import faithfulness as fa

SIZE = 24


def region() -> np.ndarray:
    r = np.zeros((SIZE, SIZE), np.float32)
    r[4:10, 12:20] = 1.0
    return r


class RegionBrightness(keras.Model):
    """Class 0 logit = mean brightness inside a fixed region; class 1 = its negative."""

    def __init__(self):
        super().__init__()
        self.region = ops.convert_to_tensor(region()[None, :, :, None])

    def call(self, x):
        s = ops.sum(x * self.region, axis=(1, 2, 3)) / (ops.sum(self.region) * 3 * 255) * 8 - 4
        return ops.softmax(ops.stack([s, -s], axis=1))


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 60, (3, SIZE, SIZE, 3)).astype(np.float32)
    images[:, 4:10, 12:20] += 180
    return RegionBrightness(), images


def test_perfect_saliency_beats_random_order(toy):
    model, images = toy
    perfect = np.repeat(region()[None], 3, axis=0)
    result = fa.deletion_insertion(model, images, perfect, steps=12, baseline="zero", batch_size=32)
    assert result.deletion_curve.shape == (3, 13)
    assert np.all(result.class_index == 0)
    assert np.all(result.deletion_auc < result.random_deletion_auc - 0.2)
    assert np.all(result.insertion_auc > result.random_insertion_auc + 0.2)
    # Intact image at fraction 0 of the deletion curve; baseline at 0 of the insertion curve.
    np.testing.assert_allclose(
        result.deletion_curve[:, 0], result.insertion_curve[:, -1], atol=1e-5
    )
    summary = result.summary()
    assert summary["n"] == 3 and summary["deletion_auc"] < summary["random_deletion_auc"]


def test_inverted_saliency_is_worse_than_random(toy):
    model, images = toy
    inverted = np.repeat(1.0 - region()[None], 3, axis=0)
    result = fa.deletion_insertion(model, images, inverted, steps=8, baseline="mean")
    assert result.deletion_auc.mean() > result.random_deletion_auc.mean()


def test_maps_are_resized_and_baselines_are_defined(toy):
    model, images = toy
    small = np.repeat(region()[None, ::2, ::2], 3, axis=0)
    result = fa.deletion_insertion(model, images, small, steps=4, class_index=1, baseline="blur")
    assert np.all(result.class_index == 1)
    assert np.isfinite(result.deletion_auc).all() and np.isfinite(result.insertion_auc).all()
    blurred = fa.baseline_images(images, "blur")
    assert blurred.shape == images.shape and blurred.std() < images.std()
    with pytest.raises(ValueError, match="unknown baseline"):
        fa.baseline_images(images, "noise")
    with pytest.raises(ValueError, match="out of range"):
        fa.deletion_insertion(model, images, small, class_index=-1)
    with pytest.raises(ValueError, match="3 maps"):
        fa.deletion_insertion(model, images, small[:2])


def test_auc_of_known_curves():
    fractions = np.linspace(0, 1, 5)
    curves = np.stack([np.ones(5), fractions])
    np.testing.assert_allclose(fa.auc(curves, fractions), [1.0, 0.5])
