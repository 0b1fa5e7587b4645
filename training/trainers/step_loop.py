"""The optimizer-step skeleton SFT, DPO and RL share, so a fix to one trainer's loop is a fix to all three.

`StepLoop` owns everything around a step: seeding, reading the records, opening (or resuming) the run, loading
the policy, AdamW and its schedule, restoring a checkpoint (weights, optimizer, scheduler, RNG, data position,
the non-finite counters), the progress bar, the metrics row (metrics.jsonl and TensorBoard), held-out evaluation
during training and the best adapter (`eval:`, `run.keep_best`: `training.trainers.training_eval`), the checkpoint
cadence, a graceful Ctrl-C (through `Session`) and the final adapter. A trainer supplies only its step: how the
step's micro-batches are made and what their loss is (`accumulate` runs the backward passes), calling `update`
once per optimizer update, and the metrics and checkpoint tensors that are its own.

Non-finite updates follow the strictest rule any trainer had (the RL loop's): an update whose loss or gradient
is not finite is skipped (no optimizer step) and counted (`skipped_nonfinite`, the run's total), and more than
`max_nonfinite_in_a_row` in a row stop the run with a one-line error; both counters are checkpointed, so a
resumed run counts on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from training.data.records import DataOrder, read_jsonl
from training.errors import MedrlError
from training.models.loading import load_policy, trainable_parameters
from training.run.threads import describe
from training.run.tracking import progress
from training.trainers.optim import build_optimizer, build_scheduler, clip_and_step
from training.trainers.session import Session, seed_everything
from training.trainers.training_eval import TrainingEval

M = TypeVar("M")


@dataclass
class NonFinite:
    """Updates skipped for a non-finite loss or gradient: the run's total and the current streak."""

    limit: int  # more than this many in a row stop the run (0: the first one does)
    in_a_row: int = 0
    total: int = 0

    def record(self, stepped: bool, where: object, step: int, hint: str) -> None:
        if stepped:
            self.in_a_row = 0
            return
        self.total += 1
        self.in_a_row += 1
        if self.in_a_row > self.limit:
            raise MedrlError(
                f"{where}: {self.in_a_row} policy updates in a row had a non-finite loss or gradient "
                f"(step {step}); lower optim.lr, raise optim.max_grad_norm clipping, or {hint}"
            )

    def state(self) -> dict[str, int]:
        """The counters for `trainer_state.json`, only those that are not 0 (a missing one reads as 0)."""
        counts = {"nonfinite_in_a_row": self.in_a_row, "skipped_nonfinite": self.total}
        return {k: v for k, v in counts.items() if v}


