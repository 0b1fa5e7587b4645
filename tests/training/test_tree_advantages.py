"""Tree-GRPO advantages against hand-computed values (Bessel std; flat groups give zero, a group of one passes its
reward through, as the authors' verl code does)."""

from __future__ import annotations

import math

import pytest
import torch

from training.objectives.advantages import AdvantageConfig, bessel_zscore, compute_advantages, tree_advantages


def test_bessel_zscore_by_hand():
    x = torch.tensor([1.0, 0.0, 1.0, 5.0, 2.0, 2.0])
    ids = torch.tensor([0, 0, 0, 1, 2, 2])  # a group of three, a group of one, a flat group
    sd = math.sqrt((1 / 9 + 4 / 9 + 1 / 9) / 2)  # mean 2/3, unbiased std
    want = [(1 / 3) / sd, (-2 / 3) / sd, (1 / 3) / sd, 5.0, 0.0, 0.0]
    assert bessel_zscore(x, ids, eps=0.0).tolist() == pytest.approx(want, abs=1e-6)


def test_tree_advantages_by_hand():
    # one prompt, two trees of three leaves; a second prompt with one tree of two leaves
    r = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    prompts = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    trees = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    inter_sd = math.sqrt(6 * 0.25 / 5)  # prompt 0: mean 0.5, six leaves
    a_sd = math.sqrt((1 / 9 + 4 / 9 + 1 / 9) / 2)  # tree 0: mean 2/3
    b_sd = math.sqrt((1 / 9 + 1 / 9 + 4 / 9) / 2)  # tree 1: mean 1/3
    p1_sd = math.sqrt(0.5)  # two leaves 1, 0: mean 0.5, unbiased var 0.5
    want = [
        0.5 / inter_sd + (1 / 3) / a_sd,
        -0.5 / inter_sd - (2 / 3) / a_sd,
        0.5 / inter_sd + (1 / 3) / a_sd,
        -0.5 / inter_sd + (-1 / 3) / b_sd,
        -0.5 / inter_sd + (-1 / 3) / b_sd,
        0.5 / inter_sd + (2 / 3) / b_sd,
        0.5 / p1_sd + 0.5 / p1_sd,
        -0.5 / p1_sd - 0.5 / p1_sd,
    ]
    adv, stats = tree_advantages(r, prompts, trees, eps=0.0)
    assert adv.tolist() == pytest.approx(want, abs=1e-6)
    assert stats["adv/intra_abs_mean"] > 0 and stats["adv/inter_abs_mean"] > 0


def test_estimator_entry_point_uses_the_weighted_signal_and_needs_trees():
    r = {"a": torch.tensor([1.0, 0.0, 1.0, 0.0]), "b": torch.tensor([0.0, 1.0, 0.0, 3.0])}
    cfg = AdvantageConfig(estimator="tree", eps=1e-6)
    adv, stats = compute_advantages(
        r, {"a": 1.0, "b": 0.5}, torch.zeros(4, dtype=torch.long), cfg, subgroups=torch.tensor([0, 0, 1, 1])
    )
    want, _ = tree_advantages(
        torch.tensor([1.0, 0.5, 1.0, 1.5]), torch.zeros(4), torch.tensor([0, 0, 1, 1]), 1e-6
    )
    assert torch.allclose(adv, want) and "adv/intra_abs_mean" in stats
    chains, _ = compute_advantages(
        r, {"a": 1.0, "b": 0.0}, torch.zeros(4, dtype=torch.long), cfg, subgroups=torch.arange(4)
    )  # one leaf per tree: the intra-tree part is the leaf's own reward (the reference's lone-sample rule)
    inter = bessel_zscore(r["a"], torch.zeros(4, dtype=torch.long), 1e-6)
    assert torch.allclose(chains, inter + r["a"] / (1 + 1e-6))
    with pytest.raises(ValueError, match="tree index"):
        compute_advantages(r, {"a": 1.0, "b": 0.5}, torch.zeros(4, dtype=torch.long), cfg)
