"""A training run in progress: opens (or resumes) a `RunDir`, logs, checkpoints atomically, finishes.

Every trainer goes through it, so SFT, RL and DPO runs have the same layout, resume rules and start log.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import atomic_dir, load_checkpoint, save_checkpoint, save_trainable
from training.config import save_config
from training.errors import MedrlError
from training.run import RunDir
from training.tracking import MetricsLogger

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
        print("\nmedrl: stopping after this step and saving a checkpoint (Ctrl-C again to stop now)", file=sys.stderr)

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
    metrics: MetricsLogger
    resume_from: Path | None

    @property
    def dir(self) -> Path:
        return self.run.path

    @classmethod
    def open(cls, cfg: Any, resume: bool) -> Session:
        """Create runs/<name>/ (or reopen it with `resume`); refuses to overwrite a run that has checkpoints."""
        run = RunDir(cfg.run.dir)
        ckpt = run.latest_checkpoint() if resume else None
        if not resume and run.has_checkpoints():
            raise MedrlError(f"{run.path} already holds a run: pass --resume to continue it, or choose another "
                             "--run.name")
        if resume and ckpt is None and run.adapter_dir.is_dir():
            raise MedrlError(f"{run.path}: nothing to resume (the run finished; its adapter is in adapter/)")
        run.path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run.config_path)
        # Rows past the checkpoint we continue from (all rows, when starting over in a folder whose run died
        # before its first checkpoint) are dropped, so metrics.jsonl never holds two histories.
        resume_step = int(ckpt.name.split("-")[1]) if ckpt is not None else -1
        metrics = MetricsLogger(run, tensorboard=cfg.run.tensorboard, resume_step=resume_step)
        return cls(run=run, cfg=cfg, metrics=metrics, resume_from=ckpt)

    def start(self, policy, data, step: int) -> None:
        """Log what is being trained (once per run) and say how many records were skipped."""
        from training.models import describe

        if step == 0:
            self.metrics.log(0, {"event": "start", **{k: v for k, v in describe(policy).items() if k != "path"},
                                 "records": len(data), "records_skipped": len(data.skipped)})
        if data.skipped:
            print(f"medrl: {data.summary()}")

    def restore(self, model, optimizer, scheduler) -> tuple[dict, dict[str, torch.Tensor]]:
        """(trainer state, trainer tensors) of the checkpoint resumed from; ({"step": 0}, {}) when starting."""
        if self.resume_from is None:
            return {"step": 0}, {}
        return load_checkpoint(self.resume_from, model, optimizer, scheduler)

    def checkpoint(self, step: int, model, optimizer, scheduler, state: dict,
                   tensors: dict[str, torch.Tensor] | None = None) -> Path:
        """Save atomically; after a Ctrl-C, stop here with `Interrupted` (the checkpoint is complete)."""
        path = save_checkpoint(self.run, step, model, optimizer, scheduler, state, tensors=tensors,
                               keep=self.cfg.run.keep_checkpoints)
        if _STOP.is_set():
            self.metrics.close()
            raise Interrupted(f"stopped at step {step}; checkpoint {path} saved: continue with --resume")
        return path

    def should_save(self, step: int) -> bool:
        every = self.cfg.run.save_every
        return _STOP.is_set() or step == self.cfg.run.max_steps or (every > 0 and step % every == 0)

    def finish(self, model, policy=None) -> Path:
        """Write the final adapter (atomically) and close the metrics."""
        with atomic_dir(self.run.adapter_dir) as tmp:
            save_trainable(model, tmp)
            if policy is not None:
                (policy.processor if policy.is_vlm else policy.tokenizer).save_pretrained(str(tmp))
        self.metrics.close()
        return self.run.adapter_dir
