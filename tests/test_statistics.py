"""Map statistics on analytic maps: known values, monotonicity, degenerate maps, masks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from kidney_tf.explain import statistics as st

SIZE = 64


def gaussian(sigma: float, centre=(30, 34), size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2)).astype(
        np.float32
    )


def one_hot(row: int = 5, col: int = 7, size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    m[row, col] = 1.0
    return m


def test_uniform_map():
    maps = np.ones((2, 224, 224), np.float32)
    assert np.allclose(st.normalized_entropy(maps), 1.0, atol=1e-5)
    assert np.allclose(st.cam_radius(maps), math.sqrt(1 / 12 + 1 / 12), atol=1e-4)
    assert np.allclose(st.cam_snr(maps), 1.0)
    assert np.allclose(st.snr_db(st.cam_snr(maps)), 0.0)


def test_one_hot_map():
    maps = one_hot()[None]
    assert float(st.normalized_entropy(maps)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(st.cam_radius(maps)[0]) == 0.0
    assert float(st.cam_snr(maps)[0]) == st.MAX_SNR
    assert float(st.snr_db(st.cam_snr(maps))[0]) == pytest.approx(40.0)


@pytest.mark.parametrize("value", [0.0, 3.0, -2.0])
def test_constant_and_dead_maps_are_defined(value):
    maps = np.full((1, 16, 16), value, np.float32)
    ent, rad, snr = (f(maps).numpy()[0] for f in (st.normalized_entropy, st.cam_radius, st.cam_snr))
    assert ent == pytest.approx(1.0, abs=1e-5)  # constant or no evidence -> uniform
    assert rad == pytest.approx(math.sqrt(2 * (1 - 1 / 256) / 12), abs=1e-5)
    assert snr == 1.0
    assert np.all(np.isfinite([ent, rad, snr]))


def test_gaussian_width_orders_statistics():
    maps = np.stack([gaussian(s) for s in (2, 4, 8, 16)])
    ent = st.normalized_entropy(maps).numpy()
    rad = st.cam_radius(maps).numpy()
    snr = st.cam_snr(maps).numpy()
    assert np.all(np.diff(ent) > 0)
    assert np.all(np.diff(rad) > 0)
    assert np.all(np.diff(snr) < 0)
    # A narrow blob away from the borders: radius = sqrt(2) * sigma / SIZE.
    assert rad[0] == pytest.approx(math.sqrt(2) * 2 / SIZE, rel=1e-3)
    centroid = st.cam_centroid(maps[:1]).numpy()[0]
    assert centroid == pytest.approx([30.5 / SIZE, 34.5 / SIZE], abs=1e-4)


def test_radius_and_entropy_are_differentiable_and_float32():
    maps = tf.Variable(np.stack([gaussian(4), np.zeros((SIZE, SIZE), np.float32)]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(st.cam_radius(maps) + st.normalized_entropy(maps))
    grad = tape.gradient(loss, maps)
    assert st.cam_radius(maps).dtype == tf.float32
    assert np.all(np.isfinite(grad.numpy()))


def test_shapes_accepted():
    m = gaussian(4)
    a = st.cam_radius(m).numpy()
    b = st.cam_radius(m[None, ..., None]).numpy()
    assert a.shape == (1,) and np.allclose(a, b)
    with pytest.raises(ValueError, match="shape"):
        st.cam_radius(np.zeros((2, 3, 4, 5)))


def lesion(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[25:35, 28:40] = True
    return mask


def test_mask_statistics_on_synthetic_lesion():
    inside, outside = gaussian(3), gaussian(3, centre=(5, 5))
    maps = np.stack([inside, outside, inside])
    masks = np.stack([lesion(), lesion(), np.zeros((SIZE, SIZE), bool)])
    pg = st.pointing_game(maps, masks)
    assert pg.tolist() == [1.0, 0.0, None]  # empty mask: not applicable
    assert pg.mean() == 0.5
    energy = st.energy_in_mask(maps, masks)
    assert energy[0] > 0.8 and energy[1] < 0.01
    iou = st.cam_iou(maps, masks)
    assert 0 < iou[0] < 1 and iou[1] == 0
    assert bool(np.ma.getmaskarray(iou)[2])
    assert not np.any(np.isnan(np.ma.getdata(iou)))


def test_pointing_game_tolerance_and_dead_map():
    near = one_hot(22, 30, SIZE)  # three pixels above the lesion
    assert st.pointing_game(near, lesion()).tolist() == [0.0]
    assert st.pointing_game(near, lesion(), tolerance_px=3).tolist() == [1.0]
    assert st.pointing_game(np.zeros((SIZE, SIZE)), lesion()).tolist() == [0.0]


def test_masks_are_resized_to_the_maps():
    small = lesion()[::2, ::2]  # 32 px mask for 64 px maps
    full = st.energy_in_mask(gaussian(3), lesion())
    resized = st.energy_in_mask(gaussian(3), small)
    assert float(resized[0]) == pytest.approx(float(full[0]), abs=0.05)


def test_chance_baselines_match_uniform_maps():
    masks = np.stack([lesion(), np.zeros((SIZE, SIZE), bool)])
    chance = st.chance_baselines(masks)
    area = lesion().mean()
    assert chance["n"] == 1
    assert chance["energy_in_mask"] == pytest.approx(area)
    uniform = np.ones((1, SIZE, SIZE), np.float32)
    assert chance["energy_in_mask"] == pytest.approx(float(st.energy_in_mask(uniform, lesion())[0]))
    assert chance["cam_iou"] == pytest.approx(float(st.cam_iou(uniform, lesion())[0]))
    assert chance["pointing_game"] == pytest.approx(area)
    assert st.chance_baselines(masks, tolerance_px=3)["pointing_game"] > area
    assert st.chance_baselines(np.zeros((2, 8, 8)))["pointing_game"] is None


def test_outside_fraction():
    fg = np.zeros((SIZE, SIZE), bool)
    fg[10:54, 10:54] = True
    maps = np.stack([gaussian(3), gaussian(2, centre=(2, 2))])
    out = st.outside_fraction(maps, fg)
    assert out[0] < 0.01 and out[1] > 0.9
    assert st.outside_fraction(maps, np.zeros_like(fg)).tolist() == [1.0, 1.0]


def test_mass_outside_matches_outside_fraction_of_the_zoomed_map_and_is_differentiable():
    """The training term equals the evaluation's statistic on tf-keras-vis' upsampled map."""
    from scipy.ndimage import zoom

    rng = np.random.default_rng(0)
    native = rng.uniform(0, 1, (3, 4, 4)).astype(np.float32)
    native[2] = 0.0  # no mass: uniform, so the outside fraction is 1 - the region's area
    fg = np.zeros((3, 32, 32), bool)
    fg[:, 4:28, 8:30] = True
    fg[1] = False  # empty region: everything is outside
    upsampled = np.stack([zoom(m, 8, order=1) for m in native])  # what tf-keras-vis does
    expected = st.outside_fraction(upsampled, fg)
    assert expected[1] == 1.0
    got = st.mass_outside(native, fg[..., None]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(
        st.upsample_maps(native, (32, 32)).numpy(), upsampled, rtol=1e-5, atol=1e-6
    )
    variable = tf.Variable(native[:1])
    with tf.GradientTape() as tape:
        value = st.mass_outside(variable, fg[:1])
    gradient = tape.gradient(value, variable).numpy()
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0


def test_peak_cells():
    maps = np.stack([one_hot(0, 0, 70), one_hot(69, 69, 70), one_hot(35, 12, 70)])
    assert st.peak_cells(maps, (7, 7)).tolist() == [[0, 0], [6, 6], [3, 1]]


def test_shortcut_warning_for_maps_peaking_in_a_corner():
    rng = np.random.default_rng(0)
    corner = [
        gaussian(2, centre=(60 + rng.integers(0, 3), 1 + rng.integers(0, 3))) for _ in range(5)
    ]
    spread = [gaussian(3, centre=tuple(rng.integers(12, 52, 2))) for _ in range(5)]
    maps = np.stack(corner + spread)
    labels = [0] * 5 + [1] * 5
    fg = np.zeros((SIZE, SIZE), bool)
    fg[8:56, 8:56] = True
    warnings = st.shortcut_warnings(maps, labels, fg, class_names=["Stone", "Tumor"])
    kinds = {(w.class_name, w.kind) for w in warnings}
    assert kinds == {("Stone", "same_cell"), ("Stone", "outside_foreground")}
    same = next(w for w in warnings if w.kind == "same_cell")
    assert same.cell == (6, 0) and same.fraction == 1.0 and "Stone" in str(same)
    one_hot_labels = np.eye(2)[labels]
    assert len(st.shortcut_warnings(maps, one_hot_labels)) == 1  # no foreground: cell only


def test_empty_maps_have_no_peak_and_get_their_own_warning():
    # Fostered Grad-CAM maps can reach zero everywhere: their argmax is cell (0, 0), which is no
    # peak; counting them as "peaking in one cell" (and off the body) misread a dead map.
    rng = np.random.default_rng(1)
    spread = [gaussian(3, centre=tuple(rng.integers(12, 52, 2))) for _ in range(5)]
    maps = np.stack([np.zeros((SIZE, SIZE))] * 4 + [gaussian(3)] + spread)
    fg = np.zeros((SIZE, SIZE), bool)
    fg[8:56, 8:56] = True
    warnings = st.shortcut_warnings(maps, [0] * 5 + [1] * 5, fg, class_names=["Normal", "Cyst"])
    assert [(w.class_name, w.kind, w.count, w.total) for w in warnings] == [
        ("Normal", "empty", 4, 5)
    ]
    assert "4/5 maps are empty" in str(warnings[0])


def test_summarize_maps_is_json_ready():
    maps = np.stack([gaussian(3), gaussian(8)])
    masks = np.stack([lesion(), np.zeros((SIZE, SIZE), bool)])
    summary = st.summarize_maps(maps, masks=masks, foreground=np.ones((SIZE, SIZE)), labels=[0, 0])
    assert summary["n_maps"] == 2 and summary["n_with_mask"] == 1
    assert summary["per_image"]["entropy"].shape == (2,)
    assert summary["mean"]["pointing_game"] == 1.0
    assert summary["mean"]["outside_fraction"] == 0.0
    assert summary["chance"]["n"] == 1
    text = json.dumps(st.to_jsonable(summary))
    assert "NaN" not in text
    assert json.loads(text)["per_image"]["cam_iou"][1] is None
