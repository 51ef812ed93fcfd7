"""``tf.distribute`` strategies for training: single device, one machine, several machines.

- ``"default"``: TensorFlow's default strategy (one device).
- ``"mirrored"``: :class:`tf.distribute.MirroredStrategy` over all local GPUs (or CPUs split
  into logical devices with :func:`split_cpu`, which must run before TensorFlow initialises).
- ``"multiworker"``: :class:`MultiWorkerStrategy`, a ``MultiWorkerMirroredStrategy`` configured
  from the ``TF_CONFIG`` environment variable. Every worker runs the same command; the chief
  (``chief`` task, else ``worker`` 0) writes the run folder, the others write into private
  temporary folders (see :func:`output_dir`) that are removed at the end.

Usage::

    from kidney_tf.training.distribute import make_strategy, is_chief
    strategy = make_strategy("mirrored")
    with strategy.scope():
        model = build_classifier("resnet50", weights=None)

    # two workers on one machine (e.g. to try multi-worker training)
    ports = free_ports(2)
    os.environ["TF_CONFIG"] = local_tf_config(ports, index=0)   # index=1 in the other process
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kidney_tf.recipes import STRATEGIES

# Seconds a cross-worker collective may wait for its peers before failing (a dead worker).
# Generous: the first step also traces and compiles the model on every worker.
COLLECTIVE_TIMEOUT = 600.0


def make_strategy(
    name: str = "default",
    *,
    cpu_replicas: int | None = None,
    timeout_seconds: float | None = COLLECTIVE_TIMEOUT,
):
    """The ``tf.distribute`` strategy called ``name`` (see the module docstring).

    Create it at the start of the program: a multi-worker strategy must exist before
    TensorFlow runs any op. ``cpu_replicas`` (``"mirrored"`` only) first splits the CPU into
    that many logical devices (:func:`split_cpu`), so the mirrored path runs without GPUs.
    ``timeout_seconds`` bounds every cross-worker collective of ``"multiworker"``: when a peer
    dies, the survivors fail with ``DeadlineExceededError`` instead of waiting forever
    (``None`` or 0: no bound). Raises ``ValueError`` for an unknown name, a missing
    ``TF_CONFIG`` or ``cpu_replicas`` with another strategy.

    Usage: ``strategy = make_strategy("mirrored", cpu_replicas=2)``.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if cpu_replicas is not None and name != "mirrored":
        raise ValueError(f"cpu_replicas needs strategy 'mirrored', not {name!r}")
    if name == "mirrored":
        if cpu_replicas is not None:
            split_cpu(cpu_replicas)
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        _check_tf_config()
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=timeout_seconds or None
        )
        return _multi_worker_strategy_class()(communication_options=options)
    return tf.distribute.get_strategy()


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "--strategy multiworker needs the TF_CONFIG environment variable "
            '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}})'
        )
    try:
        config = json.loads(raw)
        config["cluster"]
        config["task"]["type"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"TF_CONFIG is not a valid cluster description: {exc}") from None


_MULTI_WORKER_CLASS = None


