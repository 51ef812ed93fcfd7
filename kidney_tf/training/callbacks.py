"""Keras callbacks used by the training CLI (and usable from any ``model.fit``)."""

from __future__ import annotations

import time

import keras


class Throughput(keras.callbacks.Callback):
    """Adds ``img/s`` (training images per second) to the logs, so the progress bar shows it.

    Usage: ``model.fit(ds, callbacks=[Throughput(batch_size=32)])``. The per-epoch figure is
    also recorded in the history as ``images_per_sec``.
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = int(batch_size)
        self._epoch_start = 0.0
        self._batches = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1
        if logs is not None:
            elapsed = max(time.perf_counter() - self._epoch_start, 1e-9)
            logs["img/s"] = self._batches * self.batch_size / elapsed

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            elapsed = max(time.perf_counter() - self._epoch_start, 1e-9)
            logs["images_per_sec"] = self._batches * self.batch_size / elapsed
            logs.pop("img/s", None)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN`` that also says which metric went non-finite, for the run log."""

    def on_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = [k for k, v in logs.items() if isinstance(v, float) and v != v]
        if bad:
            print(f"\nStopping: non-finite {', '.join(bad)} at batch {batch}.")
        super().on_batch_end(batch, logs)


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Save the model to ``filepath`` whenever ``monitor`` improves, atomically.

    Unlike ``ModelCheckpoint``, a kill during the save never leaves a truncated ``best.keras``:
    the model is written to a temporary file beside it and renamed.

    Usage: ``AtomicBestCheckpoint("run/best.keras", monitor="val_loss")``.
    """

    def __init__(self, filepath, monitor: str = "val_loss", mode: str = "auto"):
        super().__init__()
        self.filepath = str(filepath)
        self.monitor = monitor
        if mode == "auto":
            mode = "max" if "acc" in monitor or "f1" in monitor else "min"
        self.mode = mode
        self.best: float | None = None

    @property
    def _record_path(self) -> str:
        return self.filepath + ".json"

    def on_train_begin(self, logs=None):
        # After a resume, keep comparing against the best value saved before the interruption.
        import json
        import os

        if self.best is None and os.path.isfile(self._record_path):
            with open(self._record_path) as fh:
                record = json.load(fh)
            if record.get("monitor") == self.monitor:
                self.best = float(record["value"])

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        from kidney_tf.utils.io import atomic_path, write_json_atomic

        value = (logs or {}).get(self.monitor)
        if value is None or value != value:  # missing or NaN
            return
        if self._improved(float(value)):
            self.best = float(value)
            with atomic_path(self.filepath, suffix=".keras") as tmp:
                self.model.save(tmp)
            write_json_atomic(
                self._record_path, {"monitor": self.monitor, "value": self.best, "epoch": epoch + 1}
            )
