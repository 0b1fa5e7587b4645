"""Evaluating a run: records -> responses -> per-record rows -> metrics, written atomically under RUN/eval/.

`Evaluation` is one run evaluated on one RL data file. It does what every evaluation does the same way: open the
run (its model settings, its adapter, its task card), read the records, choose the answer length (the command's,
else the task card's, else the run's rollout length, else the domain's default), load the policy once and free it
before scoring, time the whole, and write `<tag>.json` (run, adapter, data, answer length, the domain's metrics,
seconds) and the per-record CSV. A domain's subclass supplies only its own part: how each record is asked (`ask`:
the run's task card over the record), what is read from the model (`respond`), and how responses become rows and
metrics (`score`); it may write more files (`write`). A domain registers its subclass in `EVALUATORS` by name, so
a recipe's `eval:` section (`training.trainers.trainer_config.EvalConfig`) evaluates the live policy during
training with the same code (``policy=``: no adapter is loaded, the run need not have one yet). The helpers below
format and write the tables the evaluations and ablations print.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from training.atomic import atomic_write_text
from training.errors import MedrlError
from training.registry import Registry

# A domain's `Evaluation` subclass by name, for `eval.evaluator`; constructed with these parameters (and policy=).
EVALUATORS: Registry[Any] = Registry("evaluator", ("run_path", "data", "limit", "max_new_tokens", "tag"))


def fmt(value) -> str:
    """A measure in a table: three decimals, '-' when there is none."""
    return "-" if value is None else f"{value:.3f}"


def write_json(path: Path, obj: Any) -> None:
    """Indented JSON, replaced in one rename (a reader never sees half a file)."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> None:
    """Rows as CSV with a header (default columns: the first row's keys), replaced in one rename."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields or list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_eval(
    folder: Path, tag: str, metrics: dict, rows: list[dict], predictions: str | None = None
) -> None:
    """RUN/eval/<tag>.json and the per-record CSV (``predictions``, default ``<tag>_predictions.csv``)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{tag}.json", metrics)
    write_csv(folder / (predictions or f"{tag}_predictions.csv"), rows)


def metrics_lines(m: dict, noun: str, fields: tuple[str, ...], width: int) -> list[str]:
    """The head of an evaluation's table: what was asked, then one line per field."""
    lines = [f"{m['n']} {noun} from {m['data']} (greedy, max_new_tokens {m['max_new_tokens']})"]
    return lines + [f"{k:<{width}}{fmt(m.get(k))}" for k in fields]


def model_config_of(run) -> tuple[object, Path]:
    """The run's model settings (base, quantization, dtype) and the adapter to evaluate (final, else the latest
    checkpoint's)."""
    from training.config import ModelConfig, from_dict

    raw = dict(run.read_config().get("model") or {})
    if not raw:
        raise MedrlError(f"{run.path}: not a run folder (no config.yaml with a model section)")
    adapter = run.find_adapter()
    if adapter is None:
        raise MedrlError(f"{run.path}: no adapter yet (neither adapter/ nor a checkpoint's)")
    raw["adapter"] = None
    return from_dict(ModelConfig, raw, "model"), adapter


class Evaluation:
    """One run evaluated on one data file; a domain subclasses it with `ask`, `respond` and `score`, and registers
    it in `EVALUATORS` (``@EVALUATORS.register("name")``)."""

    # the answer length when the run has neither a task card nor a rollout length
    default_max_new_tokens = 160

    def __init__(
        self,
        run_path: str | Path,
        data: str | Path,
        limit: int | None = None,
        max_new_tokens: int | None = None,
        tag: str = "metrics",
        policy: Any = None,
    ):
        from training.data.records import read_jsonl
        from training.run.rundir import RunDir
        from training.run.task_card import read_card

        self.run = RunDir(run_path)
        self.policy = policy  # a live policy (evaluation during training), else the run's adapter is loaded
        self.model_cfg, self.adapter = (
            (None, "(training)") if policy is not None else model_config_of(self.run)
        )
        self.data = data
        self.records = read_jsonl(
            data, "rl", limit=limit
        ).records  # never empty: that is an error naming the file
        self.card = read_card(self.run.path)  # how the run was trained to be asked (None: an older run)
        self.tag = tag
        self.max_new_tokens = max_new_tokens or self.answer_length()

    def answer_length(self) -> int:
        """The task card's answer length; with no card, the run's rollout length; else the domain's default."""
        if self.card:
            return int(self.card.get("max_new_tokens") or self.default_max_new_tokens)
        rollout = self.run.read_config().get("rollout") or {}
        return int(rollout.get("max_new_tokens") or self.default_max_new_tokens)

    def ask(self) -> list[dict]:
        """The records as the model is asked them (default: as they are)."""
        return self.records

    def respond(self, policy, asked: list[dict]) -> Any:
        """Everything read from the model for the asked records (texts, and whatever else the scores need)."""
        raise NotImplementedError

    def score(self, asked: list[dict], responses: Any) -> tuple[list[dict], dict]:
        """(one row per record for the CSV, the metrics) from the responses."""
        raise NotImplementedError

    def write(self, metrics: dict, rows: list[dict], responses: Any) -> None:
        """The files under RUN/eval/ (default: `<tag>.json` and `<tag>_predictions.csv`)."""
        write_eval(self.run.eval_dir, self.tag, metrics, rows)

    def __call__(self) -> dict:
        """Ask, respond, score, write; returns the metrics."""
        from training.models.loading import load_policy

        asked = self.ask()
        t0 = time.time()
        policy = self.policy or load_policy(self.model_cfg, adapter=self.adapter, trainable=False)
        responses = self.respond(policy, asked)
        del policy
        rows, summary = self.score(asked, responses)
        metrics = {
            "run": str(self.run.path),
            "adapter": str(self.adapter),
            "data": str(self.data),
            "max_new_tokens": self.max_new_tokens,
            **summary,
            "seconds": round(time.time() - t0, 1),
        }
        self.write(metrics, rows, responses)
        return metrics
