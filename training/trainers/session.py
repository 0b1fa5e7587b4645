"""A training run in progress: opens (or resumes) a `RunDir`, logs, checkpoints atomically, finishes.

Every trainer goes through it, so SFT, RL and DPO runs have the same layout, resume rules and start log.
"""

from __future__ import annotations

import random
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.atomic import atomic_dir
from training.config import save_config
from training.errors import MedrlError
from training.run.checkpoint import load_checkpoint, save_checkpoint, save_trainable
from training.run.distributed import Dist, setup
from training.run.rundir import RunDir
from training.run.task_card import build_card, write_card
from training.run.tracking import MetricsLogger, NullMetrics

_RANK_KEY = re.compile(r"rank\d+/")  # another rank's trainer tensors in a checkpoint
_STOP = threading.Event()  # set by the first Ctrl-C inside `graceful_interrupt`


class Interrupted(KeyboardInterrupt):
    """The run stopped on Ctrl-C after saving a checkpoint (the message says where)."""


@contextmanager
def graceful_interrupt() -> Iterator[None]:
    """First Ctrl-C: finish the current step, save a checkpoint, stop (`Interrupted`). Second: stop at once.

    Installed around a whole training run by `medrl train`; trainers only see it through `Session`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if _STOP.is_set():
            raise KeyboardInterrupt
        _STOP.set()
        print(
            "\nmedrl: stopping after this step and saving a checkpoint (Ctrl-C again to stop now)",
            file=sys.stderr,
        )

    _STOP.clear()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _STOP.clear()


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Session:
    run: RunDir
    cfg: Any
    metrics: MetricsLogger | NullMetrics
    resume_from: Path | None
    dist: Dist = Dist()
    _stop: bool = False  # the Ctrl-C flag as every rank sees it (reduced in `should_save`)

    @property
    def dir(self) -> Path:
        return self.run.path

    @classmethod
    def open(cls, cfg: Any, resume: bool) -> Session:
        """Create runs/<name>/ (or reopen it with `resume`); refuses to overwrite a run that has checkpoints.

        Under `torchrun` this joins the job first (so the model lands on this rank's device); every rank checks
        the folder alike, only rank 0 writes it.
        """
        dist = setup()
        run = RunDir(cfg.run.dir)
        ckpt = run.latest_checkpoint() if resume else None
        if not resume and run.has_checkpoints():
            raise MedrlError(
                f"{run.path} already holds a run: pass --resume to continue it, or choose another --run.name"
            )
        if resume and ckpt is None and run.adapter_dir.is_dir():
            raise MedrlError(f"{run.path}: nothing to resume (the run finished; its adapter is in adapter/)")
        resume_step = int(ckpt.name.split("-")[1]) if ckpt is not None else -1
        if not dist.is_main:
            return cls(run=run, cfg=cfg, metrics=NullMetrics(), resume_from=ckpt, dist=dist)
        run.path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run.config_path)
        # Rows past the checkpoint we continue from (all rows, when starting over in a folder whose run died
        # before its first checkpoint) are dropped, so metrics.jsonl never holds two histories.
        metrics = MetricsLogger(run, tensorboard=cfg.run.tensorboard, resume_step=resume_step)
        return cls(run=run, cfg=cfg, metrics=metrics, resume_from=ckpt, dist=dist)

    def start(self, policy, data, step: int) -> None:
        """Log what is being trained (once per run) and say how many records were skipped."""
        from training.models.loading import describe

        if not self.dist.is_main:
            return
        check_disk_space(self.run.path, policy.model)
        # How this model is to be asked (the app and the evaluations read it); rewritten on resume, same content.
        write_card(self.run.path, build_card(self.cfg, data.records, len(data.skipped)))
        if step == 0:
            self.metrics.log(
                0,
                {
                    "event": "start",
                    **{k: v for k, v in describe(policy).items() if k != "path"},
                    "records": len(data),
                    "records_skipped": len(data.skipped),
                },
            )
        if data.skipped:
            print(f"medrl: {data.summary()}")

    def restore(self, model, optimizer, scheduler) -> tuple[dict, dict[str, torch.Tensor]]:
        """(trainer state, trainer tensors) of the checkpoint resumed from; ({"step": 0}, {}) when starting."""
        if self.resume_from is None:
            return {"step": 0}, {}
        state, tensors = load_checkpoint(self.resume_from, model, optimizer, scheduler)
        return state, _rank_tensors(tensors, self.dist.rank)

    def checkpoint(
        self,
        step: int,
        model,
        optimizer,
        scheduler,
        state: dict,
        tensors: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Save atomically; after a Ctrl-C, stop here with `Interrupted` (the checkpoint is complete).

        Several ranks: rank 0 writes; each other rank's trainer tensors (its sampling generator) go in under
        `rank<R>/`, so a resumed job continues every rank's stream.
        """
        path = self.run.checkpoint_dir(step)
        if self.dist.enabled and tensors:
            tensors = _merge_rank_tensors(self.dist.gather({k: v.detach().cpu() for k, v in tensors.items()}))
        if self.dist.is_main:
            path = save_checkpoint(
                self.run,
                step,
                model,
                optimizer,
                scheduler,
                state,
                tensors=tensors,
                keep=self.cfg.run.keep_checkpoints,
            )
        self.dist.barrier()
        if self._stop or (not self.dist.enabled and _STOP.is_set()):
            self.metrics.close()
            raise Interrupted(f"stopped at step {step}; checkpoint {path} saved: continue with --resume")
        return path

    def should_save(self, step: int) -> bool:
        every = self.cfg.run.save_every
        self._stop = self.dist.any(_STOP.is_set()) if self.dist.enabled else _STOP.is_set()
        return self._stop or step == self.cfg.run.max_steps or (every > 0 and step % every == 0)

    def save_best(self, policy, record: dict) -> Path:
        """Write the adapter as RUN/best/ (atomically, with best.json = ``record``: step, metric, value, mode); main
        process only (`training.trainers.training_eval`)."""
        import json

        with atomic_dir(self.run.best_dir) as tmp:
            save_trainable(policy.model, tmp)
            (policy.processor if policy.is_vlm else policy.tokenizer).save_pretrained(str(tmp))
            (tmp / "best.json").write_text(json.dumps(record, indent=1) + "\n")
        return self.run.best_dir

    def finish(self, model, policy=None) -> Path:
        """Write the final adapter (atomically) and close the metrics.

        Several ranks: first check the replicas ended identical (the gradient sum keeps them so); a divergence
        is an error rather than a silently averaged or rank-0-only adapter.
        """
        if self.dist.enabled:
            from training.models.loading import trainable_parameters

            diff = self.dist.replica_divergence([p for _, p in trainable_parameters(model)])
            self.metrics.log(
                self.cfg.run.max_steps,
                {"event": "finish", "processes": self.dist.world, "replicas_max_abs_diff": diff},
            )
            if diff > 1e-5:
                self.metrics.close()
                raise MedrlError(
                    f"{self.run.path}: the {self.dist.world} processes' weights diverged (max |diff| "
                    f"{diff:.3g}); the adapter was not written"
                )
        if self.dist.is_main:
            with atomic_dir(self.run.adapter_dir) as tmp:
                save_trainable(model, tmp)
                if policy is not None:
                    (policy.processor if policy.is_vlm else policy.tokenizer).save_pretrained(str(tmp))
        self.metrics.close()
        self.dist.barrier()  # no rank reads the adapter (next stage) before it is published
        return self.run.adapter_dir


def check_disk_space(folder: Path, model) -> None:
    """Refuse to start a run whose first checkpoint cannot fit: a full disk found at step 500 costs 500 steps.

    A checkpoint holds the trainable weights and AdamW's two moments (fp32, about 3x the trainable bytes); while
    the next one is written the previous one still exists, so two must fit, plus the final adapter and a margin.
    """
    import shutil

    from training.models.loading import trainable_parameters

    trainable = sum(p.numel() * 4 for _, p in trainable_parameters(model))
    need = 7 * trainable + 64 * 2**20
    free = shutil.disk_usage(folder).free
    if free < need:
        raise MedrlError(
            f"{folder}: {free / 2**20:,.0f} MB free on this disk, but the run's checkpoints need about "
            f"{need / 2**20:,.0f} MB: free some space or choose another --run.output_dir"
        )


def _merge_rank_tensors(per_rank: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    merged = dict(per_rank[0])
    for r, tensors in enumerate(per_rank[1:], start=1):
        merged.update({f"rank{r}/{k}": v for k, v in tensors.items()})
    return merged


def _rank_tensors(tensors: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """This rank's view of a checkpoint's trainer tensors (its own `rank<R>/` entries over rank 0's)."""
    prefix = f"rank{rank}/"
    own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return {**{k: v for k, v in tensors.items() if not _RANK_KEY.match(k)}, **own}
