"""Tree-GRPO trees: their shape (the recipe's `rollout:` section), nodes, paths and the expansion policy.

Tree-GRPO ("Tree Search for LLM Agent RL", 2025): a node is one whole think-act-observe step (the model's turn and
the environment's answer). Per prompt, M trees; each starts as one full chain; then L rounds, each expanding N
nodes per tree, chosen among the root and the non-terminal nodes (uniformly by default), by continuing from that
node to a terminal one. K leaves per tree are kept (K <= 1 + N*L); each kept leaf becomes one row of the
`RolloutBatch`: the path root -> leaf, model tokens trained (mask 1), observation tokens inputs only (mask 0).
Chains (``strategy: group`` with an environment) are the same machinery with L = 0.

The parts: this module (the data structure and which nodes grow); `training.rollout.tree_decode` (running branches to
terminal nodes on cached paths); `training.rollout.tree_sampler` (a step's trees -> `RolloutBatch`); `training.objectives.tree_pack`
(each tree encoded once for the loss forward); `training.rollout.tree_io` (trees on disk for the app's viewer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from training.config import check
from training.rollout.engine import SamplingConfig


@dataclass
class TreeConfig:
    """Tree shape (Tree-GRPO, Ji et al. 2025, "Tree Search for LLM Agent Reinforcement Learning"): the recipe's
    `rollout.tree:` section.

    Fields:
        m (int, default 2): trees per prompt (the paper's M).
        n (int, default 2): nodes expanded per tree in each round (N).
        l (int, default 1): expansion rounds (L); a tree has 1 + n*l leaves.
        k (int | None, default None): leaves kept per tree for the loss (K); None keeps every leaf.
        expand (str, default "internal"): which nodes may be expanded: `internal`, non-terminal nodes below the
            root (every branch shares at least the first turn: 1.5 trajectories per chain's tokens at the default
            shape); `uniform`, the root too (the paper's choice among all nodes; a branch from the root is a whole
            new chain: 1.33). The default since `medrl clinical tree-ablate --arms tree,tree:uniform` showed no
            difference beyond the seed noise (docs/methods/tree_grpo.md).
    """

    m: int = 2  # trees per prompt
    n: int = 2  # nodes expanded per tree in each round
    l: int = 1  # noqa: E741 (the paper's name) expansion rounds
    k: int | None = None  # None: every leaf (1 + n*l)
    # internal: non-terminal nodes below the root; uniform: the root too
    expand: Literal["uniform", "internal"] = "internal"

    @property
    def leaves(self) -> int:
        return 1 + self.n * self.l

    @property
    def kept(self) -> int:
        return self.leaves if self.k is None else self.k

    def validate(self, key: str = "rollout.tree") -> None:
        check(self.m >= 1, f"{key}.m", "an integer >= 1", self.m)
        check(self.n >= 0 and self.l >= 0, f"{key}.n/l", "integers >= 0", (self.n, self.l))
        check(
            self.k is None or 1 <= self.k <= self.leaves,
            f"{key}.k",
            f"null or an integer in [1, 1+n*l={self.leaves}]",
            self.k,
        )


@dataclass
class RolloutConfig(SamplingConfig):
    """The RL recipe's `rollout:` section: the sampler's settings (SamplingConfig) plus the strategy and the
    environment. `max_new_tokens` caps each model turn; `max_turns` caps a trajectory whatever the environment says.

    Fields:
        strategy (str, default "group"): `group`, G independent samples per prompt (chains when there is an
            environment); `tree`, Tree-GRPO trees (needs an environment: tree nodes are its turns).
        env (str | None, default None): a registered environment (training.rollout.env); None: single-turn completions.
        env_modules (list[str], default []): modules imported first, so they register their environment.
        env_args (dict, default {}): keyword arguments of the environment's factory.
        max_turns (int, default 4): model turns per trajectory at most.
        tree (TreeConfig, default TreeConfig()): the tree shape, read when strategy is `tree`.
    """

    strategy: Literal["group", "tree"] = "group"  # group: G independent samples (chains with an env); tree
    env: str | None = None  # a registered environment (training.rollout.env); None: single-turn completions
    env_modules: list[str] = field(default_factory=list)  # modules imported first (they register the env)
    env_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the environment's factory
    max_turns: int = 4  # model turns per trajectory at most
    tree: TreeConfig = field(default_factory=TreeConfig)  # the tree shape (strategy: tree)

    def validate(self, key: str = "rollout") -> None:
        super().validate(key)
        self.tree.validate(f"{key}.tree")
        check(self.max_turns >= 1, f"{key}.max_turns", "an integer >= 1", self.max_turns)
        if self.strategy == "tree":
            check(
                self.env is not None,
                f"{key}.env",
                "an environment name (tree nodes are environment turns)",
                self.env,
            )

    @property
    def multi_turn(self) -> bool:
        return self.env is not None


def rows_per_prompt(cfg: SamplingConfig) -> int:
    """Rows the sampler returns per prompt: M*K for trees, G otherwise."""
    if getattr(cfg, "strategy", "group") == "tree":
        return cfg.tree.m * cfg.tree.kept
    return cfg.num_generations


def max_model_tokens(cfg: SamplingConfig) -> int:
    """The most model (trained) tokens one row can hold: every turn at its cap."""
    return cfg.max_new_tokens * (cfg.max_turns if getattr(cfg, "env", None) else 1)


@dataclass
class Node:
    """One think-act-observe step (the root: the prompt)."""

    id: int
    parent: int | None
    depth: int
    tokens: list[int] = field(default_factory=list)  # the model's turn
    logprobs: list[float] = field(default_factory=list)
    obs_tokens: list[int] = field(default_factory=list)  # the observation after it (none on terminal nodes)
    action: str = ""
    observation: str = ""
    done: bool = False
    env_done: bool = False  # the environment ended it (else the turn cap did)
    info: dict = field(default_factory=dict)
    children: list[int] = field(default_factory=list)
    state: Any = None  # the path's cache while sampling (`training.rollout.tree_decode.PathCache`), then None
    env: Any = None


@dataclass
class Tree:
    """One tree of one prompt: nodes by id, node 0 the prompt, a node's parent always before it."""

    prompt: int  # index of its prompt in the step
    index: int  # global tree index in the step
    nodes: list[Node] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # kept leaf ids, in row order

    def leaves(self) -> list[int]:
        return [n.id for n in self.nodes if n.done]

    def path(self, leaf: int) -> list[Node]:
        """The nodes from below the root down to `leaf`, in order (the turns of its trajectory)."""
        out, nid = [], leaf
        while nid is not None and self.nodes[nid].parent is not None:
            out.append(self.nodes[nid])
            nid = self.nodes[nid].parent
        return out[::-1]


def choose(n: int, k: int, generator: torch.Generator | None) -> list[int]:
    """k indices of range(n), distinct when k <= n, by the sampling generator (reproducible)."""
    if k <= n:
        return sorted(
            torch.randperm(
                n, generator=generator, device="cpu" if generator is None else generator.device
            ).tolist()[:k]
        )
    return torch.randint(
        n, (k,), generator=generator, device="cpu" if generator is None else generator.device
    ).tolist()


def expansion_candidates(tree: Tree, cfg: TreeConfig) -> list[Node]:
    """The nodes a round may grow from: every node still holding its cache (the root and the non-terminal ones),
    without the root under ``expand: internal`` (unless nothing else is left)."""
    cands = [nd for nd in tree.nodes if nd.state is not None]
    if cfg.expand == "internal" and len(cands) > 1:
        cands = cands[1:]
    return cands
