"""Reward functions by name: `fn(prompts, completions, **record_fields) -> list[float]`, one per completion.

Domain packages register theirs with `@reward("name")` (the recipe lists the modules to import in
`reward_modules`); a recipe may also name any function as `package.module:function`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import torch

from training.errors import ConfigError, MedrlError

RewardFn = Callable[..., list[float]]
_REGISTRY: dict[str, RewardFn] = {}


def reward(name: str) -> Callable[[RewardFn], RewardFn]:
    def deco(fn: RewardFn) -> RewardFn:
        _REGISTRY[name] = fn
        return fn

    return deco


def resolve(names: list[str], modules: list[str]) -> dict[str, RewardFn]:
    for m in modules:
        try:
            importlib.import_module(m)
        except ModuleNotFoundError as e:
            raise ConfigError(f"reward_modules: cannot import '{m}' ({e})") from None
    out = {}
    for name in names:
        if name in _REGISTRY:
            out[name] = _REGISTRY[name]
        elif ":" in name:
            mod, fn = name.split(":", 1)
            try:
                out[name] = getattr(importlib.import_module(mod), fn)
            except (ModuleNotFoundError, AttributeError):
                raise ConfigError(f"rewards: cannot find function '{name}'") from None
        else:
            raise ConfigError(f"rewards: unknown reward '{name}' (registered: {', '.join(sorted(_REGISTRY)) or 'none'}; "
                              "add its module to reward_modules)")
    return out


def score(name: str, fn: RewardFn, prompts: list, completions: list[str], fields: dict[str, list]) -> torch.Tensor:
    """Call one reward and check its answer: one finite float per completion."""
    try:
        values = fn(prompts, completions, **fields)
    except Exception as e:  # a user's reward code: name it, keep the run's checkpoints, no traceback by default
        raise MedrlError(f"reward '{name}' raised {type(e).__name__}: {e}") from e
    if len(values) != len(completions):
        raise MedrlError(f"reward '{name}' returned {len(values)} values for {len(completions)} completions")
    out = []
    for v in values:
        v = float(v) if v is not None else math.nan
        if not math.isfinite(v):
            raise MedrlError(f"reward '{name}' returned a non-finite value ({v})")
        out.append(v)
    return torch.tensor(out, dtype=torch.float32)
