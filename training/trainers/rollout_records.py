"""What the policy sampled, for people to read: RUN/rollouts/step-N.jsonl, a bounded sample of each RL step.

A reward curve says how much, never what: a reviewer needs the completions themselves, next to the parts of the
reward that scored them and the advantage they got, grouped as the advantages compared them. So every RL step writes
its first `run.log_rollouts` groups (all G completions of each; 0 writes nothing), one JSON object a completion:

    {"step", "group", "row", "prompt", "images", "answer", "completion", "rewards": {name: raw},
     "weighted": {name: weight x raw}, "reward", "advantage", "tree"?}

`prompt` is the last user turn's text (the question as the model saw it), `answer` the record's gold answer, `tree`
the Tree-GRPO tree a row belongs to (its nodes are in trees/step-N.jsonl). Written atomically by the main process,
from its own rows; `training` knows no domain, so a KG check of the completions is the reader's (the app's) to add.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from training.data.records import write_jsonl


def last_user_text(prompt: Any) -> str:
    """The text of the last user message of a chat prompt (its text parts joined), or the prompt if it is a string."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(prompt or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return " ".join(p.get("text", "") for p in content or [] if p.get("type") == "text").strip()
    return ""


def rollout_rows(
    step: int,
    records: list[dict],
    texts: list[str],
    group_index: torch.Tensor,
    rewards: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    advantages: torch.Tensor,
    groups: int,
    tree_index: torch.Tensor | None = None,
) -> list[dict]:
    """The rows of the first ``groups`` groups (record order): one per completion, see the module docstring.

    ``group_index`` (N,) maps each completion row to its record; ``rewards`` {name: (N,)} and ``advantages`` (N,) are
    this process's rows in the same order."""
    gi = group_index.cpu().tolist()
    raw = {name: r.detach().float().cpu().tolist() for name, r in rewards.items()}
    adv = advantages.detach().float().cpu().tolist()
    trees = tree_index.cpu().tolist() if tree_index is not None else None
    out = []
    for row, g in enumerate(gi):
        if g >= groups:
            continue
        rec = records[g]
        parts = {name: raw[name][row] for name in raw}
        weighted = {name: weights[name] * v for name, v in parts.items()}
        item = {
            "step": step,
            "group": g,
            "row": row,
            "prompt": last_user_text(rec.get("prompt")),
            "images": [str(p) for p in rec.get("images") or []],
            "answer": rec.get("answer"),
            "completion": texts[row],
            "rewards": parts,
            "weighted": weighted,
            "reward": sum(weighted.values()),
            "advantage": adv[row],
        }
        if trees is not None:
            item["tree"] = trees[row]
        out.append(item)
    return out


def write_rollouts(path: Path, rows: list[dict]) -> Path:
    """RUN/rollouts/step-N.jsonl, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)
    return path
