"""Advantage estimators: per-completion rewards in, per-completion advantages out.

Layout contract shared by every function here: N = num_groups * G completions, stored group by group
(all G completions of prompt 0, then of prompt 1, ...), passed either as (num_groups, G) or as a flat
(N,) tensor with ``group_size``. Advantages always come back flat, (N,), with a dict of float stats.

Std convention: the **population** std (``unbiased=False``) within a group. TRL's GRPO uses
``torch.std`` (unbiased), which is larger by sqrt(G / (G - 1)) -- 22% at G=3 -- so our advantages are
larger than TRL's by that factor. We pick the population std because a z-scored group then has unit
RMS whatever G is (the loss scale does not drift with the group size), and a two-valued group split
half/half gets +1/-1 (up to eps), the same magnitude as the GRPO++ binary fallback.

Estimators (``compute_advantages`` is the one entry point the RL loop calls):
- ``grpo``: group z-score, ``scale`` in {group, batch, none} (``none`` is Dr. GRPO: centre only).
- ``grpo++``: as ``grpo``, but a group whose signal has no spread (std < eps) gets a binary advantage,
  +1 for each correct completion and -1 for each wrong one, instead of all zeros.
- several named rewards (CRPO) combine with ``aggregation``: ``sum_then_normalize`` or
  ``normalize_then_sum``; both work with either estimator.
A tree estimator (Tree-GRPO: inter-tree + intra-tree z-scores) would be another ``Normalizer`` (see
below) that also takes tree ids; the combination and fallback steps would not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor

from training.errors import ConfigError

Scale = Literal["group", "batch", "none"]
Estimator = Literal["grpo", "grpo++"]
Aggregation = Literal["sum_then_normalize", "normalize_then_sum"]
SCALES: tuple[str, ...] = ("group", "batch", "none")
ESTIMATORS: tuple[str, ...] = ("grpo", "grpo++")
AGGREGATIONS: tuple[str, ...] = ("sum_then_normalize", "normalize_then_sum")
DEFAULT_EPS = 1e-4

# (scores (N,), group_size, scale, eps) -> advantages (N,). The group z-score is the only one today;
# Tree-GRPO's would add per-completion tree ids and sum an inter-tree and an intra-tree z-score.
Normalizer = Callable[[Tensor, int, str, float], Tensor]


def as_groups(rewards: Tensor, group_size: int | None = None) -> Tensor:
    """Return rewards as float (num_groups, G): the one place the layout is checked."""
    if rewards.dim() == 2:
        if group_size is not None and rewards.shape[1] != group_size:
            raise ValueError(f"rewards have groups of {rewards.shape[1]}, but group_size is {group_size}")
        grouped = rewards
    elif rewards.dim() == 1:
        if group_size is None:
            raise ValueError("flat (N,) rewards need group_size")
        if group_size < 1 or rewards.numel() % group_size:
            raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
        grouped = rewards.view(-1, group_size)
    else:
        raise ValueError(f"rewards must be (N,) or (num_groups, G), got shape {tuple(rewards.shape)}")
    if grouped.numel() == 0:
        raise ValueError("no rewards")
    if not grouped.is_floating_point():
        grouped = grouped.float()
    if torch.isnan(grouped).any():  # one NaN would silently poison its group's mean and std
        raise ValueError("rewards contain NaN (a reward function returned no score?)")
    return grouped


def _check_options(scale: str, eps: float) -> None:
    if scale not in SCALES:
        raise ConfigError(f"advantages.scale: expected one of {list(SCALES)}, got {scale!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ConfigError(f"advantages.eps: expected a float > 0, got {eps!r}")


def group_zscore(
    rewards: Tensor, group_size: int | None = None, *, scale: Scale = "group", eps: float = DEFAULT_EPS
) -> tuple[Tensor, dict[str, float]]:
    """GRPO's baseline: subtract the group mean, then divide by a std chosen by ``scale``.

    group: (r - mean_g) / (std_g + eps); batch: (r - mean_g) / (std_all + eps), which keeps easy and
    hard prompts on one scale; none: r - mean_g (Dr. GRPO, no per-prompt difficulty weighting).
    Stds are population stds (see the module docstring).
    """
    _check_options(scale, eps)
    grouped = as_groups(rewards, group_size)
    advantages = _zscore(grouped, scale, eps).reshape(-1)
    stats = {**_reward_stats(grouped.reshape(-1)), **_advantage_stats(advantages)}
    stats["frac_zero_std_groups"] = zero_std_groups(grouped, eps=eps).float().mean().item()
    return advantages, stats


def _zscore(grouped: Tensor, scale: str, eps: float) -> Tensor:
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "group":
        return centered / (grouped.std(dim=1, unbiased=False, keepdim=True) + eps)
    if scale == "batch":
        return centered / (grouped.std(unbiased=False) + eps)
    return centered


def group_normalizer(scores: Tensor, group_size: int, scale: str, eps: float) -> Tensor:
    """The ``Normalizer`` for flat groups of G: the group z-score as a flat (N,) tensor."""
    return _zscore(as_groups(scores, group_size), scale, eps).reshape(-1)


def zero_std_groups(rewards: Tensor, group_size: int | None = None, *, eps: float = DEFAULT_EPS) -> Tensor:
    """Bool (num_groups,): groups whose rewards have no spread (population std < eps), i.e. no signal."""
    return as_groups(rewards, group_size).std(dim=1, unbiased=False) < eps


def binary_fallback(
    advantages: Tensor, correct: Tensor, flat: Tensor, group_size: int
) -> tuple[Tensor, dict[str, float]]:
    """GRPO++: in ``flat`` groups replace the (zero) advantages by +1 if correct, -1 if not.

    With small groups (G=3) many groups are all right or all wrong; plain GRPO learns nothing from
    them, the fallback still reinforces right answers and pushes down wrong ones.
    """
    grouped = as_groups(advantages, group_size)
    correct_g = as_groups(correct.reshape(-1).to(device=grouped.device, dtype=torch.bool), group_size).bool()
    if correct_g.shape != grouped.shape:
        raise ValueError(f"correct has shape {tuple(correct.shape)}, advantages {tuple(advantages.shape)}")
    if flat.shape != (grouped.shape[0],):
        raise ValueError(f"flat must be ({grouped.shape[0]},), got {tuple(flat.shape)}")
    binary = correct_g.to(grouped.dtype) * 2 - 1
    out = torch.where(flat.to(grouped.device)[:, None], binary, grouped).reshape(-1)
    stats = {
        "frac_binary_groups": flat.float().mean().item(),
        "frac_correct": correct_g.float().mean().item(),
    }
    return out, stats


def grpo_plus_plus(
    rewards: Tensor,
    correct: Tensor,
    group_size: int | None = None,
    *,
    scale: Scale = "group",
    eps: float = DEFAULT_EPS,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO++ on one reward: group z-score where a group has spread, +-1 by correctness where not."""
    grouped = as_groups(rewards, group_size)
    advantages, stats = group_zscore(grouped, scale=scale, eps=eps)
    advantages, fallback_stats = binary_fallback(
        advantages, correct, zero_std_groups(grouped, eps=eps), grouped.shape[1]
    )
    return advantages, {**stats, **fallback_stats, **_advantage_stats(advantages)}


