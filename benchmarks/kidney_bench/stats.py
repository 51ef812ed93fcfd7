"""Speed of the map statistics (:mod:`kidney_tf.explain.statistics`) on 224 x 224 maps.

Maps are smooth random blobs (like upsampled CAMs) with lesion masks and a body foreground.
Measured: ``summarize_maps`` with the paper's three statistics (entropy, radius, SNR), the full
evaluation summary (plus pointing game, energy in mask, IoU, outside fraction and shortcut
warnings), and each of the three statistics alone. The goal: statistics cost at most 5 % of the
explanation they summarise.

Usage: ``data = stats_throughput(n_maps=64, size=224)``
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kidney_bench.core import Figure, Goal, measure, pick, ratio

STATS_GOAL = Goal("<=", 5.0)


def synthetic_maps(
    n: int, size: int = 224, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(maps float32 [n,S,S] in [0,1], lesion masks bool, body foreground bool)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centres = rng.uniform(0.25 * size, 0.75 * size, (n, 2)).astype(np.float32)
    widths = rng.uniform(0.05 * size, 0.2 * size, n).astype(np.float32)
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    maps = np.exp(-d2 / (2 * widths[:, None, None] ** 2))
    maps += 0.05 * rng.random((n, size, size), dtype=np.float32)
    maps /= maps.max(axis=(1, 2), keepdims=True)
    masks = d2 < (0.5 * widths[:, None, None]) ** 2
    body = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.45 * size) ** 2
    foreground = np.broadcast_to(body, maps.shape)
    return maps.astype(np.float32), masks, foreground


def stats_throughput(
    *, n_maps: int = 64, size: int = 224, repeats: int = 2, seed: int = 0
) -> dict[str, Any]:
    """Timing of each statistic on one batch of ``n_maps`` maps, ``repeats`` times after a
    warm-up: ``{variant: {"seconds", "cpu_seconds", "per_s": {"wall", "cpu"}}}``."""
    import kidney_tf as ktf

    maps, masks, foreground = synthetic_maps(n_maps, size, seed)
    labels = np.arange(n_maps) % 4
    variants = {
        "summary_basic": lambda: ktf.summarize_maps(maps),
        "summary_full": lambda: ktf.summarize_maps(
            maps, masks, foreground, labels=labels, class_names=["a", "b", "c", "d"]
        ),
        "entropy": lambda: ktf.normalized_entropy(maps).numpy(),
        "radius": lambda: ktf.cam_radius(maps).numpy(),
        "snr": lambda: ktf.cam_snr(maps).numpy(),
    }
    out: dict[str, Any] = {"maps": n_maps, "size": size, "repeats": repeats}
    out["timings"] = {name: measure(fn, n_maps, repeats=repeats) for name, fn in variants.items()}
    return out


def stats_figures(
    data: dict[str, Any],
    explain_per_s: dict[str, float | None] | None = None,
    clock: str = "wall",
) -> list[Figure]:
    """Statistics time as a percentage of explanation time per map (goal <= 5 %); without an
    explanation rate (``{"wall", "cpu"}`` maps/s) the statistics' own maps/s, informational."""
    figures = []
    for variant in ("summary_basic", "summary_full"):
        per_s = pick(data["timings"][variant]["per_s"], clock)
        label = "entropy+radius+SNR" if variant == "summary_basic" else "full evaluation summary"
        explain = pick(explain_per_s, clock)
        if explain is None:
            figures.append(
                Figure(
                    f"stats.{variant}_maps_per_s",
                    f"map statistics ({label}) speed",
                    per_s,
                    "maps/s",
                    note=f"{data.get('size')} px maps, {clock} time; explain section not run",
                )
            )
            continue
        share = ratio(explain, per_s)
        figures.append(
            Figure(
                f"stats.{variant}_vs_explain",
                f"map statistics ({label}) time / explanation time",
                None if share is None else share * 100.0,
                "%",
                STATS_GOAL,
                note=f"{_fmt(per_s)} maps vs {_fmt(explain)} explanations per {clock} second, "
                f"{data.get('size')} px",
            )
        )
    return figures


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3g}"


__all__ = ["STATS_GOAL", "stats_figures", "stats_throughput", "synthetic_maps"]
