"""Pipelines of runs chained by adapter (DermIQ's warm-up -> GRPO++ -> SFT -> DPO, Clinical-R1's cold start -> CRPO):
one stage's trainer config from a pipeline recipe section, running it (or reusing it when finished), and the model
an evaluation loads from a run. The trainers are those `medrl train` knows (`training.cli.TRAINERS`)."""

from __future__ import annotations

from pathlib import Path

from training.cli import TRAINERS, _load
from training.config import from_dict, merge
from training.errors import ConfigError, MedrlError


def stage_config(raw: dict, stage: str, trainer: str, out: Path, name: str, seed: int, extra: dict | None = None):
    """The `trainer` config of pipeline section `stage`, its run folder OUT/<name>; errors name the section."""
    cls = _load(TRAINERS[trainer][0])
    section = merge(raw[stage], {"run": {"name": name, "output_dir": str(out), "seed": seed}})
    try:
        return from_dict(cls, merge(section, extra or {}))
    except ConfigError as e:
        raise ConfigError(f"{raw['_path']}: {stage}.{e}") from None


def run_stage(cfg) -> Path:
    """Train one stage unless its run already finished (resuming a started one); returns its adapter folder."""
    from training.run import RunDir

    run = RunDir(cfg.run.dir)
    if run.is_finished():
        print(f"medrl: {run.path} already finished; using {run.adapter_dir}")
        return run.adapter_dir
    _load(TRAINERS[cfg.trainer][1])(cfg, resume=run.latest_checkpoint() is not None)
    return run.adapter_dir


def model_config_of(run) -> tuple[object, Path]:
    """The run's model settings (base, quantization, dtype) and the adapter to evaluate."""
    from training.config import ModelConfig

    raw = dict(run.read_config().get("model") or {})
    if not raw:
        raise MedrlError(f"{run.path}: not a run folder (no config.yaml with a model section)")
    adapter = run.find_adapter()
    if adapter is None:
        raise MedrlError(f"{run.path}: no adapter yet (neither adapter/ nor a checkpoint's)")
    raw["adapter"] = None
    return from_dict(ModelConfig, raw, "model"), adapter