def correct_from_reward(rewards: Mapping[str, Tensor], name: str, threshold: float) -> Tensor:
    """Bool (N,): completions whose reward ``name`` is >= ``threshold`` (GRPO++'s correctness signal)."""
    if name not in rewards:
        raise ConfigError(f"advantages.correct_reward: expected one of {sorted(rewards)}, got {name!r}")
    return rewards[name].reshape(-1) >= threshold


def weighted_sum(rewards: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """sum_k w_k * r_k as a flat (N,) float tensor, after checking names and shapes agree."""
    _check_weights(rewards, weights)
    flat = {name: r.reshape(-1).float() for name, r in rewards.items()}
    sizes = {name: r.numel() for name, r in flat.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"reward components differ in size: {sizes}")
    return sum(
        (weights[name] * r for name, r in flat.items()), start=torch.zeros_like(next(iter(flat.values())))
    )


def _check_weights(rewards: Mapping[str, Tensor], weights: Mapping[str, float]) -> None:
    if not rewards:
        raise ValueError("no reward components")
    missing = sorted(set(rewards) - set(weights))
    unknown = sorted(set(weights) - set(rewards))
    if missing:
        raise ConfigError(f"advantages.weights: no weight for reward(s) {missing} (use 0 to only log)")
    if unknown:
        raise ConfigError(f"advantages.weights: {unknown} are not rewards; rewards are {sorted(rewards)}")
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w != w:
            raise ConfigError(f"advantages.weights.{name}: expected a number, got {w!r}")


def objective_advantages(
    rewards: Mapping[str, Tensor],
    group_size: int,
    *,
    scale: Scale = "group",
    eps: float = DEFAULT_EPS,
    normalizer: Normalizer = group_normalizer,
) -> dict[str, Tensor]:
    """Each reward component normalised within its group on its own: {name: (N,)} (CRPO's first step)."""
    _check_options(scale, eps)
    return {name: normalizer(r.reshape(-1), group_size, scale, eps) for name, r in rewards.items()}


def multi_objective_advantages(
    rewards: Mapping[str, Tensor],
    weights: Mapping[str, float],
    group_size: int,
    *,
    aggregation: Aggregation = "sum_then_normalize",
    scale: Scale = "group",
    eps: float = DEFAULT_EPS,
    normalizer: Normalizer = group_normalizer,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Combine named rewards into one advantage; returns (advantages, flatness signal, stats).

    sum_then_normalize: z-score of sum_k w_k r_k (one reward, the usual GRPO setting).
    normalize_then_sum: sum_k w_k z_k with z_k each objective's own group z-score (CRPO's default), so
    an objective with a large raw range cannot drown the others. The sum is NOT re-normalised: the
    weights keep their absolute meaning (weights summing to 1 give advantages of RMS <= 1), and a
    group where objectives cancel stays at zero instead of having its noise blown up to unit scale.

    The flatness signal is what the last normalisation saw (the weighted raw sum, or the combined
    advantage for normalize_then_sum): GRPO++ treats a group as flat when that has std < eps.
    """
    if aggregation not in AGGREGATIONS:
        raise ConfigError(
            f"advantages.aggregation: expected one of {list(AGGREGATIONS)}, got {aggregation!r}"
        )
    _check_options(scale, eps)
    total = weighted_sum(rewards, weights)
    as_groups(total, group_size)  # layout and NaN check before any work
    per_objective = objective_advantages(rewards, group_size, scale=scale, eps=eps, normalizer=normalizer)
    if aggregation == "sum_then_normalize":
        advantages = normalizer(total, group_size, scale, eps)
        signal = total
    else:
        advantages = sum(
            (weights[name] * adv for name, adv in per_objective.items()), start=torch.zeros_like(total)
        )
        signal = advantages
    stats = {**_reward_stats(total), **_advantage_stats(advantages)}
    stats["frac_zero_std_groups"] = zero_std_groups(signal, group_size, eps=eps).float().mean().item()
    for name, r in rewards.items():
        r = r.reshape(-1).float()
        stats[f"reward/{name}/mean"] = r.mean().item()
        stats[f"reward/{name}/std"] = r.std(unbiased=False).item()
        stats[f"reward/{name}/weighted_mean"] = weights[name] * stats[f"reward/{name}/mean"]
        stats[f"reward/{name}/frac_zero_std_groups"] = (
            zero_std_groups(r, group_size, eps=eps).float().mean().item()
        )
        stats[f"adv/{name}/abs_mean"] = per_objective[name].abs().mean().item()
    return advantages, signal, stats


def compute_advantages(
    rewards: Mapping[str, Tensor],
    weights: Mapping[str, float],
    group_size: int,
    *,
    estimator: Estimator = "grpo",
    aggregation: Aggregation = "sum_then_normalize",
    scale: Scale = "group",
    eps: float = DEFAULT_EPS,
    correct: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The RL loop's entry point: named rewards (each (N,)) -> advantages (N,) and float stats.

    ``correct`` (bool (N,), e.g. from ``correct_from_reward``) is required by ``grpo++`` and only
    logged by ``grpo``. A single reward is the one-component case with weight 1.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"advantages.estimator: expected one of {list(ESTIMATORS)}, got {estimator!r}")
    if estimator == "grpo++" and correct is None:
        raise ValueError("estimator 'grpo++' needs the correct (N,) bool tensor")
    advantages, signal, stats = multi_objective_advantages(
        rewards, weights, group_size, aggregation=aggregation, scale=scale, eps=eps
    )
    if correct is not None:
        flat = zero_std_groups(signal, group_size, eps=eps)
        if estimator == "grpo++":
            advantages, fallback_stats = binary_fallback(advantages, correct, flat, group_size)
            stats.update(fallback_stats)
            stats.update(_advantage_stats(advantages))
        else:
            stats["frac_correct"] = correct.reshape(-1).float().mean().item()
    return advantages, stats


def _reward_stats(rewards: Tensor) -> dict[str, float]:
    return _summary("reward", rewards)


def _advantage_stats(advantages: Tensor) -> dict[str, float]:
    stats = _summary("adv", advantages)
    stats["adv/abs_mean"] = advantages.abs().mean().item()
    return stats


def _summary(prefix: str, x: Tensor) -> dict[str, float]:
    x = x.detach().float()
    return {
        f"{prefix}/mean": x.mean().item(),
        f"{prefix}/std": x.std(unbiased=False).item(),
        f"{prefix}/min": x.min().item(),
        f"{prefix}/max": x.max().item(),
    }
