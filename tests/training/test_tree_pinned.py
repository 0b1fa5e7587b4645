"""A small Tree-GRPO step pinned token by token: the sampler must draw the very same trees for a fixed seed.

The decode engine, its cache and its EOS / stop-string logic can be rearranged only if the trees stay identical;
this test pins one tree step on the embedded Qwen2 against the case environment, with EOS on and a frequent stop
string, so a turn ends by the cap, by EOS and by a stop string, and branches restart from inner nodes' caches.
"""

from __future__ import annotations

import pytest
import torch

from clinical.cases import make_case_records
from training.rollout.tree import RolloutConfig, TreeConfig
from training.rollout.tree_sampler import sample_trees

# (node id, parent id, model-turn token ids) of every non-root node of every tree, in tree order
PINNED: list[list[tuple[int, int, list[int]]]] = [
    [
        (1, 0, [32, 284, 79, 1388, 88]),
        (2, 1, [2049]),
        (3, 2, [32, 282, 1643, 265, 1853]),
        (4, 0, [82, 88, 659, 491]),
        (5, 1, [56, 272, 486, 259]),
        (6, 4, [6, 220, 17, 15, 15]),
        (7, 5, [1023]),
        (8, 6, [755, 11, 1016]),
    ],
    [
        (1, 0, [32, 597, 1642]),
        (2, 1, [1361]),
        (3, 2, [75, 1027, 88, 13, 428]),
        (4, 0, [32, 421, 198, 1597]),
        (5, 2, [761, 11, 1885]),
        (6, 4, [71, 1198, 72, 1029, 74]),
        (7, 6, [2050, 82, 88, 2049]),
    ],
    [
        (1, 0, [407, 88, 281, 355, 220]),
        (2, 1, [1695]),
        (3, 2, [307, 334, 507, 535, 88]),
        (4, 1, [741, 220, 19, 385, 276]),
        (5, 2, [259]),
        (6, 4, [579, 359, 654, 385, 758]),
    ],
    [
        (1, 0, [17, 468, 1015]),
        (2, 1, [2049]),
        (3, 2, [679, 343, 302]),
        (4, 0, [70, 71, 1879, 11, 84]),
        (5, 2, [66, 1551, 1127]),
        (6, 4, [66, 56, 272, 486, 259]),
        (7, 6, [728, 1208, 349, 348, 75]),
    ],
]
PINNED_KEPT: list[list[int]] = [[7, 8], [3, 5], [3, 6], [5, 7]]


@pytest.fixture(scope="module")
def policy(one_thread):
    from training.config import ModelConfig
    from training.models.loading import load_policy

    return load_policy(ModelConfig(name="embedded:qwen2"))


def _sample(policy):
    cfg = RolloutConfig(
        num_generations=2,
        max_new_tokens=5,
        strategy="tree",
        env="clinical_case",
        env_modules=["clinical.cases"],
        env_args={"max_turns": 3},
        max_turns=3,
        stop_strings=["</ask>", "</answer>", "e"],
        tree=TreeConfig(m=2, n=2, l=1, k=2, expand="uniform"),  # pinned before `internal` became the default
    )
    recs = make_case_records(2, seed=3)
    return sample_trees(policy.model, policy.processor, recs, cfg, torch.Generator().manual_seed(7))


def test_a_seeded_tree_step_is_pinned(policy):
    b = _sample(policy)
    got = [[(n.id, n.parent, n.tokens) for n in tree.nodes[1:]] for tree in b.trees]
    assert got == PINNED
    assert [tree.kept for tree in b.trees] == PINNED_KEPT
