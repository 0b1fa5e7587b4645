"""One run folder (DESIGN.md "Runs"): resolved config, metrics, checkpoints, final adapter; shared by trainers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_trainable
from training.config import save_config
from training.errors import MedrlError
from training.tracking import MetricsLogger

DISCLAIMER = ("For research use only. Not a medical device; outputs are not medical advice and must not be "
              "used for diagnosis or treatment decisions.")


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Run:
    dir: Path
    cfg: Any
    metrics: MetricsLogger
    resume_from: Path | None

    @classmethod
    def open(cls, cfg: Any, resume: bool) -> Run:
        """Create runs/<name>/ (or reopen it with `resume`); refuses to overwrite a run that has checkpoints."""
        run_dir = cfg.run.dir
        ckpt = latest_checkpoint(run_dir) if resume else None
        if not resume and (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
            raise MedrlError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another "
                             "--run.name")
        if resume and ckpt is None and (run_dir / "adapter").is_dir():
            raise MedrlError(f"{run_dir}: nothing to resume (the run finished; its adapter is in adapter/)")
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        # Rows past the checkpoint we continue from (all rows, when starting over in a folder whose run died
        # before its first checkpoint) are dropped, so metrics.jsonl never holds two histories.
        resume_step = int(ckpt.name.split("-")[1]) if ckpt is not None else -1
        metrics = MetricsLogger(run_dir, tensorboard=cfg.run.tensorboard, resume_step=resume_step)
        return cls(dir=run_dir, cfg=cfg, metrics=metrics, resume_from=ckpt)

    def start(self, policy, data, step: int) -> None:
        """Log what is being trained (once per run) and say how many records were skipped."""
        from training.models import describe

        if step == 0:
            self.metrics.log(0, {"event": "start", **{k: v for k, v in describe(policy).items() if k != "path"},
                                 "records": len(data), "records_skipped": len(data.skipped)})
        if data.skipped:
            print(f"medrl: {data.summary()}")

    def restore(self, model, optimizer, scheduler) -> dict:
        if self.resume_from is None:
            return {"step": 0}
        return load_checkpoint(self.resume_from, model, optimizer, scheduler)

    def checkpoint(self, step: int, model, optimizer, scheduler, state: dict) -> Path:
        return save_checkpoint(self.dir, step, model, optimizer, scheduler, state, keep=self.cfg.run.keep_checkpoints)

    def should_save(self, step: int) -> bool:
        every = self.cfg.run.save_every
        return step == self.cfg.run.max_steps or (every > 0 and step % every == 0)

    def finish(self, model, policy=None) -> Path:
        """Write the final adapter (atomically) and close the metrics."""
        from training.checkpoint import atomic_dir

        with atomic_dir(self.dir / "adapter") as tmp:
            save_trainable(model, tmp)
            if policy is not None:
                (policy.processor if policy.is_vlm else policy.tokenizer).save_pretrained(str(tmp))
        self.metrics.close()
        return self.dir / "adapter"
