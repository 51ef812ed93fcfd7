"""Keras callbacks of the training run (all usable from any ``model.fit``).

- :class:`Throughput`: training images per second in the progress bar (``img/s``) and history.
- :class:`StopOnNaN`: ``TerminateOnNaN`` that names the metric that went non-finite.
- :class:`EmptyMapsWarning`: warns once when most fostered CAMs are empty (``cam_empty``).
- :class:`AtomicBestCheckpoint`: best model by a monitored value, never half-written.
- :func:`cosine_schedule`: per-epoch cosine learning-rate decay (``lr_schedule="cosine"``).
- :class:`EmaWeights`: validation and the best checkpoint use the optimizer's EMA weights.
- :class:`ProgressLines`: a plain progress line every N seconds (step, img/s, ETA) for logs.
- :class:`ResumableBackup`: crash-consistent backups (weights, optimizer, epoch *and step*, and
  the state of the other callbacks) every N steps and at each epoch end, so a killed run resumes
  where it stopped, mid-epoch included.

Usage::

    backup = ResumableBackup("run/backup", save_freq=50, callbacks=[early_stopping])
    state = backup.restore(model)          # None for a fresh run
    model.fit(ds, epochs=10, steps_per_epoch=100, callbacks=[Throughput(32), early_stopping, backup])
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kidney_tf.utils.io import atomic_path, write_json_atomic
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)


class Throughput(keras.callbacks.Callback):
    """Adds ``img/s`` (training images per second) to the logs, so the progress bar shows it.

    The rate leaves out each epoch's first step (graph tracing, pipeline warm-up) once a later
    step exists. The epoch's figure is recorded in the history as ``images_per_sec``.
    ``batch_size`` is the global batch (all replicas and workers together).

    Usage: ``model.fit(ds, callbacks=[Throughput(batch_size=32)])``.
    """

    def __init__(self, batch_size: int):
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self._start = 0.0
        self._first_end: float | None = None
        self._batches = 0
        self._last_rate = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._first_end = None
        self._batches = 0

    def _rate(self) -> float:
        now = time.perf_counter()
        if self._first_end is not None and self._batches > 1 and now > self._first_end:
            return (self._batches - 1) * self.batch_size / (now - self._first_end)
        return self._batches * self.batch_size / max(now - self._start, 1e-9)

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._first_end is None:
            self._first_end = time.perf_counter()
        self._last_rate = self._rate()
        if logs is not None:
            logs["img/s"] = self._last_rate

    def on_epoch_end(self, epoch, logs=None):
        # The rate at the last training step: validation and checkpoints are not training.
        if logs is not None:
            logs.pop("img/s", None)
            if self._batches:
                logs["images_per_sec"] = self._last_rate


def cosine_schedule(
    base_lr: float, epochs: int, *, start: int = 0
) -> keras.callbacks.LearningRateScheduler:
    """Cosine decay from ``base_lr`` to 0 over ``epochs`` epochs counted from epoch ``start``.

    Set at each epoch's start, as ``kidney-tf train --lr-schedule cosine`` does.
    Usage: ``model.fit(ds, epochs=3, callbacks=[cosine_schedule(3e-3, 3)])``
    """
    length = max(1, int(epochs))

    def cosine(epoch: int, _lr: float) -> float:
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - start) / length))

    return keras.callbacks.LearningRateScheduler(cosine)


class EmaWeights(keras.callbacks.SwapEMAWeights):
    """``SwapEMAWeights`` that also lends the EMA weights to a checkpoint (:meth:`in_model`).

    Validation then measures the averaged weights, and :class:`AtomicBestCheckpoint` given this
    object saves them, so the best model is chosen and saved on the weights that are measured.
    The optimizer needs ``use_ema=True``. Put it before the checkpoint in the callback list.

    Usage: ``ema = EmaWeights(); model.fit(ds, callbacks=[ema, AtomicBestCheckpoint(p, ema=ema)])``
    """

    def __init__(self):
        super().__init__(swap_on_epoch=False)

    @contextlib.contextmanager
    def in_model(self):
        """Context in which the model's trainable variables hold the EMA weights."""
        if self._ema_weights_in_model:
            yield
            return
        self._swap_variables()
        self._ema_weights_in_model = True
        try:
            yield
        finally:
            self._swap_variables()
            self._ema_weights_in_model = False


