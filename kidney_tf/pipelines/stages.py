"""Resumable pipeline stages: a finished stage is recorded on disk and never redone.

Each stage is a plain function returning a JSON-serialisable dict of results. ``StageRunner.run``
writes ``<out>/stages/<name>.json`` atomically after the stage succeeds; on the next run the
recorded result is returned without calling the function again. A stage killed midway leaves no
record, so it simply runs again (stages write their own outputs atomically).

Usage::

    runner = StageRunner("runs/kidney")
    data = runner.run("data", lambda: {"root": str(make_phantoms())})
    runner.run("train_baseline", lambda: train(data["root"]))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidney_tf.utils.io import write_json_atomic
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)


@dataclass
class StageRunner:
    """Runs named stages once, recording each result under ``out_dir/stages``."""

    out_dir: Path
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.stage_dir = self.out_dir / "stages"
        self.stage_dir.mkdir(parents=True, exist_ok=True)

    def record_path(self, name: str) -> Path:
        return self.stage_dir / f"{name}.json"

    def is_done(self, name: str) -> bool:
        return self.record_path(name).is_file()

    def result(self, name: str) -> dict[str, Any]:
        """The recorded result of a finished stage."""
        return json.loads(self.record_path(name).read_text())["result"]

    def run(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Run stage ``name`` unless it already finished; return its result."""
        if self.is_done(name):
            log.info(
                "stage %s: already done, skipping (delete %s to redo)", name, self.record_path(name)
            )
            return self.result(name)
        log.info("stage %s: running", name)
        start = time.perf_counter()
        result = fn() or {}
        elapsed = time.perf_counter() - start
        write_json_atomic(
            self.record_path(name),
            {"stage": name, "seconds": round(elapsed, 2), "params": self.params, "result": result},
        )
        log.info("stage %s: done in %.1f s", name, elapsed)
        return result

    def completed(self) -> list[str]:
        return sorted(p.stem for p in self.stage_dir.glob("*.json"))
