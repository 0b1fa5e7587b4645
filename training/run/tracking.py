"""Progress bars and metrics: every run writes `metrics.jsonl` (one JSON object per logged step) and
TensorBoard events beside it, so the app, scripts and TensorBoard read the same numbers."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from training.run.rundir import RunDir

T = TypeVar("T")


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool = True,
    unit: str = "it",
    leave: bool = True,
    initial: int = 0,
) -> tqdm:
    """One progress-bar style for every loop a person waits for; off when `enabled` is false or
    MEDRL_PROGRESS=0 (CI logs)."""
    disable = (not enabled) or os.environ.get("MEDRL_PROGRESS", "1") == "0"
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=disable,
        unit=unit,
        leave=leave,
        initial=initial,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf; keep them visible as strings
    return v


class MetricsLogger:
    """Append-only metrics for one run: `metrics.jsonl` plus TensorBoard scalars.

    On resume the file is truncated to the resumed step, so a crash after the last checkpoint leaves no
    duplicated or orphaned rows.
    """

    def __init__(
        self, run_dir: str | Path | RunDir, tensorboard: bool = True, resume_step: int | None = None
    ):
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.path = self.run.metrics_path
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = resume_step + 1 if resume_step is not None and resume_step >= 0 else None
                self._tb = SummaryWriter(log_dir=str(self.run.tensorboard_dir), purge_step=purge)
            except ImportError:  # tensorboard is a dependency; tolerate a broken install, keep the JSONL
                self._tb = None
        self._t0 = time.time()

    def _truncate_after(self, step: int) -> None:
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                continue
        self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def log(self, step: int, metrics: dict[str, Any], prefix: str = "") -> None:
        row = {"step": step, "time": round(time.time() - self._t0, 3)}
        row.update({f"{prefix}{k}": _jsonable(v) for k, v in metrics.items()})
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NullMetrics:
    """The metrics of a rank other than 0 under `torchrun`: rank 0 logs the reduced values, the others nothing."""

    def log(self, step: int, metrics: dict[str, Any], prefix: str = "") -> None:
        pass

    def close(self) -> None:
        pass


def read_metrics(run_dir: str | Path | RunDir) -> list[dict]:
    """Rows of a run's metrics.jsonl (unreadable lines skipped)."""
    return (run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)).read_metrics()


def iter_rows(rows: list[dict], key: str) -> Iterator[tuple[int, float]]:
    for r in rows:
        if isinstance(r.get(key), (int, float)):
            yield r["step"], float(r[key])
