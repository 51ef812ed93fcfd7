"""Resumable pipeline stages: a finished stage is recorded on disk and never redone.

Each stage is a plain function returning a JSON-serialisable dict of results. ``StageRunner.run``
writes ``<out>/stages/<name>.json`` atomically after the stage succeeds; on the next run the
recorded result is returned without calling the function again. A stage killed midway leaves no
record, so it simply runs again (stages write their own outputs atomically).

A recorded stage is only reused when it ran with the same ``params`` (keys listed in
``resumable_keys``, e.g. verbosity, may differ): resuming a folder with other settings raises
``StageMismatchError`` instead of silently mixing two configurations.

Usage::

    runner = StageRunner("runs/kidney", params={"epochs": 8})
    data = runner.run("data", lambda: {"root": str(make_phantoms())})
    runner.run("train_baseline", lambda: train(data["root"]))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidney_tf.utils.io import ensure_writable_dir, write_json_atomic
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)


class StageMismatchError(FileExistsError):
    """A recorded stage ran with other settings than the current run."""


@dataclass
class StageRunner:
    """Runs named stages once, recording each result under ``out_dir/stages``."""

    out_dir: Path
    params: dict[str, Any] = field(default_factory=dict)
    resumable_keys: Iterable[str] = ("verbose",)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.stage_dir = ensure_writable_dir(self.out_dir / "stages")
        self.resumable_keys = frozenset(self.resumable_keys)
        self.skipped: list[str] = []
        self.ran: list[str] = []

    def record_path(self, name: str) -> Path:
        return self.stage_dir / f"{name}.json"

    def is_done(self, name: str) -> bool:
        return self.record_path(name).is_file()

    def record(self, name: str) -> dict[str, Any]:
        """The whole record of a finished stage: stage, seconds, params, result."""
        path = self.record_path(name)
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: unreadable stage record ({exc}); delete it to redo") from exc
        if not isinstance(record, dict) or "result" not in record:
            raise ValueError(f"{path}: not a stage record; delete it to redo the stage")
        return record

    def result(self, name: str) -> dict[str, Any]:
        """The recorded result of a finished stage."""
        return self.record(name)["result"]

    def _check_params(self, name: str, saved: dict[str, Any]) -> None:
        current = json.loads(json.dumps(self.params, default=str))
        keys = (set(saved) | set(current)) - self.resumable_keys
        diff = sorted(k for k in keys if saved.get(k) != current.get(k))
        if diff:
            changes = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff)
            raise StageMismatchError(
                f"{self.out_dir}: stage {name!r} was run with other settings ({changes}); "
                "use a new output folder or the original settings"
            )

    def run(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Run stage ``name`` unless it already finished; return its result."""
        if self.is_done(name):
            record = self.record(name)
            self._check_params(name, record.get("params") or {})
            log.info(
                "stage %s: already done, skipping (delete %s to redo)", name, self.record_path(name)
            )
            self.skipped.append(name)
            return record["result"]
        log.info("stage %s: running", name)
        start = time.perf_counter()
        result = fn() or {}
        elapsed = time.perf_counter() - start
        write_json_atomic(
            self.record_path(name),
            {"stage": name, "seconds": round(elapsed, 2), "params": self.params, "result": result},
        )
        log.info("stage %s: done in %.1f s", name, elapsed)
        self.ran.append(name)
        return result

    def seconds(self) -> dict[str, float]:
        """Wall time of every finished stage (as recorded when it ran), in run order."""
        records = [self.record(p.stem) for p in self.stage_dir.glob("*.json")]
        records.sort(key=lambda r: self.record_path(r["stage"]).stat().st_mtime)
        return {r["stage"]: float(r.get("seconds", 0.0)) for r in records}

    def completed(self) -> list[str]:
        return sorted(p.stem for p in self.stage_dir.glob("*.json"))
