"""Advantage estimators against values worked out by hand, with the population std (``std="population"``) so the
numbers stay simple; the default, unbiased std is checked against TRL's own trainer in test_advantages_trl.py."""

from __future__ import annotations

import math

import pytest
import torch

from training.errors import ConfigError
from training.objectives.advantages import (
    AdvantageConfig,
    binary_fallback,
    compute_advantages,
    correct_from_reward,
    group_layout,
    group_zscore,
    multi_objective_advantages,
    objective_advantages,
    weighted_sum,
    zero_std_groups,
)

EPS = 1e-4


def close(actual: torch.Tensor, expected: list[float], tol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=tol, rtol=0)


# --- group z-score -------------------------------------------------------------------------------


def test_group_scale_by_hand() -> None:
    # group 0: [1, 3] mean 2, population std 1; group 1: [0, 4] mean 2, std 2.
    adv, stats = group_zscore(torch.tensor([[1.0, 3.0], [0.0, 4.0]]), std="population")
    close(adv, [-1 / (1 + EPS), 1 / (1 + EPS), -2 / (2 + EPS), 2 / (2 + EPS)])
    assert adv.shape == (4,)
    assert stats["reward/mean"] == pytest.approx(2.0)
    assert stats["reward/min"] == 0.0 and stats["reward/max"] == 4.0
    assert stats["adv/max"] == pytest.approx(2 / (2 + EPS))  # the larger group is squeezed less by eps
    assert stats["adv/mean"] == pytest.approx(0.0, abs=1e-7)
    assert stats["frac_zero_std_groups"] == 0.0


def test_batch_scale_by_hand() -> None:
    # centred within groups: [-1, 1, -2, 2]; batch [1, 3, 0, 4]: mean 2,
    # population var (1 + 1 + 4 + 4) / 4 = 2.5, so every value is divided by sqrt(2.5) + eps.
    adv, _ = group_zscore(torch.tensor([1.0, 3.0, 0.0, 4.0]), 2, scale="batch", std="population")
    d = math.sqrt(2.5) + EPS
    close(adv, [-1 / d, 1 / d, -2 / d, 2 / d])


def test_none_scale_is_dr_grpo_centering() -> None:
    adv, _ = group_zscore(torch.tensor([1.0, 3.0, 0.0, 4.0]), 2, scale="none")
    close(adv, [-1.0, 1.0, -2.0, 2.0])


def test_population_std_at_g3() -> None:
    # [1, 0, 0]: mean 1/3, deviations 2/3, -1/3, -1/3; population var (4 + 1 + 1) / 27 = 2/9, std sqrt(2)/3.
    # (TRL's unbiased std is sqrt(1/3), i.e. sqrt(3/2) times larger, giving 1.1547 instead of 1.4142.)
    adv, _ = group_zscore(torch.tensor([1.0, 0.0, 0.0]), 3, eps=1e-8, std="population")
    s = math.sqrt(2) / 3
    close(adv, [(2 / 3) / s, (-1 / 3) / s, (-1 / 3) / s], tol=1e-5)
    assert adv[0].item() == pytest.approx(math.sqrt(2), rel=1e-5)


def test_flat_group_gets_zero_and_is_counted() -> None:
    adv, stats = group_zscore(torch.tensor([[5.0, 5.0, 5.0], [1.0, 0.0, 0.0]]))
    close(adv[:3], [0.0, 0.0, 0.0])
    assert stats["frac_zero_std_groups"] == 0.5


def test_layout_checks() -> None:
    flat = torch.tensor([1.0, 3.0, 0.0, 4.0])
    torch.testing.assert_close(group_zscore(flat, 2)[0], group_zscore(flat.view(2, 2))[0])
    assert group_layout(torch.tensor([1, 0, 1, 1]), 2)[0].dtype == torch.float32  # int rewards are fine
    with pytest.raises(ValueError, match="do not split"):
        group_layout(flat, 3)
    with pytest.raises(ValueError, match="group_size"):
        group_layout(flat)
    with pytest.raises(ValueError, match="groups of 2"):
        group_layout(flat.view(2, 2), 4)
    with pytest.raises(ValueError, match="NaN"):
        group_layout(torch.tensor([1.0, float("nan")]), 2)
    with pytest.raises(ValueError, match="group_index"):
        group_layout(flat, torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="advantages.scale"):
        group_zscore(flat, 2, scale="std")
    with pytest.raises(ConfigError, match="advantages.eps"):
        group_zscore(flat, 2, eps=0.0)


