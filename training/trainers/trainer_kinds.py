"""The trainers a recipe's `trainer:` key names: each name -> its config class and its train function.

Both are named by `module:attribute` strings and imported on first use, so the commands that only register
themselves (`medrl --help`) import no torch. `medrl train` (`training.cli`) and every pipeline stage
(`training.trainers.pipeline`) look trainers up here, so a recipe and a stage mean the same trainer by the same name.
"""

from __future__ import annotations

import importlib

from training.errors import ConfigError

# trainer name -> (config class, train function); the function takes (config, resume=bool)
TRAINERS = {
    "sft": ("training.trainers.sft_config:SFTConfig", "training.trainers.sft_trainer:train_sft"),
    "rl": ("training.trainers.rl_config:RLConfig", "training.trainers.rl_trainer:train_rl"),
    "dpo": ("training.trainers.dpo_config:DPOConfig", "training.trainers.dpo_trainer:train_dpo"),
}


def _resolve(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def check_trainer(name: str, where: str) -> str:
    """``name`` when it is a known trainer, else a one-line error naming ``where`` (the recipe, the section)."""
    if name not in TRAINERS:
        raise ConfigError(f"{where}: trainer: expected one of {', '.join(TRAINERS)}, got {name!r}")
    return name


def config_class(name: str) -> type:
    """The config dataclass of trainer ``name`` (SFTConfig, RLConfig, DPOConfig)."""
    return _resolve(TRAINERS[name][0])


def train_function(name: str):
    """The train function of trainer ``name``: ``fn(cfg, resume=False) -> last metrics``."""
    return _resolve(TRAINERS[name][1])
