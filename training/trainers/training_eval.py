"""Held-out evaluation during training (`eval:`) and the best adapter kept by it (`run.keep_best`).

A rising training reward says nothing about held-out accuracy: a policy can learn the reward's format while its
answers get worse ("training reward saturated at 1.0 while task accuracy collapsed" is a common TRL report). So
every `eval.every` steps, and after the last, the domain's own evaluator (`EVALUATORS`: the code its `eval` command
runs) answers the held-out records with the live policy, its metrics are logged as `eval/<metric>` in the same
metrics.jsonl row as the step's reward, its files go to RUN/eval/step<N>.* (so each logged figure can be recomputed
from the predictions written beside it), and with `run.keep_best` the adapter of the best evaluation so far is
written atomically to RUN/best/ with best.json (step, metric, value). A resumed run reads best.json back, so the
best of the whole run is kept. Only the main process evaluates; the others wait at a barrier.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

from training.errors import ConfigError, MedrlError
from training.trainers.evaluation import EVALUATORS


class TrainingEval:
    """The `eval:` section of one run, asked after every step whether to evaluate (`after_step`)."""

    def __init__(self, cfg: Any, session: Any, policy: Any):
        self.cfg, self.session, self.policy = cfg, session, policy
        self.every = cfg.eval.every
        if not self.every:
            return
        for module in cfg.eval.modules:
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise ConfigError(f"eval.modules: cannot import {module!r} ({e})") from None
        self.evaluator = EVALUATORS.get(cfg.eval.evaluator, "eval.evaluator")
        best = session.run.read_best() if cfg.run.keep_best else None
        self.best = None if best is None else float(best["value"])

    def due(self, step: int, last: bool = False) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == self.cfg.run.max_steps or last)

    def after_step(self, step: int, last: bool = False) -> dict[str, float]:
        """{eval/<metric>: value} when `step` is an evaluation step or the run's ``last`` (main process), else {}."""
        if not self.due(step, last):
            return {}
        out: dict[str, float] = {}
        if self.session.dist.is_main:
            metrics = self._evaluate(step)
            out = {
                f"eval/{k}": float(v)
                for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seconds"
            }
            self._keep_best(step, metrics)
        self.session.dist.barrier()
        return out

    def _evaluate(self, step: int) -> dict:
        e = self.cfg.eval
        model = self.policy.model
        was_training = model.training
        model.eval()
        try:
            return self.evaluator(
                self.session.run.path,
                e.data,
                e.limit,
                e.max_new_tokens,
                f"step{step:05d}",
                policy=self.policy,
            )()
        finally:
            model.train(was_training)

    def _keep_best(self, step: int, metrics: dict) -> None:
        name, mode = self.cfg.run.keep_best, self.cfg.run.keep_best_mode
        if not name:
            return
        value = metrics.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            numeric = sorted(
                k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            )
            raise MedrlError(
                f"run.keep_best: the evaluation has no numeric metric {name!r} (it has {numeric})"
            )
        if math.isnan(value):
            return
        better = self.best is None or (value > self.best if mode == "max" else value < self.best)
        if better:
            self.best = float(value)
            self.session.save_best(
                self.policy, {"step": step, "metric": name, "value": float(value), "mode": mode}
            )