def test_zero_std_groups_uses_eps() -> None:
    # group 1: [1, 1.00001] has std 5e-6 < 1e-4: no usable spread.
    flat = zero_std_groups(torch.tensor([[1.0, 2.0], [1.0, 1.00001], [3.0, 3.0]]))
    assert flat.tolist() == [False, True, True]


# --- GRPO++ --------------------------------------------------------------------------------------


def grpo_pp_advantages(rewards: torch.Tensor, correct: torch.Tensor, groups, **options):
    """The registered `grpo++` estimator on one reward, through the RL loop's entry point."""
    flat = rewards.reshape(-1)
    return compute_advantages(
        {"r": flat},
        {"r": 1.0},
        groups,
        AdvantageConfig(estimator="grpo++", **options),
        correct=correct.reshape(-1),
    )


def test_grpo_plus_plus_binary_fallback_by_hand() -> None:
    # group 0 has spread: z-score [sqrt2, -1/sqrt2, -1/sqrt2]; group 1 all right -> +1; group 2 all wrong -> -1.
    rewards = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    adv, stats = grpo_pp_advantages(rewards, rewards >= 0.5, 3, eps=1e-8, std="population")
    r2 = math.sqrt(2)
    close(adv, [r2, -1 / r2, -1 / r2, 1, 1, 1, -1, -1, -1], tol=1e-5)
    assert stats["frac_binary_groups"] == pytest.approx(2 / 3)
    assert stats["frac_correct"] == pytest.approx(4 / 9)
    assert stats["adv/min"] == -1.0 and stats["adv/max"] == pytest.approx(r2, rel=1e-5)


def test_grpo_plus_plus_with_none_scale() -> None:
    # group 0 centred only: [0.5, -0.5]; group 1 flat and both wrong: -1, -1.
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    adv, _ = grpo_pp_advantages(rewards, rewards > 0.5, 2, scale="none")
    close(adv, [0.5, -0.5, -1.0, -1.0])