class ProgressLines(keras.callbacks.Callback):
    """Write ``epoch e/E step s/S  img/s  ETA`` every ``every`` seconds (for redirected output).

    Keras' progress bar redraws one line with carriage returns, which a log file shows only at
    the epoch's end; this writes whole lines, so a log shows where a long epoch is.

    Usage: ``model.fit(ds, epochs=3, verbose=2, callbacks=[ProgressLines(every=60)])``.
    """

    def __init__(self, every: float = 60.0, stream: Any = None):
        super().__init__()
        if every <= 0:
            raise ValueError(f"every must be > 0 seconds, got {every}")
        self.every = float(every)
        self.stream = stream
        self._epoch = 0
        self._start = self._last = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self._last < self.every:
            return
        self._last = now
        steps = (self.params or {}).get("steps") or 0
        epochs = (self.params or {}).get("epochs") or 0
        done = int(batch) + 1
        rate = (logs or {}).get("img/s")
        eta = (now - self._start) / done * (steps - done) if steps else float("nan")
        parts = [f"epoch {self._epoch + 1}/{epochs}", f"step {done}/{steps or '?'}"]
        if rate is not None:
            parts.append(f"{float(rate):.1f} img/s")
        if (logs or {}).get("loss") is not None:
            parts.append(f"loss {float(logs['loss']):.4f}")
        if math.isfinite(eta):
            parts.append(f"epoch ETA {eta:.0f} s")
        # Keras' progress bar (verbose=1) ends its updates with "\r", not a newline: start a line
        lead = "\n" if (self.params or {}).get("verbose") == 1 else ""
        print(lead + "  ".join(parts), file=self.stream or sys.stdout, flush=True)


