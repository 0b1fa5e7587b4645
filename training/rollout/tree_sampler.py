"""A Tree-GRPO step's rollouts: records -> environments -> trees (or chains) -> one `RolloutBatch`.

The trees' shape and expansion policy are `training.rollout.tree`'s; their decoding is `training.rollout.tree_decode`'s. Rows are
the kept leaves, grouped by prompt (`group_index`) and by tree (`tree_index`); each row is its path's turns and
observations, the model's tokens trained (mask 1), the observations' fed only (mask 0).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from training.data.batch import PromptInputs, RolloutBatch, encode_prompts
from training.errors import MedrlError
from training.rollout.engine import decoding, eval_mode
from training.rollout.env import OBSERVATION, make_env, with_first_observation
from training.rollout.merged_lora import merged_lora
from training.rollout.tree import Node, RolloutConfig, Tree, TreeConfig, choose, expansion_candidates
from training.rollout.tree_decode import Branch, BranchDecoder, Counters


def _initial_prompts(
    processor: Any, records: Sequence[dict], envs: list[Any], is_vlm: bool
) -> list[PromptInputs]:
    """Each record's prompt with the environment's first observation appended to its last user message."""
    from training.data.records import load_images
    from training.models.chat import render

    texts = []
    for rec, env in zip(records, envs):
        msgs = with_first_observation(rec["prompt"], env.reset(rec))
        texts.append(render(processor, msgs, add_generation_prompt=True))
    images = [load_images(r.get("images", [])) for r in records] if is_vlm else None
    return encode_prompts(processor, texts, images)


def sample_trees(
    model: torch.nn.Module,
    processor: Any,
    records: Sequence[dict],
    cfg: RolloutConfig,
    generator: torch.Generator | None = None,
    is_vlm: bool = False,
) -> RolloutBatch:
    """Multi-turn rollouts for `records`: trees (``strategy: tree``) or G independent chains (``group``).

    Rows are grouped by prompt (`group_index`) and by tree (`tree_index`); `infos` holds each row's last
    environment info; `trees` the trees themselves; `stats` the counters and per-trajectory means.
    """
    cfg.validate()
    if cfg.env is None:
        raise MedrlError("rollout.env: multi-turn rollouts need an environment")
    tree_cfg = cfg.tree if cfg.strategy == "tree" else TreeConfig(m=cfg.num_generations, n=0, l=0, k=None)
    d = decoding(model, processor, cfg, generator)
    device, generator = d.device, d.generator
    envs = [make_env(cfg.env, cfg.env_modules, **cfg.env_args) for _ in records]
    prompts = [p.to(device) for p in _initial_prompts(processor, records, envs, is_vlm)]
    engine = BranchDecoder(d, cfg)
    trees: list[Tree] = []
    with eval_mode(model), merged_lora(model, cfg.merge_lora):
        branches = []
        for pi, (prompt, env) in enumerate(zip(prompts, envs)):
            with torch.inference_mode():
                root_state = engine.root(prompt)
            for _ in range(tree_cfg.m):
                tree = Tree(pi, len(trees), [Node(0, None, 0, state=root_state, env=copy.deepcopy(env))])
                trees.append(tree)
                branches.append(Branch(tree, 0, root_state, copy.deepcopy(env)))
        engine.run(branches)
        for _ in range(tree_cfg.l):
            branches = []
            for tree in trees:
                cands = expansion_candidates(tree, tree_cfg)
                for i in choose(len(cands), tree_cfg.n, generator):
                    nd = cands[i]
                    branches.append(Branch(tree, nd.id, nd.state, copy.deepcopy(nd.env)))
            engine.run(branches)
    for tree in trees:
        leaves = tree.leaves()
        keep = tree_cfg.kept if tree_cfg.k is not None else len(leaves)
        tree.kept = [leaves[i] for i in choose(len(leaves), min(keep, len(leaves)), generator)]
        for nd in tree.nodes:  # free the caches: only the tokens are needed from here on
            nd.state, nd.env = None, None
    return _to_batch(trees, prompts, d.tokenizer, d.pad_id, cfg, engine.count, device)


def _to_batch(
    trees: list[Tree],
    prompts: list[PromptInputs],
    tokenizer: Any,
    pad_id: int,
    cfg: RolloutConfig,
    count: Counters,
    device: torch.device,
) -> RolloutBatch:
    """One row per kept leaf, tree by tree: its path's model tokens (mask 1, their log-probs) and observation tokens
    (mask 0), its text, its last environment info; the counters and per-trajectory means as `stats`."""
    rows_ids, rows_mask, rows_lp, texts, group, tree_idx, infos, truncated = [], [], [], [], [], [], [], []
    for tree in trees:
        for leaf in tree.kept:
            ids, mask, lps, text = [], [], [], ""
            path = tree.path(leaf)
            for nd in path:
                ids += nd.tokens + nd.obs_tokens
                mask += [True] * len(nd.tokens) + [False] * len(nd.obs_tokens)
                lps += nd.logprobs + [0.0] * len(nd.obs_tokens)
                text += tokenizer.decode(nd.tokens, skip_special_tokens=True)
                if nd.obs_tokens:
                    text += OBSERVATION.format(nd.observation)
            rows_ids.append(ids)
            rows_mask.append(mask)
            rows_lp.append(lps)
            texts.append(text)
            group.append(tree.prompt)
            tree_idx.append(tree.index)
            infos.append({**path[-1].info, "turns_taken": len(path)})
            truncated.append(not path[-1].env_done)
    n, t = len(rows_ids), max(len(x) for x in rows_ids)
    ids = torch.full((n, t), pad_id, dtype=torch.long)
    mask = torch.zeros((n, t), dtype=torch.bool)
    lp = torch.zeros((n, t), dtype=torch.float32)
    for i, (a, b, c) in enumerate(zip(rows_ids, rows_mask, rows_lp)):
        ids[i, : len(a)] = torch.tensor(a)
        mask[i, : len(b)] = torch.tensor(b)
        lp[i, : len(c)] = torch.tensor(c)
    stats = {
        "rollout/tokens_generated": float(count.tokens_generated),
        "rollout/tokens_encoded": float(count.tokens_encoded),
        "rollout/env_calls": float(count.env_calls),
        "rollout/trajectories": float(n),
        "rollout/tokens_per_trajectory": float(mask.sum()) / max(n, 1),
        "rollout/turns_per_trajectory": sum(x["turns_taken"] for x in infos) / max(n, 1),
    }
    for key, name in (("questions", "questions_asked"), ("answered", "answer_rate")):
        vals = [float(x[key]) for x in infos if key in x]
        if vals:
            stats[f"rollout/{name}"] = sum(vals) / len(vals)
    batch = RolloutBatch(
        list(prompts),
        ids.to(device),
        mask.to(device),
        torch.tensor(group, device=device),
        int(pad_id),
        lp.to(device),
        texts,
        torch.tensor(truncated, device=device),
        cfg.logprob_temperature,
    )
    batch.tree_index = torch.tensor(tree_idx, device=device)
    batch.infos, batch.trees, batch.stats = infos, trees, stats
    return batch


def global_tree_index(dist: Any, tree_index: torch.Tensor) -> torch.Tensor:
    """Every process's tree ids, in rank order, numbered apart (the rows the gathered rewards line up with)."""
    parts, out, offset = dist.gather(tree_index), [], 0
    for t in parts:
        out.append(t + offset)
        offset += int(t.max()) + 1 if t.numel() else 0
    return torch.cat(out)
