"""Figures: every plot writes a non-empty, decodable PNG of a sensible size."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from kidney_tf.evaluation import figures
from kidney_tf.evaluation.calibration import reliability_data
from kidney_tf.utils import plots

CLASSES = ["Cyst", "Normal", "Stone", "Tumor"]


def _assert_png(path, min_size=(300, 200)):
    assert path.is_file() and path.stat().st_size > 5_000
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1]
        # Not a blank canvas: several distinct colours.
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 10
    assert not list(path.parent.glob(".*.png"))  # no temporary files left behind


@pytest.fixture()
def toy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 48, 48, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:7, 0:7]
    maps = np.stack([np.exp(-((yy - i % 7) ** 2 + (xx - 3) ** 2) / 4.0) for i in range(8)])
    labels = np.arange(8) % 4
    return images, maps.astype(np.float32), labels


def test_confusion_matrix_and_samples(tmp_path, toy):
    images, _, labels = toy
    cm = np.array([[5, 1, 0, 0], [0, 6, 0, 0], [1, 0, 4, 1], [0, 0, 0, 7]])
    _assert_png(figures.plot_confusion_matrix(cm, CLASSES, tmp_path / "cm.png"))
    preds = (labels + np.array([0, 0, 1, 0, 0, 0, 0, 0])) % 4
    out = figures.plot_samples(
        images,
        labels,
        CLASSES,
        tmp_path / "s.png",
        predictions=preds,
        probabilities=np.full(8, 0.9),
    )
    _assert_png(out)


def test_cam_overlays_and_statistics(tmp_path, toy):
    images, maps, labels = toy
    out = figures.plot_cam_overlays(
        images[:3], maps[:3], tmp_path / "o.png", titles=["a", "b", "c"], method="gradcam"
    )
    _assert_png(out, (600, 600))
    stats = {
        "entropy": np.linspace(0.2, 0.9, 8),
        "radius": np.linspace(0.1, 0.5, 8),
        "snr_db": np.linspace(1, 10, 8),
        "outside_fraction": np.full(8, np.nan),  # no foreground: panel dropped
    }
    _assert_png(figures.plot_cam_statistics(stats, labels, CLASSES, tmp_path / "st.png"))
    with pytest.raises(ValueError, match="maps"):
        figures.plot_cam_overlays(images[:2], maps[:1], tmp_path / "bad.png")


def test_overlay_cam_blends_the_jet_map_over_a_gray_copy(toy):
    from matplotlib import colormaps

    images, maps, _ = toy
    blended = figures.overlay_cam(images[0], maps[0])
    assert blended.shape == (48, 48, 3) and blended.dtype == np.uint8
    alpha, jet = figures.OVERLAY_ALPHA, colormaps["jet"]
    image = np.zeros((48, 48, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 60, 120, 180  # gray copy: 120 everywhere

    def expected(colour) -> np.ndarray:
        return ((1 - alpha) * 120 / 255 + alpha * np.asarray(colour[:3])) * 255

    # A zero map (no evidence): every pixel gets the colour map's lowest colour, nothing else.
    zero = figures.overlay_cam(image, np.zeros((7, 7)))
    np.testing.assert_allclose(zero.reshape(-1, 3), [expected(jet(0.0))] * 48 * 48, atol=1)
    # One hot cell of a 4x4 map: jet's top colour (the map's maximum) appears in that cell.
    cam = np.zeros((4, 4))
    cam[1, 2] = 3.0
    hot = figures.overlay_cam(image, cam).astype(np.float64)
    distance = np.abs(hot - expected(jet(1.0))).max(axis=-1)
    y, x = np.unravel_index(np.argmin(distance), (48, 48))
    assert 12 <= y < 24 and 24 <= x < 36 and distance[y, x] <= 1, (y, x, distance[y, x])
    far = hot[47, 0]  # far from the cell: heat 0, the lowest colour again
    np.testing.assert_allclose(far, expected(jet(0.0)), atol=1)


def test_reliability_diagram(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.3, size=200)
    y = rng.integers(0, 4, 200)
    rel = reliability_data(probs, y)
    _assert_png(figures.plot_reliability_diagram(rel, tmp_path / "r1.png"))
    out = figures.plot_reliability_diagram(
        rel.to_dict(), tmp_path / "r2.png", calibrated=rel, temperature=1.7
    )
    _assert_png(out)


def test_plot_history_from_csv_and_dict(tmp_path):
    path = tmp_path / "history.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "accuracy", "loss", "val_accuracy", "val_loss", "cam_entropy"])
        for e in range(5):
            writer.writerow(
                [e, 0.5 + e / 10, 1 - e / 10, 0.45 + e / 10, 1.1 - e / 10, 0.8 - e / 20]
            )
    _assert_png(plots.plot_history(path, tmp_path / "curves.png"))
    hist = {"loss": [1.0, 0.8], "val_loss": [1.1, 0.9], "learning_rate": [1e-3, 1e-4]}
    _assert_png(plots.plot_history(hist, tmp_path / "curves2.png"))
    with pytest.raises(FileNotFoundError, match="history"):
        plots.plot_history(tmp_path / "missing.csv", tmp_path / "x.png")


def test_dataset_figures(tmp_path, toy):
    images, _, _ = toy
    counts = {
        "train": dict(zip(CLASSES, [30, 40, 20, 25])),
        "val": dict(zip(CLASSES, [5, 6, 3, 4])),
    }
    _assert_png(figures.plot_class_distribution(counts, tmp_path / "dist.png"))
    crops = [img[8:40, 4:44] for img in images[:2]]
    out = figures.plot_crop_pairs(
        images[:2], crops, tmp_path / "crop.png", boxes=[(4, 8, 44, 40), None]
    )
    _assert_png(out)
    _assert_png(figures.plot_image_grid(list(images), tmp_path / "grid.png", ncols=4))


def test_paired_overlays(tmp_path, toy):
    images, maps, _ = toy
    out = figures.plot_paired_overlays(
        images[:2], maps[:2], maps[2:4], tmp_path / "p.png", labels=("baseline", "fostered")
    )
    _assert_png(out)


@pytest.mark.real_data
def test_data_figures_cli_on_real_mri(brain_mri_sample, tmp_path, capsys):
    import json

    from kidney_tf.cli.main import main

    out = tmp_path / "figs"
    code = main(
        ["data", "figures", "--data", str(brain_mri_sample), "--out", str(out), "--crop", "brain",
         "--image-size", "96", "--n-augment", "2"]
    )  # fmt: skip
    assert code == 0
    for name in ("class_distribution", "samples", "crop_pairs", "augmentation"):
        _assert_png(out / f"{name}.png")
    summary = json.loads((out / "dataset_figures.json").read_text())
    assert summary["class_names"] == ["glioma", "meningioma", "notumor", "pituitary"]
    total = sum(sum(c.values()) for c in summary["counts"].values())
    assert total == summary["n_images"] > 0
    assert len(summary["crop_examples"]) == 4 and all(e["box"] for e in summary["crop_examples"])
    assert "train" in capsys.readouterr().out


def test_data_figures_rejects_bad_arguments(tmp_path):
    from kidney_tf.evaluation.dataset_figures import dataset_figures

    with pytest.raises(FileNotFoundError, match="missing"):
        dataset_figures(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="crop"):
        dataset_figures(tmp_path, tmp_path / "out", crop="lungs")


def test_overlays_outline_the_lesion_where_a_mask_exists(tmp_path):
    """Lesion outlines (green) on the image and overlay columns; rows without a mask have none."""
    from PIL import Image

    gray = np.full((48, 48, 3), 90, np.uint8)
    mask = np.zeros((48, 48), np.uint8)
    mask[10:30, 12:34] = 1
    maps = np.zeros((2, 7, 7), np.float32)
    for masks, name in (([mask, None], "with.png"), ([None, None], "without.png")):
        out = figures.plot_cam_overlays([gray, gray], maps, tmp_path / name, masks=masks)
        pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
        green = (pixels[..., 1] > 150) & (pixels[..., 0] < 100) & (pixels[..., 2] < 100)
        assert green.sum() > 50 if name == "with.png" else green.sum() == 0
    out = figures.plot_paired_overlays(
        [gray], maps[:1], maps[:1], tmp_path / "paired.png", masks=[mask]
    )
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert ((pixels[..., 1] > 150) & (pixels[..., 0] < 100) & (pixels[..., 2] < 100)).sum() > 50