def test_binary_fallback_checks_shapes() -> None:
    adv = torch.zeros(4)
    out, _ = binary_fallback(adv, torch.tensor([True, False, True, True]), torch.tensor([True, False]), 2)
    close(out, [1.0, -1.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        binary_fallback(adv, torch.tensor([True, False]), torch.tensor([True, False]), 2)
    with pytest.raises(ValueError, match="flat"):
        binary_fallback(adv, torch.ones(4, dtype=torch.bool), torch.tensor([True]), 2)


def test_correct_from_reward_threshold() -> None:
    rewards = {"accuracy": torch.tensor([0.4, 0.5, 0.9])}
    assert correct_from_reward(rewards, "accuracy", 0.5).tolist() == [False, True, True]
    with pytest.raises(ConfigError, match=r"advantages.correct_reward: expected one of \['accuracy'\]"):
        correct_from_reward(rewards, "acc", 0.5)


# --- multi-objective (CRPO) ----------------------------------------------------------------------

# Two groups of 2. acc = [1, 0 | 1, 1], fmt = [0, 1 | 1, 0], weights acc 1, fmt 0.5.
ACC = torch.tensor([1.0, 0.0, 1.0, 1.0])
FMT = torch.tensor([0.0, 1.0, 1.0, 0.0])
W = {"acc": 1.0, "fmt": 0.5}


def test_sum_then_normalize_by_hand() -> None:
    # total = [1, 0.5 | 1.5, 1]; each group: mean +-0.25 away, std 0.25 -> [1, -1 | 1, -1].
    rewards = {"acc": ACC, "fmt": FMT}
    close(weighted_sum(rewards, W), [1.0, 0.5, 1.5, 1.0])
    adv, _, stats = multi_objective_advantages(rewards, W, 2, eps=1e-8, std="population")
    close(adv, [1.0, -1.0, 1.0, -1.0], tol=1e-5)
    assert stats["reward/mean"] == pytest.approx(1.0)


def test_normalize_then_weighted_sum_by_hand() -> None:
    # z(acc) = [1, -1 | 0, 0] (group 1 flat); z(fmt) = [-1, 1 | 1, -1]
    # 1 * z(acc) + 0.5 * z(fmt) = [0.5, -0.5 | 0.5, -0.5], not re-normalised.
    rewards = {"acc": ACC, "fmt": FMT}
    per = objective_advantages(rewards, 2, eps=1e-8, std="population")
    close(per["acc"], [1.0, -1.0, 0.0, 0.0], tol=1e-5)
    close(per["fmt"], [-1.0, 1.0, 1.0, -1.0], tol=1e-5)
    cfg = AdvantageConfig(aggregation="normalize_then_weighted_sum", eps=1e-8, std="population")
    adv, stats = compute_advantages(rewards, W, 2, cfg)
    close(adv, [0.5, -0.5, 0.5, -0.5], tol=1e-5)
    assert stats["reward/acc/mean"] == pytest.approx(0.75)
    assert stats["reward/acc/frac_zero_std_groups"] == 0.5
    assert stats["reward/fmt/weighted_mean"] == pytest.approx(0.25)
    assert stats["adv/acc/abs_mean"] == pytest.approx(0.5, abs=1e-5)
    assert stats["adv/fmt/abs_mean"] == pytest.approx(1.0, abs=1e-5)


def test_normalize_then_sum_is_trls_batch_normalised_sum() -> None:
    # As TRL/GDPO: per-objective group z-scores, weighted sum, then a batch z-score.
    # acc [1, 0 | 1, 0], fmt [0, 1 | 1, 1] (fmt flat in group 1), weights acc 1, fmt 0.5:
    # z(acc) = [1, -1 | 1, -1], z(fmt) = [-1, 1 | 0, 0]; sum = [0.5, -0.5 | 1, -1]; batch mean 0,
    # population std sqrt((0.25 + 0.25 + 1 + 1) / 4) = sqrt(0.625); advantage = sum / sqrt(0.625).
    rewards = {"acc": torch.tensor([1.0, 0.0, 1.0, 0.0]), "fmt": torch.tensor([0.0, 1.0, 1.0, 1.0])}
    P = {"eps": 1e-8, "std": "population"}
    adv, _ = compute_advantages(rewards, W, 2, AdvantageConfig(aggregation="normalize_then_sum", **P))
    d = math.sqrt(0.625)
    close(adv, [0.5 / d, -0.5 / d, 1 / d, -1 / d], tol=1e-5)
    unscaled, _ = compute_advantages(
        rewards, W, 2, AdvantageConfig(aggregation="normalize_then_weighted_sum", **P)
    )
    close(unscaled, [0.5, -0.5, 1.0, -1.0], tol=1e-5)
    # a group flat on every objective stays exactly 0 after the batch z-score
    flat = {"acc": torch.tensor([1.0, 0.0, 1.0, 1.0]), "fmt": torch.tensor([0.0, 1.0, 0.5, 0.5])}
    adv, _ = compute_advantages(flat, W, 2, AdvantageConfig(aggregation="normalize_then_sum"))
    assert torch.equal(adv[2:], torch.zeros(2))


def test_aggregations_agree_without_scaling() -> None:
    # scale none: sum_k w_k (r_k - mean_k) = sum_k w_k r_k - mean(sum); both give [0.25, -0.25 | 0.25, -0.25].
    rewards = {"acc": ACC, "fmt": FMT}
    a, _ = compute_advantages(rewards, W, 2, AdvantageConfig(aggregation="sum_then_normalize", scale="none"))
    b, _ = compute_advantages(
        rewards, W, 2, AdvantageConfig(aggregation="normalize_then_weighted_sum", scale="none")
    )
    close(a, [0.25, -0.25, 0.25, -0.25])
    close(b, [0.25, -0.25, 0.25, -0.25])


def test_zero_weight_only_logs() -> None:
    rewards = {"acc": ACC, "fmt": FMT}
    adv, stats = compute_advantages(
        rewards, {"acc": 1.0, "fmt": 0.0}, 2, AdvantageConfig(eps=1e-8, std="population")
    )
    # acc alone: [1, -1 | 0, 0]
    close(adv, [1.0, -1.0, 0.0, 0.0], tol=1e-5)
    assert stats["reward/fmt/mean"] == 0.5


def test_weight_validation() -> None:
    rewards = {"acc": ACC, "fmt": FMT}
    with pytest.raises(ConfigError, match=r"no weight for reward\(s\) \['fmt'\]"):
        compute_advantages(rewards, {"acc": 1.0}, 2)
    with pytest.raises(ConfigError, match=r"\['len'\] are not rewards"):
        compute_advantages(rewards, {**W, "len": 1.0}, 2)
    with pytest.raises(ConfigError, match="advantages.weights.acc"):
        compute_advantages(rewards, {"acc": "1", "fmt": 0.5}, 2)
    with pytest.raises(ValueError, match="differ in size"):
        compute_advantages({"acc": ACC, "fmt": FMT[:2]}, W, 2)
    with pytest.raises(ConfigError, match="advantages.aggregation"):
        AdvantageConfig(aggregation="mean")


# --- the entry point -----------------------------------------------------------------------------


def test_entry_point_grpo_single_reward_matches_group_zscore() -> None:
    r = torch.tensor([1.0, 3.0, 0.0, 4.0])
    adv, stats = compute_advantages({"acc": r}, {"acc": 1.0}, 2, correct=r > 2)
    torch.testing.assert_close(adv, group_zscore(r, 2)[0])
    assert stats["frac_correct"] == 0.5 and "frac_binary_groups" not in stats


def test_entry_point_grpo_plus_plus_flat_by_cancellation() -> None:
    # acc [1, 0], fmt [0, 1], equal weights: total [1, 1] is flat although the answers differ,
    # so GRPO++ falls back to correctness: +1 for the right answer, -1 for the wrong one.
    rewards = {"acc": torch.tensor([1.0, 0.0]), "fmt": torch.tensor([0.0, 1.0])}
    weights = {"acc": 1.0, "fmt": 1.0}
    correct = correct_from_reward(rewards, "acc", 0.5)
    plain, _ = compute_advantages(rewards, weights, 2, correct=correct)
    close(plain, [0.0, 0.0])
    for aggregation in ("sum_then_normalize", "normalize_then_sum", "normalize_then_weighted_sum"):
        adv, stats = compute_advantages(
            rewards, weights, 2, AdvantageConfig(estimator="grpo++", aggregation=aggregation), correct=correct
        )
        close(adv, [1.0, -1.0])
        assert stats["frac_binary_groups"] == 1.0


def test_entry_point_normalize_then_sum_flatness_is_on_the_combined_advantage() -> None:
    # acc [1, 0], fmt [0, 0.5]: the raw total [1, 0.5] has spread, but z(acc) + z(fmt) = [1,-1] + [-1,1]
    # = [0, 0]; normalize_then_sum would learn nothing, so GRPO++ uses correctness: [+1, -1].
    # (Small eps: with 1e-4 the two z-scores are 0.5/0.5001 and 0.25/0.2501, leaving a 2e-4 residue.)
    rewards = {"acc": torch.tensor([1.0, 0.0]), "fmt": torch.tensor([0.0, 0.5])}
    weights = {"acc": 1.0, "fmt": 1.0}
    correct = torch.tensor([True, False])
    adv, _ = compute_advantages(
        rewards,
        weights,
        2,
        AdvantageConfig(estimator="grpo++", aggregation="normalize_then_weighted_sum", eps=1e-8),
        correct=correct,
    )
    close(adv, [1.0, -1.0])
    adv, _ = compute_advantages(
        rewards,
        weights,
        2,
        AdvantageConfig(estimator="grpo++", aggregation="sum_then_normalize", eps=1e-8, std="population"),
        correct=correct,
    )
    close(adv, [1.0, -1.0], tol=1e-5)  # z-score of [1, 0.5], not the fallback


def test_entry_point_errors() -> None:
    r = {"acc": torch.tensor([1.0, 0.0])}
    with pytest.raises(ConfigError, match="advantages.estimator"):
        AdvantageConfig(estimator="mcts")
    with pytest.raises(ValueError, match="correct"):
        compute_advantages(r, {"acc": 1.0}, 2, AdvantageConfig(estimator="grpo++"))
    with pytest.raises(ValueError, match="no reward components"):
        compute_advantages({}, {}, 2)


def test_stats_are_plain_floats() -> None:
    r = {"acc": torch.tensor([1.0, 0.0, 1.0, 1.0])}
    _, stats = compute_advantages(
        r, {"acc": 1.0}, 2, AdvantageConfig(estimator="grpo++"), correct=r["acc"] > 0.5
    )
    assert stats and all(type(v) is float for v in stats.values())


# --- groups of any size, keyed by group_index -------------------------------------------------------


def test_group_index_any_size_and_order() -> None:
    # groups interleaved and of sizes 3 and 2: same advantages as each group z-scored on its own.
    rewards = torch.tensor([1.0, 5.0, 0.0, 7.0, 0.0])
    index = torch.tensor([4, 9, 4, 9, 4])  # any ids, any order
    adv, stats = group_zscore(rewards, index, eps=1e-8)
    a, _ = group_zscore(torch.tensor([1.0, 0.0, 0.0]), 3, eps=1e-8)
    b, _ = group_zscore(torch.tensor([5.0, 7.0]), 2, eps=1e-8)
    close(adv, [a[0].item(), b[0].item(), a[1].item(), b[1].item(), a[2].item()], tol=1e-6)
    assert stats["frac_zero_std_groups"] == 0.0


def test_equal_rewards_give_exactly_zero() -> None:
    # fp32 rewards whose mean carries a rounding residue: divided by eps it used to reach ~1e-2.
    rewards = torch.full((6,), 123.456789, dtype=torch.float32) * torch.tensor([1.0, 1, 1, 1, 1, 1]) / 3 * 3
    for scale in ("group", "batch", "none"):
        adv, _ = group_zscore(rewards, 3, scale=scale)
        assert torch.equal(adv, torch.zeros(6)), (scale, adv)
    weighted = {"a": torch.full((4,), 0.1), "b": torch.full((4,), 0.7)}
    adv, _ = compute_advantages(weighted, {"a": 0.3, "b": 0.9}, torch.tensor([0, 0, 1, 1]))
    assert torch.equal(adv, torch.zeros(4))


def test_infinite_weight_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="advantages.weights.fmt: expected a finite number"):
        compute_advantages({"acc": ACC, "fmt": FMT}, {"acc": 1.0, "fmt": float("inf")}, 2)


def test_estimator_table_with_uneven_groups() -> None:
    # GRPO++ over groups of 3 and 1 (a tree's leaves can be uneven): the single-completion group is flat.
    r = {"acc": torch.tensor([1.0, 0.0, 0.0, 1.0])}
    adv, stats = compute_advantages(
        r,
        {"acc": 1.0},
        torch.tensor([0, 0, 0, 1]),
        AdvantageConfig(estimator="grpo++", eps=1e-8, std="population"),
        correct=r["acc"] > 0.5,
    )
    r2 = math.sqrt(2)
    close(adv, [r2, -1 / r2, -1 / r2, 1.0], tol=1e-5)
    assert stats["frac_binary_groups"] == 0.5


# --- binary: the other reading of GRPO++ -----------------------------------------------------------


def test_binary_is_plus_minus_one_everywhere_by_hand() -> None:
    # G=3, two groups. Group 0 has spread (rewards 7, -1, -1: grpo would give sqrt2, -1/sqrt2, -1/sqrt2), group 1
    # is flat (all wrong: grpo gives 0, grpo++ the fallback -1). binary ignores the z-score: +1 correct, -1 wrong.
    acc = torch.tensor([7.0, -1.0, -1.0, -1.0, -1.0, -1.0])
    fmt = torch.tensor([1.0, 0.0, 1.0, 0.5, 0.0, 1.0])  # size of the other rewards does not matter either
    correct = correct_from_reward({"acc": acc, "fmt": fmt}, "acc", 1.0)
    adv, stats = compute_advantages(
        {"acc": acc, "fmt": fmt},
        {"acc": 1.0, "fmt": 1.0},
        3,
        AdvantageConfig(estimator="binary", correct_reward="acc"),
        correct=correct,
    )
    close(adv, [1.0, -1.0, -1.0, -1.0, -1.0, -1.0])
    assert stats["frac_binary_groups"] == 1.0 and stats["frac_correct"] == pytest.approx(1 / 6)
    assert stats["adv/mean"] == pytest.approx(-4 / 6) and stats["reward/acc/mean"] == pytest.approx(2 / 6)
    pp, _ = compute_advantages(
        {"acc": acc, "fmt": fmt},
        {"acc": 1.0, "fmt": 0.0},
        3,
        AdvantageConfig(estimator="grpo++", correct_reward="acc", std="population"),
        correct=correct,
    )
    r2 = math.sqrt(2)
    close(pp, [r2, -1 / r2, -1 / r2, -1.0, -1.0, -1.0], tol=1e-4)  # the first reading, for contrast


def test_binary_with_group_index_and_errors() -> None:
    acc = torch.tensor([0.0, 1.0, 1.0])
    adv, _ = compute_advantages(
        {"acc": acc},
        {"acc": 1.0},
        torch.tensor([5, 2, 5]),
        AdvantageConfig(estimator="binary"),
        correct=acc > 0.5,
    )
    close(adv, [-1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="'binary' needs the correct"):
        compute_advantages({"acc": acc}, {"acc": 1.0}, 3, AdvantageConfig(estimator="binary"))


def test_binary_recipe_needs_correct_reward() -> None:
    from training.config import load_config
    from training.trainers.rl_config import RLConfig

    recipe = "configs/grpopp_qwen2_toy.yaml"
    with pytest.raises(ConfigError, match="advantages.correct_reward: expected the name of a reward .binary"):
        load_config(RLConfig, recipe, ["--advantages.estimator=binary", "--advantages.correct_reward=null"])
    cfg = load_config(RLConfig, recipe, ["--advantages.estimator=binary"])
    assert cfg.advantages.estimator == "binary" and cfg.advantages.correct_reward == "toy_correct"