class EmptyMapsWarning(keras.callbacks.Callback):
    """Warns once when most fostered CAMs are empty (``cam_empty`` above ``threshold``).

    An empty map (no positive mass) reads as uniform and gives the CAM penalty no gradient, so a
    fostered Grad-CAM or exact map that reached zero stays there: the warning names the fix
    (``alive_weight``). ``warned_at`` is the epoch (0-based) of the warning, else None.

    Usage: ``model.fit(ds, callbacks=[EmptyMapsWarning()])``.
    """

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = float(threshold)
        self.warned_at: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        empty = {k: float(logs[k]) for k in ("cam_empty", "val_cam_empty") if k in logs}
        worst = max(empty, key=empty.get, default=None)
        if self.warned_at is None and worst and empty[worst] > self.threshold:
            self.warned_at = int(epoch)
            log.warning(
                "epoch %d: %s = %.2f: most fostered CAMs have no positive mass, and the CAM "
                "penalty has no gradient on them; set alive_weight (--alive-weight, e.g. the "
                "entropy weight) or foster the gradcam++ map",
                epoch + 1,
                worst,
                empty[worst],
            )


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN`` that says which metric went non-finite and remembers where.

    ``stopped_at`` is ``(epoch, batch)`` of the first non-finite step, else None.

    Usage: ``model.fit(ds, callbacks=[StopOnNaN()])``.
    """

    def __init__(self):
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_batch_end(self, batch, logs=None):
        bad = [key for key, value in (logs or {}).items() if not _is_finite(value)]
        if bad:
            log.warning("Stopping: non-finite %s at batch %d", ", ".join(bad), batch)
            if self.stopped_at is None:
                self.stopped_at = (self._epoch, int(batch))
            self.model.stop_training = True


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def save_model_file(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save ``model`` to a ``.keras`` file atomically, without the optimizer's state.

    Keras 3 has no ``include_optimizer=False``: the optimizer is detached for the save and put
    back. The file keeps the compile settings (loading it compiled gives a fresh optimizer) and
    is about a third of the size with Adam (ResNet-50: ~95 MB instead of ~283 MB); training
    state lives in the run's resumable backup. Usage: ``save_model_file(model, "run/model.keras")``.
    """
    optimizer = getattr(model, "optimizer", None)
    with atomic_path(path, suffix=".keras") as tmp:
        model.optimizer = None
        try:
            model.save(tmp)
        finally:
            model.optimizer = optimizer
    return Path(path)


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Save the model to ``filepath`` whenever ``monitor`` improves, atomically.

    Unlike ``ModelCheckpoint``, a kill during the save never leaves a truncated file: the model
    is written beside it and renamed. Its ``best`` value is part of :class:`ResumableBackup`'s
    state, so a resumed run keeps comparing against the value reached before the interruption.

    With ``ema`` (an :class:`EmaWeights`), the EMA weights are saved.

    Usage: ``AtomicBestCheckpoint("run/best.keras", monitor="val_loss")``.
    """

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        mode: str = "auto",
        ema: EmaWeights | None = None,
    ):
        super().__init__()
        self.filepath = Path(filepath)
        self.ema = ema
        self.monitor = monitor
        if mode == "auto":
            mode = "max" if "acc" in monitor or "f1" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be auto, min or max, got {mode!r}")
        self.mode = mode
        self.best: float | None = None
        self.best_epoch: int | None = None

    def get_state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        if self._improved(float(value)):
            weights = self.ema.in_model() if self.ema is not None else contextlib.nullcontext()
            with weights:
                save_model_file(self.model, self.filepath)
            self.best = float(value)
            self.best_epoch = int(epoch) + 1


# Attributes that make up the state of Keras' stateful callbacks (reset in on_train_begin).
_KERAS_CALLBACK_STATE = {
    keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch", "stopped_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if hasattr(value, "numpy"):
        return np.asarray(value).tolist()
    return value


def callback_state(callback: keras.callbacks.Callback) -> dict[str, Any] | None:
    """JSON-able state of ``callback`` (``get_state()`` or known Keras attributes), or None."""
    if hasattr(callback, "get_state"):
        return {k: _jsonable(v) for k, v in callback.get_state().items()}
    for cls, names in _KERAS_CALLBACK_STATE.items():
        if isinstance(callback, cls):
            return {name: _jsonable(getattr(callback, name, None)) for name in names}
    return None


def restore_callback_state(callback: keras.callbacks.Callback, state: dict[str, Any]) -> None:
    """Inverse of :func:`callback_state`."""
    if hasattr(callback, "set_state"):
        callback.set_state(state)
        return
    for name, value in state.items():
        setattr(callback, name, value)


def read_backup_state(backup_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The state recorded in ``backup_dir`` (see :class:`ResumableBackup`), or None if there is
    none. Raises ``ValueError`` naming the file when it is unreadable or its weights are gone.

    Usage: ``state = read_backup_state("runs/exp/backup"); print(state["epoch"], state["step"])``.
    """
    path = Path(backup_dir) / ResumableBackup.STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
        weights = Path(backup_dir) / state["weights"]
        int(state["epoch"]), int(state["step"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable training backup ({exc}); delete the folder") from exc
    if not weights.is_file():
        raise ValueError(f"{path}: its weights file {weights.name} is missing; delete the folder")
    return state


class ResumableBackup(keras.callbacks.Callback):
    """Crash-consistent backups of the training state, restorable mid-epoch.

    Saves the model's and optimizer's variables to ``backup_dir/ckpt-eEEEE-sSSSSSS.weights.h5``,
    then records ``{"phase", "epoch", "step", "weights", "callbacks", "metrics"}`` in
    ``backup_dir/state.json`` (written atomically, last, so a kill at any moment leaves the
    previous complete backup), then deletes older weights files. ``epoch``/``step`` give the
    position to continue from: ``step`` training steps of epoch ``epoch`` are done.

    It saves at the end of every epoch and, with ``save_freq=N``, every N steps. The states of
    ``callbacks`` (EarlyStopping, ReduceLROnPlateau, anything with ``get_state``/``set_state``)
    are saved too and re-applied at the start of every ``fit``; put this callback LAST so it sees
    their end-of-epoch state. On one replica, a resumed epoch's metrics include the steps run
    before the interruption.

    ``restore_dir`` (default ``backup_dir``) is where :meth:`restore` reads from: non-chief
    workers back up into private folders but restore from the chief's backup.

    Usage::

        backup = ResumableBackup("run/backup", save_freq=100, callbacks=[early_stopping])
        state = backup.restore(model)          # after compile; None when there is no backup
        backup.start_segment(epoch, step)      # before each fit: where it begins
    """

    STATE_FILE = "state.json"

    def __init__(
        self,
        backup_dir: str | os.PathLike,
        *,
        save_freq: int | str = "epoch",
        restore_dir: str | os.PathLike | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        phase: str = "main",
    ):
        super().__init__()
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1
        ):
            raise ValueError(f"save_freq must be 'epoch' or a positive integer, got {save_freq!r}")
        self.backup_dir = Path(backup_dir)
        self.restore_dir = Path(restore_dir) if restore_dir is not None else self.backup_dir
        self.save_freq = save_freq
        self.callbacks = list(callbacks)
        self.phase = phase
        self._callback_states: dict[str, Any] | None = None
        self._metrics: list[Any] | None = None
        self._first_epoch = 0
        self._first_step = 0
        self._epoch = 0
        self._since_save = 0

    # ------------------------------------------------------------------------------- restoring
    def restore(self, model: keras.Model | None = None) -> dict[str, Any] | None:
        """Load the latest backup into ``model`` (weights and optimizer); return its state.

        Call after ``compile`` (inside the strategy scope). Returns None when there is no backup
        for this callback's ``phase``.
        """
        model = model or self.model
        state = read_backup_state(self.restore_dir)
        source = self.restore_dir
        if state is None and self.restore_dir != self.backup_dir:
            state, source = read_backup_state(self.backup_dir), self.backup_dir
        if state is None or state.get("phase", "main") != self.phase:
            return None
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(source / state["weights"])
        self._callback_states = state.get("callbacks") or {}
        self._metrics = state.get("metrics")
        log.info("Resuming from %s: epoch %d, step %d", source, state["epoch"] + 1, state["step"])
        return state

    def start_segment(self, epoch: int, step: int = 0) -> None:
        """The next ``fit`` starts at ``epoch`` with ``step`` of its steps already done."""
        self._first_epoch = int(epoch)
        self._first_step = int(step)
        self._since_save = 0

    def _key(self, index: int, callback: keras.callbacks.Callback) -> str:
        return f"{index}:{type(callback).__name__}"

    def on_train_begin(self, logs=None):
        # Runs after the other callbacks' on_train_begin (which reset them): re-apply states.
        for i, callback in enumerate(self.callbacks):
            state = (self._callback_states or {}).get(self._key(i, callback))
            if state is not None:
                restore_callback_state(callback, state)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def _merge_metrics(self) -> None:
        """Add the interrupted epoch's metric accumulators to this (resumed) epoch's.

        Done after the first step, when Keras has built every metric. Keras metrics keep
        additive accumulators (totals, counts, confusion counts), so the sum is the state an
        uninterrupted epoch would have reached.
        """
        saved, self._metrics = self._metrics, None
        variables = self.model.metrics_variables
        if len(variables) != len(saved) or _replicas(self.model) != 1:
            log.info("Resumed epoch: train metrics cover the steps after the interruption only")
            return
        for variable, value in zip(variables, saved):
            variable.assign_add(np.asarray(value, dtype=variable.dtype))

    def _step_in_epoch(self, batch: int) -> int:
        offset = self._first_step if self._epoch == self._first_epoch else 0
        return offset + int(batch) + 1

    def on_train_batch_end(self, batch, logs=None):
        if not all(_is_finite(v) for v in (logs or {}).values()):
            return  # never back up a diverged state
        if self._metrics is not None:
            if self._epoch == self._first_epoch and self._first_step > 0:
                self._merge_metrics()
            self._metrics = None
        if self.save_freq == "epoch":
            return
        self._since_save += 1
        if self._since_save >= self.save_freq:
            self._save(self._epoch, self._step_in_epoch(batch))

    def on_epoch_end(self, epoch, logs=None):
        if not all(_is_finite(v) for k, v in (logs or {}).items() if not k.startswith("val_")):
            return
        self._save(int(epoch) + 1, 0)

    # ---------------------------------------------------------------------------------- saving
    def _save(self, epoch: int, step: int) -> None:
        self._since_save = 0
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-e{epoch:04d}-s{step:06d}.weights.h5"
        with atomic_path(self.backup_dir / name, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        states = {}
        for i, callback in enumerate(self.callbacks):
            state = callback_state(callback)
            if state is not None:
                states[self._key(i, callback)] = state
        metrics = None
        if step > 0 and _replicas(self.model) == 1:
            metrics = [np.asarray(v.numpy()).tolist() for v in self.model.metrics_variables]
        state = {
            "format": 1,
            "phase": self.phase,
            "epoch": epoch,
            "step": step,
            "weights": name,
            "stopped": bool(getattr(self.model, "stop_training", False)),
            "callbacks": states,
            "metrics": metrics,
            "saved_at": time.time(),
        }
        write_json_atomic(self.backup_dir / self.STATE_FILE, state)
        for old in self.backup_dir.glob("ckpt-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


def _replicas(model: keras.Model) -> int:
    strategy = getattr(model, "distribute_strategy", None)
    return int(getattr(strategy, "num_replicas_in_sync", 1))


__all__ = [
    "AtomicBestCheckpoint",
    "ResumableBackup",
    "StopOnNaN",
    "Throughput",
    "callback_state",
    "read_backup_state",
    "restore_callback_state",
]
