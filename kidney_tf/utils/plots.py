"""Figure helpers and training curves (matplotlib ``Figure``, no pyplot state), written atomically.

Below both ``training`` (``curves.png`` of every run) and ``evaluation`` (the report figures).
Figures are built with ``matplotlib.figure.Figure``, so no backend is forced on the user: a
notebook keeps its inline backend.

Usage::

    from kidney_tf.utils.plots import plot_history
    plot_history("runs/kidney/history.csv", "runs/kidney/curves.png")
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kidney_tf.utils.io import atomic_path

DPI = 110


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure (safe in threads and servers)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, out: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG at ``out`` atomically and return the path."""
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out


# ---------------------------------------------------------------------------- training curves
def _read_history(
    history: Mapping[str, Sequence[float]] | str | os.PathLike,
) -> dict[str, np.ndarray]:
    if isinstance(history, Mapping):
        data = {k: np.asarray(v, dtype=float) for k, v in history.items()}
    else:
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: history file not found")
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise ValueError(f"{path}: history CSV has no rows")
        data = {}
        for key in rows[0]:
            try:
                data[key] = np.array(
                    [float(r[key]) if r[key] not in ("", None) else np.nan for r in rows]
                )
            except ValueError:
                continue  # a non-numeric column (e.g. a phase name) is skipped
    return data


def plot_history(
    history: Mapping[str, Sequence[float]] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    title: str = "Training curves",
) -> Path:
    """Accuracy and loss curves (train solid, validation dashed), plus any other logged metric.

    ``history`` is a Keras ``History``, its ``.history`` dict, or a ``CSVLogger`` CSV file.

    Usage: ``plot_history("runs/kidney/history.csv", "runs/kidney/curves.png")``.
    """
    if hasattr(history, "history") and not isinstance(history, (str, os.PathLike, Mapping)):
        history = history.history
    data = _read_history(history)
    epochs = data.pop("epoch", None)
    data.pop("lr", None)
    lr = data.pop("learning_rate", None)
    base = sorted({k[4:] if k.startswith("val_") else k for k in data})
    if not base:
        raise ValueError("history has no metrics to plot")
    order = [k for k in ("accuracy", "loss") if k in base] + [
        k for k in base if k not in ("accuracy", "loss")
    ]
    panels = order + (["learning_rate"] if lr is not None else [])
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(4.2 * ncols, 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, key in zip(axes, panels):
        if key == "learning_rate":
            series = {"learning rate": lr}
        else:
            series = {
                name: data[k]
                for name, k in (("train", key), ("validation", f"val_{key}"))
                if k in data
            }
        for name, values in series.items():
            x = (
                epochs + 1
                if epochs is not None and len(epochs) == len(values)
                else np.arange(1, len(values) + 1)
            )
            ax.plot(
                x,
                values,
                marker="o",
                markersize=3,
                linestyle="--" if name == "validation" else "-",
                label=name,
            )
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if key == "learning_rate":
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    for ax in axes[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title)
    return save_figure(fig, out)
