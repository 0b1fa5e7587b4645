"""`RunDir`: the one owner of a run folder's layout (DESIGN.md "Runs"); trainers, checkpointing, tracking,
export and the app all go through it. Imports no torch, so readers (the app, `medrl export`) stay light.

```
runs/<name>/config.yaml          resolved config
runs/<name>/task.json            the task card: how the model is asked (prompt, answer length, image side)
runs/<name>/metrics.jsonl        one JSON row per logged step
runs/<name>/tensorboard/         TensorBoard events
runs/<name>/checkpoints/step-N/  everything a resume needs (written atomically)
runs/<name>/adapter/             the final adapter
runs/<name>/best/                the adapter of the best evaluation so far (`run.keep_best`), best.json says which
runs/<name>/eval/                evaluations (step<N>.json: the evaluations during training, `eval.every`)
runs/<name>/trees/               Tree-GRPO trees per step
runs/<name>/rollouts/            RL: a sample of each step's completions with their reward parts (`run.log_rollouts`)
```
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

STEP_RE = re.compile(r"^step-(\d+)$")
CHECKPOINT_MARKER = "trainer_state.json"  # written last inside the (atomic) folder
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class RunDir:
    """Paths and read-only queries of one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def best_dir(self) -> Path:
        return self.path / "best"

    def read_best(self) -> dict | None:
        """best/best.json ({step, metric, value, mode}) when a best adapter was kept, else None."""
        path = self.best_dir / "best.json"
        return (
            json.loads(path.read_text())
            if (self.best_dir / ADAPTER_WEIGHTS).is_file() and path.is_file()
            else None
        )

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def trees_dir(self) -> Path:
        return self.path / "trees"

    @property
    def rollouts_dir(self) -> Path:
        return self.path / "rollouts"

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{step}"

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Published checkpoints, oldest first (temporary folders of a write in progress are not listed)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [
            (int(m.group(1)), p)
            for p in self.checkpoints_dir.iterdir()
            if p.is_dir() and (m := STEP_RE.match(p.name)) and (p / CHECKPOINT_MARKER).is_file()
        ]
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1][1] if found else None

    def has_checkpoints(self) -> bool:
        return self.checkpoints_dir.is_dir() and any(self.checkpoints_dir.iterdir())

    def is_finished(self) -> bool:
        return (self.adapter_dir / ADAPTER_WEIGHTS).is_file()

    def find_adapter(self) -> Path | None:
        """The final adapter, else the latest checkpoint's, else None."""
        if self.is_finished():
            return self.adapter_dir
        ckpt = self.latest_checkpoint()
        if ckpt is not None and (ckpt / "adapter" / ADAPTER_WEIGHTS).is_file():
            return ckpt / "adapter"
        return None

    def read_config(self) -> dict[str, Any]:
        import yaml

        return yaml.safe_load(self.config_path.read_text()) or {} if self.config_path.is_file() else {}

    def read_metrics(self) -> list[dict]:
        """Rows of metrics.jsonl (unreadable lines skipped)."""
        return read_json_lines(self.metrics_path)


def read_json_lines(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file a run writes as it goes (metrics, rollouts): a line being written or
    broken is skipped, not an error; a missing file is no rows."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