class WeightedMeans:
    """Means of per-micro-batch stats weighted by each micro-batch's share (tokens, pairs), so accumulation logs
    what one big batch would; keys ending in `/max` or `/min` keep the true extremes; `tokens` is not a stat."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.extremes: dict[str, float] = {}
        self.weight = 0.0

    def add(self, stats: dict[str, float], weight: float) -> None:
        self.weight += weight
        for k, v in stats.items():
            if k == "tokens":
                continue
            if k.endswith("/max"):
                self.extremes[k] = max(self.extremes.get(k, v), v)
            elif k.endswith("/min"):
                self.extremes[k] = min(self.extremes.get(k, v), v)
            else:
                self.sums[k] = self.sums.get(k, 0.0) + v * weight

    def result(self) -> dict[str, float]:
        n = max(self.weight, 1.0)
        return {**{k: v / n for k, v in self.sums.items()}, **self.extremes}


@dataclass
class StepResult:
    """What one step of a trainer reports to the loop."""

    loss: float  # the step's loss over every rank (the last update's, when a step makes several)
    grad_norm: float  # before clipping, as `update` returned it
    tokens: float  # tokens trained on, for tokens_per_s
    metrics: dict[str, Any] = field(default_factory=dict)  # the trainer's own, logged after the shared ones
    per_rank: bool = False  # metrics are this rank's share: reduced over ranks (`Dist.reduce_metrics`)
    generated: float = 0.0  # tokens this rank sampled in the step (RL rollouts), for a run's token budget


def accumulate(
    micro: Iterable[M], micro_loss: Callable[[M], tuple[torch.Tensor, dict[str, float], float]]
) -> tuple[float, dict[str, float]]:
    """Gradient accumulation: `micro_loss(m)` -> (loss, stats, weight) per micro-batch, each loss already divided
    by the whole step's normalizer, so the backward passes sum to the gradient of one big batch.

    Returns (the summed loss of this rank, the weighted means of the stats).
    """
    total, means = 0.0, WeightedMeans()
    for m in micro:
        loss, stats, weight = micro_loss(m)
        loss.backward()
        total += float(loss.detach())
        means.add(stats, weight)
    return total, means.result()


class StepLoop:
    """One training run on the shared skeleton: construct it (the run opened and resumed), then `run(step_fn)`."""

    def __init__(self, cfg: Any, kind: str, resume: bool, updates_per_step: int = 1):
        """Seed, read `cfg.data.train` as `kind` records, open the run folder (or reopen it with `resume`), load
        the policy, build AdamW and a schedule over `max_steps * updates_per_step` updates, and continue from the
        checkpoint being resumed: weights, optimizer, scheduler, RNG, data position, non-finite counters.

        The checkpoint's trainer tensors (a sampling generator, the reference's held adapter) are this rank's
        `resume_tensors` ({} when starting), for the trainer to restore what it built.
        """
        self.cfg = cfg
        self.kind = kind
        seed_everything(cfg.run.seed)
        self.data = read_jsonl(cfg.data.train, kind, limit=cfg.data.max_records)
        self.session = Session.open(cfg, resume)
        self.dist = self.session.dist
        if self.dist.is_main and cfg.run.progress:  # the threads a run's speed depends on, and how they share
            print(describe(), file=sys.stderr, flush=True)  # stdout stays a command's result (--json)
        self.policy = load_policy(cfg.model)
        self.model = self.policy.model
        self.params = [p for _, p in trainable_parameters(self.model)]
        self.optimizer = build_optimizer(self.params, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.run.max_steps * updates_per_step, cfg.optim)
        state, self.resume_tensors = self.session.restore(self.model, self.optimizer, self.scheduler)
        self.step = int(state["step"])
        self.order = DataOrder(
            len(self.data), cfg.run.seed, cfg.data.shuffle, pos=int(state.get("data_pos", 0))
        )
        self.evaluation = TrainingEval(cfg, self.session, self.policy)
        self.generated = int(state.get("tokens_generated", 0))  # over every rank, since the run started
        self.nonfinite = NonFinite(
            cfg.max_nonfinite_in_a_row,
            in_a_row=int(state.get("nonfinite_in_a_row", 0)),
            total=int(state.get("skipped_nonfinite", 0)),
        )

    @property
    def resume_from(self) -> Path | None:
        """The checkpoint folder resumed from (None when starting): where a restore error points."""
        return self.session.resume_from

    def micro_batches(self, batch_size: int, grad_accum: int) -> list[list[dict]]:
        """This rank's micro-batches of records for one step: every rank draws the whole step (same order, same
        position) and keeps its share, so `batch_size` and `grad_accum` are per rank."""
        step_idx = [self.order.take(batch_size) for _ in range(grad_accum * self.dist.world)]
        return [[self.data.records[i] for i in idx] for idx in self.dist.shard(step_idx)]

    def update(self, loss: float, hint: str = "check the data") -> float:
        """One optimizer update after the backward passes: sum the gradients over ranks, clip, step unless the
        loss (`loss`, already summed over ranks) or the gradient is not finite, advance the schedule, count a
        skipped update (`hint`: what else to check when they stop the run). Returns the pre-clip gradient norm."""
        self.dist.sum_grads(self.params)
        grad_norm, stepped = clip_and_step(self.params, self.optimizer, self.cfg.optim.max_grad_norm, loss)
        self.scheduler.step()
        self.nonfinite.record(stepped, self.session.dir, self.step + 1, hint)
        return grad_norm

    def run(
        self,
        step_fn: Callable[[], StepResult],
        postfix: dict[str, str],
        tensors: Callable[[], dict[str, torch.Tensor]] | None = None,
        token_budget: int | None = None,
    ) -> dict:
        """Train to `cfg.run.max_steps` and write the final adapter; returns the last metrics row.

        `step_fn` runs one step (its micro-batches, backward passes and `update` calls); `postfix` maps progress
        bar labels to metric keys; `tensors` gives the trainer's own checkpoint tensors (generator, reference).
        `token_budget` ends the run after the step in which the tokens sampled since the start (every rank's
        `StepResult.generated`, logged as `tokens_generated_total`) reach it: samplers compared at equal cost.
        """
        cfg, dist, session = self.cfg, self.dist, self.session
        dist.broadcast_params(self.params)
        session.start(self.policy, self.data, self.step)
        self.model.train()
        last: dict = {}
        with progress(
            total=cfg.run.max_steps,
            initial=self.step,
            desc=f"{self.kind} {cfg.run.name}",
            enabled=cfg.run.progress and dist.is_main,
            unit="step",
        ) as bar:
            while self.step < cfg.run.max_steps and not self._spent(token_budget):
                t0 = time.time()
                out = step_fn()
                self.step += 1
                dt = time.time() - t0
                self.generated += int(dist.sum([out.generated])[0] if out.per_rank else out.generated)
                last = {
                    "loss": out.loss,
                    "grad_norm": out.grad_norm,
                    "lr": self.scheduler.get_last_lr()[0],
                    "tokens_per_s": out.tokens / max(dt, 1e-9),
                    "step_time_s": dt,
                    "skipped_nonfinite": self.nonfinite.total,
                    "epoch": self.order.pos / len(self.data),
                    **out.metrics,
                }
                if out.per_rank:
                    last = dist.reduce_metrics(last)
                if token_budget is not None or out.generated:
                    last["tokens_generated_total"] = float(self.generated)
                done = self.step == cfg.run.max_steps or self._spent(token_budget)
                evaluated = self.evaluation.after_step(self.step, done)  # held-out metrics, beside the reward
                last.update(evaluated)
                if evaluated or self.step % cfg.run.log_every == 0 or done:
                    session.metrics.log(self.step, last)
                bar.update(1)
                bar.set_postfix({label: f"{last[key]:.3f}" for label, key in postfix.items()})
                if session.should_save(self.step) or done:
                    session.checkpoint(
                        self.step,
                        self.model,
                        self.optimizer,
                        self.scheduler,
                        {
                            "data_pos": self.order.pos,
                            # sampled tokens (RL), for a budget that survives a resume
                            **({"tokens_generated": self.generated} if self.generated else {}),
                            **self.nonfinite.state(),
                        },
                        tensors=tensors() if tensors is not None else None,
                    )
        if self._spent(token_budget) and self.step < cfg.run.max_steps and dist.is_main:
            print(
                f"medrl: {cfg.run.name}: token budget spent ({self.generated} tokens sampled >= {token_budget}) "
                f"after {self.step} of {cfg.run.max_steps} steps",
                file=sys.stderr,  # a status line: stdout stays the command's result
                flush=True,
            )
        session.finish(self.model, self.policy)
        return last

    def _spent(self, token_budget: int | None) -> bool:
        return token_budget is not None and self.generated >= token_budget
