"""Advantage estimators: per-completion rewards in, per-completion advantages out, keyed by group.

Layout: N completions, each with a group id (`group_index`, (N,) long, the prompt or tree it belongs to).
Groups may have any size and any order, as Tree-GRPO's trees need. For convenience ``groups`` may also be an
int G (contiguous groups of G, the rollout's layout) and rewards may come as (num_groups, G). Advantages come
back flat, (N,), in the input order, with a dict of float stats.

Std convention: by default the **unbiased** (Bessel-corrected) std within a group, as TRL's GRPO (``torch.std``)
and verl compute it, so that advantages equal TRL's for the same settings (tested against TRL's own trainer).
``std: population`` divides by G instead of G - 1: the z-scored group then has unit RMS whatever G is and a
two-valued group split half/half gets +1/-1; the unbiased std is larger by sqrt(G / (G - 1)) (22% at G=3), so
its advantages are that much smaller. The batch std (``scale: batch``, ``normalize_then_sum``'s last step)
follows the same setting. A group whose rewards are all equal gets exactly 0 (no float residue divided by eps),
and so does a group of one.

Estimators (``compute_advantages`` is the one entry point the RL loop calls; ``ESTIMATORS`` is the registry, one
signature, see `training.registry`):
- ``grpo``: group z-score, ``scale`` in {group, batch, none} (``none`` is Dr. GRPO: centre only).
- ``grpo++``: as ``grpo``, but a group whose signal has no spread (std < eps) gets a binary advantage,
  +1 for each correct completion and -1 for each wrong one, instead of all zeros.
- ``binary``: the other reading of GRPO++ ("a different binary advantage"): +1 for every correct completion and -1
  for every wrong one, in every group, the z-score ignored; every group, however small G is, carries signal.
  The rewards still decide correctness (``correct_reward``) and are logged, but their size no longer matters.
- several named rewards (CRPO) combine with ``aggregation`` (each works with either estimator):
  ``sum_then_normalize`` (GRPO: z-score of the weighted sum), ``normalize_then_sum`` (TRL's and GDPO's meaning:
  per-objective group z-scores, weighted sum, then a batch z-score) and ``normalize_then_weighted_sum``
  (per-objective group z-scores, weighted sum, no re-normalisation: the weights keep their absolute scale).
- ``tree`` (Tree-GRPO): inter-tree z-score over all leaves of the prompt plus intra-tree z-score over the leaves
  of the same tree (``subgroups``: the batch's `tree_index`), each with the **Bessel-corrected** std as the paper
  writes it; a flat group contributes 0 and a group of one passes its reward through, r / (1 + eps), as the
  authors' code does (verl's GRPO estimator gives a lone sample mean 0 and std 1). Applied to the combined signal
  (the weighted sum).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from training.errors import ConfigError
from training.registry import Registry

Scale = Literal["group", "batch", "none"]
Aggregation = Literal["sum_then_normalize", "normalize_then_sum", "normalize_then_weighted_sum"]
SCALES: tuple[str, ...] = ("group", "batch", "none")
AGGREGATIONS: tuple[str, ...] = ("sum_then_normalize", "normalize_then_sum", "normalize_then_weighted_sum")
StdKind = Literal["unbiased", "population"]
STDS: tuple[str, ...] = ("unbiased", "population")
DEFAULT_EPS = 1e-4
Groups = int | Tensor | None


@dataclass(frozen=True)
class AdvantageConfig:
    """The RL recipe's `advantages:` section, passed whole to ``compute_advantages``.

    Fields:
        estimator (str, default "grpo"): a registered estimator (`ESTIMATORS`): grpo (GRPO, Shao et al. 2024),
            grpo++ (GRPO++'s binary fallback in flat groups), binary (+-1 by correctness everywhere), tree
            (Tree-GRPO, Ji et al. 2025); see the module docstring.
        aggregation (one of sum_then_normalize, normalize_then_sum, normalize_then_weighted_sum; default
            sum_then_normalize): how several rewards combine (CRPO); normalize_then_sum is TRL's and GDPO's
            per-objective normalisation, see the module docstring.
        scale (one of group, batch, none; default group): the z-score's std: the group's, the batch's (TRL
            `scale_rewards="batch"`), or none: centre only (Dr. GRPO, Liu et al. 2025, "Understanding R1-Zero-Like
            Training"; TRL `scale_rewards="none"`).
        std (one of unbiased, population; default unbiased): the std's divisor, G - 1 (TRL's and verl's
            ``torch.std``) or G; see the module docstring.
        eps (float, default 1e-4): added to the std, > 0 (TRL's 1e-4); a group with std < eps is flat (no signal).
        correct_reward (str | None, default None): the reward that says a completion is correct; required by
            grpo++ and binary, logged by grpo.
        correct_threshold (float, default 1.0): a completion is correct when that reward is >= this.
    """

    estimator: str = "grpo"
    aggregation: Literal["sum_then_normalize", "normalize_then_sum", "normalize_then_weighted_sum"] = (
        "sum_then_normalize"
    )
    scale: Literal["group", "batch", "none"] = "group"
    std: Literal["unbiased", "population"] = "unbiased"
    eps: float = DEFAULT_EPS
    correct_reward: str | None = None
    correct_threshold: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, key: str = "advantages") -> None:
        ESTIMATORS.get(self.estimator, f"{key}.estimator")  # an unknown name lists the registered ones
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"{key}.aggregation: expected one of {list(AGGREGATIONS)}, got {self.aggregation!r}"
            )
        _check_options(self.scale, self.eps, key, self.std)  # correct_reward: the recipe checks it


# ---------------------------------------------------------------------------------------------- layout
def group_layout(rewards: Tensor, groups: Groups = None) -> tuple[Tensor, Tensor, int]:
    """(flat float rewards (N,), group ids (N,) in 0..K-1, K): the one place the layout is checked."""
    if rewards.dim() == 2:
        if isinstance(groups, int) and rewards.shape[1] != groups:
            raise ValueError(f"rewards have groups of {rewards.shape[1]}, but group_size is {groups}")
        groups = rewards.shape[1] if not isinstance(groups, Tensor) else groups
        rewards = rewards.reshape(-1)
    elif rewards.dim() != 1:
        raise ValueError(f"rewards must be (N,) or (num_groups, G), got shape {tuple(rewards.shape)}")
    n = rewards.numel()
    if n == 0:
        raise ValueError("no rewards")
    if groups is None:
        raise ValueError("flat (N,) rewards need group_size or group_index")
    if isinstance(groups, Tensor):
        if groups.shape != (n,):
            raise ValueError(f"group_index must be ({n},), got {tuple(groups.shape)}")
        uniq, ids = torch.unique(groups.to(rewards.device), return_inverse=True)
        k = int(uniq.numel())
    else:
        if groups < 1 or n % groups:
            raise ValueError(f"{n} rewards do not split into groups of {groups}")
        ids = torch.arange(n, device=rewards.device) // groups
        k = n // groups
    flat = rewards if rewards.is_floating_point() else rewards.float()
    if torch.isnan(flat).any():  # one NaN would silently poison its group's mean and std
        raise ValueError("rewards contain NaN (a reward function returned no score?)")
    return flat, ids, k


def _check_options(scale: str, eps: float, key: str = "advantages", std: str = "unbiased") -> None:
    if std not in STDS:
        raise ConfigError(f"{key}.std: expected one of {list(STDS)}, got {std!r}")
    if scale not in SCALES:
        raise ConfigError(f"{key}.scale: expected one of {list(SCALES)}, got {scale!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ConfigError(f"{key}.eps: expected a float > 0, got {eps!r}")


def _segment(x: Tensor, ids: Tensor, k: int, reduce: str) -> Tensor:
    """Per-group reduction of x (N,) -> (K,): sum, mean, amax or amin."""
    out = torch.zeros(k, dtype=x.dtype, device=x.device)
    if reduce == "sum":
        return out.index_add(0, ids, x)
    return out.scatter_reduce(0, ids, x, reduce=reduce, include_self=False)


def _group_std(x: Tensor, ids: Tensor, k: int, std: str = "unbiased") -> Tensor:
    """(K,) per-group std; the unbiased one divides by G - 1 (a group of one has std 0)."""
    mean = _segment(x, ids, k, "mean")
    squares = _segment((x - mean[ids]) ** 2, ids, k, "sum")
    count = _segment(torch.ones_like(x), ids, k, "sum")
    return (squares / ((count - 1).clamp(min=1) if std == "unbiased" else count)).sqrt()


def _batch_std(x: Tensor, std: str) -> Tensor:
    return x.std(unbiased=std == "unbiased") if x.numel() > 1 else x.new_zeros(())


def _zscore(x: Tensor, ids: Tensor, k: int, scale: str, eps: float, std: str = "unbiased") -> Tensor:
    mean = _segment(x, ids, k, "mean")
    flat = (_segment(x, ids, k, "amax") == _segment(x, ids, k, "amin"))[ids]
    centered = x - mean[ids]
    if scale == "group":
        centered = centered / (_group_std(x, ids, k, std)[ids] + eps)
    elif scale == "batch":
        centered = centered / (_batch_std(x, std) + eps)
    return torch.where(flat, torch.zeros_like(x), centered)  # exact 0, never 0 / 0


# ---------------------------------------------------------------------------------------------- pieces
def group_zscore(
    rewards: Tensor,
    groups: Groups = None,
    *,
    scale: Scale = "group",
    eps: float = DEFAULT_EPS,
    std: StdKind = "unbiased",
) -> tuple[Tensor, dict[str, float]]:
    """GRPO's baseline: subtract the group mean, then divide by a std chosen by ``scale``.

    group: (r - mean_g) / (std_g + eps); batch: (r - mean_g) / (std_all + eps), which keeps easy and
    hard prompts on one scale; none: r - mean_g (Dr. GRPO, no per-prompt difficulty weighting).
    """
    _check_options(scale, eps, std=std)
    flat, ids, k = group_layout(rewards, groups)
    advantages = _zscore(flat, ids, k, scale, eps, std)
    stats = {**_summary("reward", flat), **_advantage_stats(advantages)}
    stats["frac_zero_std_groups"] = (_group_std(flat, ids, k, "population") < eps).float().mean().item()
    return advantages, stats


def group_normalizer(scores: Tensor, groups: Groups, scale: str, eps: float, std: str = "unbiased") -> Tensor:
    """The group z-score as a flat (N,) tensor (the normaliser of every estimator here)."""
    flat, ids, k = group_layout(scores, groups)
    return _zscore(flat, ids, k, scale, eps, std)


def zero_std_groups(rewards: Tensor, groups: Groups = None, *, eps: float = DEFAULT_EPS) -> Tensor:
    """Bool (num_groups,): groups whose rewards have no spread (population std < eps), i.e. no signal.

    A threshold, not a normaliser: it uses the population std whatever ``std`` the advantages use, so which
    groups count as flat (GRPO++'s fallback, the logged fractions) does not move with that setting."""
    flat, ids, k = group_layout(rewards, groups)
    return _group_std(flat, ids, k, "population") < eps


def binary_fallback(
    advantages: Tensor, correct: Tensor, flat: Tensor, groups: Groups
) -> tuple[Tensor, dict[str, float]]:
    """GRPO++: in ``flat`` groups replace the (zero) advantages by +1 if correct, -1 if not.

    With small groups (G=3) many groups are all right or all wrong; plain GRPO learns nothing from
    them, the fallback still reinforces right answers and pushes down wrong ones.
    """
    adv, ids, k = group_layout(advantages, groups)
    correct = correct.reshape(-1).to(device=adv.device, dtype=torch.bool)
    if correct.shape != adv.shape:
        raise ValueError(f"correct has shape {tuple(correct.shape)}, advantages {tuple(adv.shape)}")
    if flat.shape != (k,):
        raise ValueError(f"flat must be ({k},), got {tuple(flat.shape)}")
    binary = correct.to(adv.dtype) * 2 - 1
    out = torch.where(flat.to(adv.device)[ids], binary, adv)
    stats = {"frac_binary_groups": flat.float().mean().item(), "frac_correct": correct.float().mean().item()}
    return out, stats


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
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ConfigError(f"advantages.weights.{name}: expected a finite number, got {w!r}")


def objective_advantages(
    rewards: Mapping[str, Tensor],
    groups: Groups,
    *,
    scale: Scale = "group",
    eps: float = DEFAULT_EPS,
    std: StdKind = "unbiased",
) -> dict[str, Tensor]:
    """Each reward component normalised within its group on its own: {name: (N,)} (CRPO's first step)."""
    _check_options(scale, eps, std=std)
    return {name: group_normalizer(r.reshape(-1), groups, scale, eps, std) for name, r in rewards.items()}


def multi_objective_advantages(
    rewards: Mapping[str, Tensor],
    weights: Mapping[str, float],
    groups: Groups,
    *,
    aggregation: Aggregation = "sum_then_normalize",
    scale: Scale = "group",
    eps: float = DEFAULT_EPS,
    std: StdKind = "unbiased",
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Combine named rewards into one advantage; returns (advantages, flatness signal, stats).

    sum_then_normalize: z-score of sum_k w_k r_k (one reward, the usual GRPO setting).
    normalize_then_sum: TRL's (and GDPO's) meaning: sum_k w_k z_k with z_k each objective's own group z-score,
    then a z-score over the whole batch, so an objective with a large raw range cannot drown the others and the
    advantage has unit scale whatever the weights.
    normalize_then_weighted_sum: sum_k w_k z_k, NOT re-normalised: the weights keep their absolute meaning
    (weights summing to 1 give advantages of RMS <= 1), and a group where objectives cancel stays at zero
    instead of having its noise blown up to unit scale.

    The flatness signal is what the group-level normalisation saw (the weighted raw sum, or sum_k w_k z_k for
    the normalize-first aggregations): GRPO++ treats a group as flat when that has std < eps; such a group's
    advantage is exactly 0 before any fallback.
    Reward statistics are all here, under one prefix: `reward/...` (total) and `reward/<name>/...`.
    """
    if aggregation not in AGGREGATIONS:
        raise ConfigError(
            f"advantages.aggregation: expected one of {list(AGGREGATIONS)}, got {aggregation!r}"
        )
    _check_options(scale, eps, std=std)
    total = weighted_sum(rewards, weights)
    _, ids, _ = group_layout(total, groups)  # layout and NaN check before any work
    per_objective = objective_advantages(rewards, ids, scale=scale, eps=eps, std=std)
    if aggregation == "sum_then_normalize":
        advantages = group_normalizer(total, ids, scale, eps, std)
        signal = total
    else:
        signal = sum(
            (weights[name] * adv for name, adv in per_objective.items()), start=torch.zeros_like(total)
        )
        advantages = signal
        if aggregation == "normalize_then_sum":
            k = int(ids.max()) + 1
            flat = _segment(signal, ids, k, "amax") == _segment(signal, ids, k, "amin")
            batch = (signal - signal.mean()) / (_batch_std(signal, std) + eps)
            advantages = torch.where(flat[ids], torch.zeros_like(signal), batch)
    stats = {**_summary("reward", total), **_advantage_stats(advantages)}
    stats["frac_zero_std_groups"] = zero_std_groups(signal, ids, eps=eps).float().mean().item()
    for name, r in rewards.items():
        r = r.reshape(-1).float()
        stats[f"reward/{name}/mean"] = r.mean().item()
        stats[f"reward/{name}/std"] = r.std(unbiased=False).item()
        stats[f"reward/{name}/weighted_mean"] = weights[name] * stats[f"reward/{name}/mean"]
        stats[f"reward/{name}/frac_zero_std_groups"] = zero_std_groups(r, ids, eps=eps).float().mean().item()
        stats[f"adv/{name}/abs_mean"] = per_objective[name].abs().mean().item()
    return advantages, signal, stats


# ---------------------------------------------------------------------------------------------- estimators
# One signature: fn(advantages, signal, ids, correct, subgroups, cfg) -> (advantages (N,), extra stats), where
# `advantages` (N,) are the combined group-normalised advantages (`multi_objective_advantages`), `signal` (N,) what
# the group normalisation saw, `ids` (N,) long group ids in 0..K-1, `correct` (N,) bool or None, `subgroups` (N,)
# the rows' tree index or None, `cfg` the `AdvantageConfig`. `needs_correct=True`: the recipe must name
# `advantages.correct_reward`.
ESTIMATORS: Registry[Callable[..., tuple[Tensor, dict[str, float]]]] = Registry(
    "advantage estimator", ("advantages", "signal", "ids", "correct", "subgroups", "cfg")
)


def needs_correct(estimator: str) -> bool:
    """Whether the estimator reads correctness (`advantages.correct_reward`)."""
    return bool(ESTIMATORS.info(estimator).get("needs_correct")) if estimator in ESTIMATORS else False


@ESTIMATORS.register("grpo")
def grpo_estimator(
    advantages: Tensor,
    signal: Tensor,
    ids: Tensor,
    correct: Tensor | None,
    subgroups: Tensor | None,
    cfg: AdvantageConfig,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO (Shao et al. 2024, "DeepSeekMath", sec. 4.1): the group z-score as it is; (N,) -> (N,).

    `correct` (N,) is only logged (`frac_correct`) when given.
    """
    stats = {} if correct is None else {"frac_correct": correct.reshape(-1).float().mean().item()}
    return advantages, stats


@ESTIMATORS.register("grpo++", needs_correct=True)
def grpo_plus_plus_estimator(
    advantages: Tensor,
    signal: Tensor,
    ids: Tensor,
    correct: Tensor | None,
    subgroups: Tensor | None,
    cfg: AdvantageConfig,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO++ (DermIQ-VLM's GRPO with a binary fallback): the group z-score where a group's signal has spread,
    +1 for a correct / -1 for a wrong completion where it has none (std < eps); (N,) -> (N,), `correct` (N,)."""
    if correct is None:
        raise ValueError("estimator 'grpo++' needs the correct (N,) bool tensor")
    flat = zero_std_groups(signal, ids, eps=cfg.eps)
    advantages, stats = binary_fallback(advantages, correct, flat, ids)
    return advantages, {**stats, **_advantage_stats(advantages)}


@ESTIMATORS.register("binary", needs_correct=True)
def binary_estimator(
    advantages: Tensor,
    signal: Tensor,
    ids: Tensor,
    correct: Tensor | None,
    subgroups: Tensor | None,
    cfg: AdvantageConfig,
) -> tuple[Tensor, dict[str, float]]:
    """The other reading of GRPO++'s "binary advantage" (DermIQ-VLM): +1 correct / -1 wrong in every group, flat
    or not, the z-score ignored; (N,) -> (N,), `correct` (N,)."""
    if correct is None:
        raise ValueError("estimator 'binary' needs the correct (N,) bool tensor")
    k = int(ids.max()) + 1
    every = torch.ones(k, dtype=torch.bool, device=advantages.device)
    advantages, stats = binary_fallback(advantages, correct, every, ids)
    return advantages, {**stats, **_advantage_stats(advantages)}


def bessel_zscore(x: Tensor, ids: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """(x - group mean) / (unbiased group std + eps), as verl's GRPO estimator (which Tree-GRPO's code calls) gives
    it: 0 in flat groups, and a group of one passes its value through as x / (1 + eps) (mean 0, std 1 there)."""
    k = int(ids.max()) + 1
    count = _segment(torch.ones_like(x), ids, k, "sum")
    return torch.where(count[ids] < 2, x / (1 + eps), _zscore(x, ids, k, "group", eps, "unbiased"))


def tree_advantages(
    rewards: Tensor, prompt_ids: Tensor, tree_ids: Tensor, eps: float = DEFAULT_EPS
) -> tuple[Tensor, dict[str, float]]:
    """Tree-GRPO: inter-tree (all leaves of a prompt) plus intra-tree (leaves of one tree) Bessel z-scores."""
    flat = rewards.reshape(-1).float()
    _, pid = torch.unique(prompt_ids.reshape(-1).to(flat.device), return_inverse=True)
    _, tid = torch.unique(tree_ids.reshape(-1).to(flat.device), return_inverse=True)
    inter, intra = bessel_zscore(flat, pid, eps), bessel_zscore(flat, tid, eps)
    adv = inter + intra
    return adv, {
        "adv/inter_abs_mean": inter.abs().mean().item(),
        "adv/intra_abs_mean": intra.abs().mean().item(),
        **_advantage_stats(adv),
    }


@ESTIMATORS.register("tree")
def tree_estimator(
    advantages: Tensor,
    signal: Tensor,
    ids: Tensor,
    correct: Tensor | None,
    subgroups: Tensor | None,
    cfg: AdvantageConfig,
) -> tuple[Tensor, dict[str, float]]:
    """Tree-GRPO (Ji et al. 2025, "Tree Search for LLM Agent Reinforcement Learning"): inter-tree plus intra-tree
    z-scores of the combined signal (N,) -> (N,); `subgroups` (N,) is each row's tree."""
    if subgroups is None:
        raise ValueError("estimator 'tree' needs the rows' tree index (rollout.strategy: tree)")
    return tree_advantages(signal, ids, subgroups, cfg.eps)


def compute_advantages(
    rewards: Mapping[str, Tensor],
    weights: Mapping[str, float],
    groups: Groups,
    config: AdvantageConfig | None = None,
    *,
    correct: Tensor | None = None,
    subgroups: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The RL loop's entry point: named rewards (each (N,)) -> advantages (N,) and float stats.

    ``groups``: the batch's `group_index` (or G for contiguous groups). ``correct`` (bool (N,), e.g. from
    ``correct_from_reward``) is required by ``grpo++`` and ``binary`` and only logged by ``grpo``. ``subgroups``
    (the rows' tree index) is required by ``tree``.
    """
    cfg = config or AdvantageConfig()
    advantages, signal, stats = multi_objective_advantages(
        rewards, weights, groups, aggregation=cfg.aggregation, scale=cfg.scale, eps=cfg.eps, std=cfg.std
    )
    _, ids, _ = group_layout(signal, groups)
    estimator = ESTIMATORS.get(cfg.estimator, "advantages.estimator")
    advantages, extra = estimator(advantages, signal, ids, correct, subgroups, cfg)
    stats.update(extra)
    stats["adv/frac_flat_groups"] = (
        zero_std_groups(signal, ids, eps=cfg.eps).float().mean().item()
    )  # no spread
    return advantages, stats


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
