"""Trees on disk: `RUN/trees/step-N.jsonl`, one tree per line, the layout the app's tree viewer draws.

Each node carries its parent, its text (the model's turn and the observation after it), its token count and the
reward and advantage of the kept leaves below it, so a reader sees where a tree branched and which branch paid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.atomic import atomic_jsonl
from training.data.batch import RolloutBatch
from training.rollout.env import OBSERVATION
from training.rollout.tree import Tree


def tree_json(
    tree: Tree,
    rewards: dict[int, float] | None = None,
    advantages: dict[int, float] | None = None,
    step: int | None = None,
) -> dict:
    """Nodes with parents, text, and per-node reward/advantage (a leaf's own; an inner node's: the mean over
    its kept leaves below), the layout the app's tree viewer reads."""
    rewards, advantages = rewards or {}, advantages or {}
    below: dict[int, list[int]] = {n.id: [] for n in tree.nodes}
    for leaf in tree.kept:
        nid: int | None = leaf
        while nid is not None:
            below[nid].append(leaf)
            nid = tree.nodes[nid].parent

    def mean(vals: dict[int, float], ids: list[int]) -> float | None:
        got = [vals[i] for i in ids if i in vals]
        return sum(got) / len(got) if got else None

    nodes = []
    for n in tree.nodes:
        text = n.action + (OBSERVATION.format(n.observation) if n.observation else "")
        nodes.append(
            {
                "id": n.id,
                "parent": n.parent,
                "depth": n.depth,
                "text": text if n.parent is not None else "(prompt)",
                "tokens": len(n.tokens),
                "leaf": n.done,
                "kept": n.id in tree.kept,
                "reward": mean(rewards, below[n.id]),
                "advantage": mean(advantages, below[n.id]),
                "info": n.info,
            }
        )
    return {"step": step, "prompt": tree.prompt, "tree": tree.index, "nodes": nodes}


def save_trees(
    path: str | Path,
    batch: RolloutBatch,
    tokenizer: Any,
    step: int,
    rewards: torch.Tensor,
    advantages: torch.Tensor,
) -> Path:
    """`trees/step-N.jsonl`: one tree per line (see `tree_json`); rewards/advantages are the batch rows'.
    The node texts are already decoded: `tokenizer` is not read."""
    path = Path(path)
    r, a = rewards.detach().float().cpu().tolist(), advantages.detach().float().cpu().tolist()
    row = 0
    with atomic_jsonl(path.parent, [path.stem]) as files:
        for tree in batch.trees:
            rw, ad = {}, {}
            for leaf in tree.kept:
                rw[leaf], ad[leaf] = r[row], a[row]
                row += 1
            files.write(path.stem, tree_json(tree, rw, ad, step))
    return Path(files.paths[path.stem])