def _multi_worker_strategy_class():
    """``MultiWorkerMirroredStrategy`` with a ``reduce`` that Keras 3 ``fit`` can use.

    Keras 3.15's TF trainer calls ``strategy.reduce("MEAN", (x, y), axis=None)`` on a nested
    batch (symbolic build, shapes only) and ``reduce("MEAN", scalar, axis=0)`` on per-replica
    metric values; the collective strategy accepts neither. This subclass returns the local
    batch for the first (no collective: shares of a partial batch differ in size) and ignores
    ``axis`` for scalars.
    """
    global _MULTI_WORKER_CLASS
    if _MULTI_WORKER_CLASS is not None:
        return _MULTI_WORKER_CLASS
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """``tf.distribute.MultiWorkerMirroredStrategy`` usable by Keras 3 ``fit`` (see above)."""

        def reduce(self, reduce_op, value, axis=None):
            parent = super()

            def first(leaf):
                if isinstance(leaf, tf.distribute.DistributedValues):
                    return self.experimental_local_results(leaf)[0]
                return leaf

            def rank(leaf):
                return getattr(getattr(first(leaf), "shape", None), "rank", None)

            leaves = tf.nest.flatten(value)
            nested = not isinstance(value, (tf.distribute.DistributedValues, tf.Tensor))
            batch = bool(leaves) and all((rank(leaf) or 0) >= 1 for leaf in leaves)
            if str(reduce_op).upper().endswith("MEAN") and axis is None and nested and batch:
                # Keras' symbolic build "reduces" one input batch only to learn its shapes.
                # The workers' shares of a partial batch differ in size (a 5-image batch on
                # 2 workers: 3 + 2), which an all-reduce rejects, so the local share stands in
                # (no collective).
                return tf.nest.map_structure(first, value)

            def one(leaf):
                return parent.reduce(reduce_op, leaf, axis=None if rank(leaf) == 0 else axis)

            return tf.nest.map_structure(one, value)

    _MULTI_WORKER_CLASS = MultiWorkerStrategy
    return MultiWorkerStrategy


def task(strategy) -> tuple[str | None, int]:
    """``(task_type, task_id)`` of this process in a multi-worker cluster, ``(None, 0)`` otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None) if resolver is not None else None
    if not task_type:
        return None, 0
    return str(task_type), int(resolver.task_id or 0)


def is_chief(strategy) -> bool:
    """True on the process that writes the run's outputs (always true without multi-worker).

    Usage: ``if is_chief(strategy): write_json_atomic(run / "metrics.json", metrics)``.
    """
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    if task_type != "worker":
        return False
    cluster = getattr(strategy.cluster_resolver, "cluster_spec", lambda: None)()
    has_chief = cluster is not None and "chief" in cluster.as_dict()
    return not has_chief and task_id == 0


def output_dir(run_dir: str | os.PathLike, strategy) -> Path:
    """Where this process writes: ``run_dir`` on the chief, a private temp folder elsewhere.

    Non-chief workers must still save (their saves take part in the same collective reads), but
    into ``run_dir/.worker-<type>-<id>``, which the trainer removes when the run ends.

    Usage: ``out = output_dir("runs/exp", strategy)``.
    """
    run_dir = Path(run_dir)
    if is_chief(strategy):
        return run_dir
    task_type, task_id = task(strategy)
    return run_dir / f".worker-{task_type}-{task_id}"


def split_cpu(num_devices: int) -> list[Any]:
    """Split the CPU into ``num_devices`` logical devices (for ``MirroredStrategy`` on a CPU).

    Must run before TensorFlow initialises its devices (before any op); raises ``RuntimeError``
    otherwise. Returns the logical CPU devices.

    Usage: ``split_cpu(2); strategy = make_strategy("mirrored")``.
    """
    import tensorflow as tf

    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )
    return tf.config.list_logical_devices("CPU")


def free_ports(count: int, host: str = "localhost") -> list[int]:
    """``count`` distinct TCP ports free on ``host`` right now (for a local test cluster).

    Usage: ``ports = free_ports(2)``.
    """
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def local_tf_config(ports: Sequence[int], index: int, host: str = "localhost") -> str:
    """``TF_CONFIG`` JSON for worker ``index`` of a cluster of workers on ``host:ports``.

    Usage: ``os.environ["TF_CONFIG"] = local_tf_config([23456, 23457], index=0)``.
    """
    if not 0 <= index < len(ports):
        raise ValueError(f"index must be in [0, {len(ports)}), got {index}")
    return json.dumps(
        {
            "cluster": {"worker": [f"{host}:{port}" for port in ports]},
            "task": {"type": "worker", "index": int(index)},
        }
    )


__all__ = [
    "free_ports",
    "is_chief",
    "local_tf_config",
    "make_strategy",
    "output_dir",
    "split_cpu",
    "task",
]
