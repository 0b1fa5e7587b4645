"""Reward functions by name: `fn(prompts, completions, **record_fields) -> list[float]`, one per completion.

Shapes: `prompts` and `completions` are lists of N (one entry per completion, a prompt repeated for its G
completions), each record field a list of N too; the reward returns N floats. Domain packages register theirs in
`REWARDS` with `@reward("name")` (`training.registry`: one signature, a duplicate name is an error; the recipe
lists the modules to import in `reward_modules`); a recipe may also name any function as
`package.module:function`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import torch

from training.errors import ConfigError, MedrlError
from training.registry import Registry

RewardFn = Callable[..., list[float]]
REWARDS: Registry[RewardFn] = Registry("reward", ("prompts", "completions"), var_keyword=True)


def reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """`@reward("name")`: register a reward in `REWARDS` (its docstring: what it scores, its range, its source)."""
    return REWARDS.register(name)


def resolve(names: list[str], modules: list[str]) -> dict[str, RewardFn]:
    """Import `modules` (registering their rewards), then look each name up: registered, or `module:function`."""
    for m in modules:
        try:
            importlib.import_module(m)
        except ModuleNotFoundError as e:
            raise ConfigError(f"reward_modules: cannot import '{m}' ({e})") from None
    out = {}
    for name in names:
        if name in REWARDS:
            out[name] = REWARDS.get(name, "rewards")
        elif ":" in name:
            mod, fn = name.split(":", 1)
            try:
                out[name] = getattr(importlib.import_module(mod), fn)
            except (ModuleNotFoundError, AttributeError):
                raise ConfigError(f"rewards: cannot find function '{name}'") from None
        else:
            raise ConfigError(
                f"rewards: unknown reward '{name}' (registered: {', '.join(REWARDS.names()) or 'none'}; "
                "add its module to reward_modules)"
            )
    return out


def score(
    name: str, fn: RewardFn, prompts: list, completions: list[str], fields: dict[str, list]
) -> torch.Tensor:
    """Call one reward and check its answer: one finite float per completion."""
    try:
        values = fn(prompts, completions, **fields)
    except (
        Exception
    ) as e:  # a user's reward code: name it, keep the run's checkpoints, no traceback by default
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
