"""Multi-turn rollouts against an environment (`training.env`), as independent chains or as Tree-GRPO trees.

Tree-GRPO ("Tree Search for LLM Agent RL", 2025): a node is one whole think-act-observe step (the model's turn and
the environment's answer). Per prompt, M trees; each starts as one full chain; then L rounds, each expanding N
nodes per tree, chosen among the root and the non-terminal nodes (uniformly by default), by continuing from that
node to a terminal one. K leaves per tree are kept (K <= 1 + N*L); each kept leaf becomes one row of the
`RolloutBatch`: the path root -> leaf, model tokens trained (mask 1), observation tokens inputs only (mask 0).
Chains (``strategy: group`` with an environment) are the same machinery with L = 0.

Decoding is batched over every open branch of every prompt. Each node keeps the key/value cache of its path (views
of the cache tensors, which later steps never modify in place), so a branch starts from its node's cache: its
ancestors are never encoded again. Branches of different lengths share one cache with left padding and holes
(turns that ended early, shorter observations), all masked out by a 2-D attention mask; positions are explicit and
continue along each path. Counted per call: tokens generated, tokens encoded (prompts and observations fed to the
model), environment calls.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from training.batch import (
    PromptInputs,
    RolloutBatch,
    encode_prompts,
    model_device,
    prompt_positions,
    unwrap_model,
)
from training.config import check
from training.env import OBSERVATION, make_env, with_first_observation
from training.errors import MedrlError
from training.models import disable_cpu_bf16_repack
from training.rollout import SamplingConfig, eos_ids, never_sampled_ids, sample_next


@dataclass
class TreeConfig:
    """Tree shape: `m` trees per prompt, `l` rounds expanding `n` nodes per tree, `k` leaves kept per tree."""

    m: int = 2
    n: int = 2
    l: int = 1  # noqa: E741 (the paper's name)
    k: int | None = None  # None: every leaf (1 + n*l)
    expand: Literal["uniform", "internal"] = "uniform"  # uniform: root + non-terminal nodes; internal: without root

    @property
    def leaves(self) -> int:
        return 1 + self.n * self.l

    @property
    def kept(self) -> int:
        return self.leaves if self.k is None else self.k

    def validate(self, key: str = "rollout.tree") -> None:
        check(self.m >= 1, f"{key}.m", "an integer >= 1", self.m)
        check(self.n >= 0 and self.l >= 0, f"{key}.n/l", "integers >= 0", (self.n, self.l))
        check(self.k is None or 1 <= self.k <= self.leaves, f"{key}.k", f"null or an integer in [1, 1+n*l="
              f"{self.leaves}]", self.k)


@dataclass
class RolloutConfig(SamplingConfig):
    """The RL recipe's `rollout:` section: the sampler's settings plus the strategy and the environment.

    ``max_new_tokens`` caps each model turn; ``max_turns`` caps a trajectory whatever the environment says.
    """

    strategy: Literal["group", "tree"] = "group"
    env: str | None = None  # a registered environment (training.env); None: single-turn completions
    env_modules: list[str] = field(default_factory=list)
    env_args: dict[str, Any] = field(default_factory=dict)
    max_turns: int = 4
    tree: TreeConfig = field(default_factory=TreeConfig)

    def validate(self, key: str = "rollout") -> None:
        super().validate(key)
        self.tree.validate(f"{key}.tree")
        check(self.max_turns >= 1, f"{key}.max_turns", "an integer >= 1", self.max_turns)
        if self.strategy == "tree":
            check(self.env is not None, f"{key}.env", "an environment name (tree nodes are environment turns)",
                  self.env)

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


# ---------------------------------------------------------------------------------------------- nodes
@dataclass
class _KV:
    """One path's cache, excluding its last token (`pending`, fed with the next step) at position `pos`."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]  # (heads, S, dim) per layer
    valid: torch.Tensor  # (S,) bool: False on padding and holes
    pending: int
    pos: int


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
    state: _KV | None = None
    env: Any = None


@dataclass
class Tree:
    prompt: int  # index of its prompt in the step
    index: int  # global tree index in the step
    nodes: list[Node] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # kept leaf ids, in row order

    def leaves(self) -> list[int]:
        return [n.id for n in self.nodes if n.done]

    def path(self, leaf: int) -> list[Node]:
        out, nid = [], leaf
        while nid is not None and self.nodes[nid].parent is not None:
            out.append(self.nodes[nid])
            nid = self.nodes[nid].parent
        return out[::-1]

    def to_json(self, tokenizer: Any, rewards: dict[int, float] | None = None,
                advantages: dict[int, float] | None = None, step: int | None = None) -> dict:
        """Nodes with parents, text, and per-node reward/advantage (a leaf's own; an inner node's: the mean over
        its kept leaves below), the layout the app's tree viewer reads."""
        rewards, advantages = rewards or {}, advantages or {}
        below: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for leaf in self.kept:
            nid: int | None = leaf
            while nid is not None:
                below[nid].append(leaf)
                nid = self.nodes[nid].parent

        def mean(vals: dict[int, float], ids: list[int]) -> float | None:
            got = [vals[i] for i in ids if i in vals]
            return sum(got) / len(got) if got else None

        nodes = []
        for n in self.nodes:
            text = n.action + (OBSERVATION.format(n.observation) if n.observation else "")
            nodes.append({"id": n.id, "parent": n.parent, "depth": n.depth, "text": text if n.parent is not None
                          else "(prompt)", "tokens": len(n.tokens), "leaf": n.done, "kept": n.id in self.kept,
                          "reward": mean(rewards, below[n.id]), "advantage": mean(advantages, below[n.id]),
                          "info": n.info})
        return {"step": step, "prompt": self.prompt, "tree": self.index, "nodes": nodes}


@dataclass
class _Branch:
    tree: Tree
    parent: int  # node id it continues from
    state: _KV
    env: Any


# ---------------------------------------------------------------------------------------------- decoding
class _Stops:
    def __init__(self, tokenizer: Any, stops: Sequence[str], eos: set[int]):
        self.tokenizer, self.stops, self.eos = tokenizer, [s for s in stops if s], eos
        self.window = max((len(s) for s in self.stops), default=0) + 2

    def hit(self, tokens: list[int]) -> bool:
        if tokens[-1] in self.eos:
            return True
        if not self.stops:
            return False
        tail = self.tokenizer.decode(tokens[-self.window:], skip_special_tokens=False)
        return any(s in tail for s in self.stops)

    def text(self, tokens: list[int]) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        ends = [text.find(s) + len(s) for s in self.stops if s in text]
        return text[: min(ends)] if ends else text


@dataclass
class Counters:
    tokens_generated: int = 0
    tokens_encoded: int = 0
    env_calls: int = 0


class _Engine:
    """Runs branches to terminal nodes, batched; see the module docstring for the cache layout."""

    def __init__(self, base: torch.nn.Module, tokenizer: Any, cfg: RolloutConfig, generator: torch.Generator | None,
                 eos: set[int], pad_id: int):
        self.base, self.tok, self.cfg, self.gen, self.pad = base, tokenizer, cfg, generator, pad_id
        self.stops = _Stops(tokenizer, cfg.stop_strings, eos)
        self.device = model_device(base)
        self.banned = never_sampled_ids(base, self.device)
        self.count = Counters()
        self.mrope = hasattr(getattr(base, "model", None), "get_rope_index")

    def _positions(self, pos: torch.Tensor) -> torch.Tensor:
        """(B, C) text positions -> the model's position_ids ((3, B, C) for mRoPE: all rows equal after the prompt)."""
        return pos[None].expand(3, *pos.shape) if self.mrope else pos

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, attn: torch.Tensor, cache: Any) -> Any:
        return self.base(input_ids=ids, position_ids=self._positions(pos), attention_mask=attn, cache=cache,
                         use_cache=True, logits_to_keep=1)

    def root(self, prompt: PromptInputs) -> _KV:
        """Prefill the prompt but its last token, once; every tree of the prompt starts from this cache."""
        p = len(prompt)
        if p < 2:
            raise ValueError("multi-turn rollouts need prompts of at least 2 tokens")
        pos = prompt_positions(self.base, prompt)
        kwargs: dict[str, Any] = {}
        if prompt.pixel_values is not None:
            kwargs.update(pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw)
        pre = pos[..., : p - 1]
        out = self.base(input_ids=prompt.input_ids[None, : p - 1], position_ids=pre[:, None] if pre.dim() == 2
                        else pre[None], use_cache=True, logits_to_keep=1, **kwargs)
        self.count.tokens_encoded += p - 1
        layers = [(lay.keys[0], lay.values[0]) for lay in out.cache.layers]
        return _KV(layers, torch.ones(p - 1, dtype=torch.bool, device=self.device), int(prompt.input_ids[-1]),
                   int(pos[..., -1].max()))

    def _stack(self, states: list[_KV]) -> tuple[Any, torch.Tensor]:
        """One left-padded batch cache (and its key mask) from per-path caches."""
        from transformers import DynamicCache

        s = max(st.valid.shape[0] for st in states)
        data = []
        for li in range(len(states[0].layers)):
            k0 = states[0].layers[li][0]
            h, d = k0.shape[0], k0.shape[-1]
            ks = k0.new_zeros(len(states), h, s, d)
            vs = k0.new_zeros(len(states), h, s, states[0].layers[li][1].shape[-1])
            for b, st in enumerate(states):
                n = st.valid.shape[0]
                ks[b, :, s - n:] = st.layers[li][0]
                vs[b, :, s - n:] = st.layers[li][1]
            data.append((ks, vs))
        valid = torch.zeros(len(states), s, dtype=torch.long, device=self.device)
        for b, st in enumerate(states):
            valid[b, s - st.valid.shape[0]:] = st.valid.long()
        return DynamicCache(ddp_cache_data=data), valid

    @torch.inference_mode()
    def run(self, branches: list[_Branch]) -> None:
        """Continue every branch turn by turn until it reaches a terminal node (added to its tree)."""
        if not branches:
            return
        cache, attn = self._stack([b.state for b in branches])
        pending = torch.tensor([b.state.pending for b in branches], device=self.device)
        pos = torch.tensor([b.state.pos for b in branches], device=self.device)
        parents = [b.parent for b in branches]
        envs = [b.env for b in branches]
        live = list(branches)
        while live:
            bsz = len(live)
            alive = torch.ones(bsz, dtype=torch.bool, device=self.device)
            toks: list[list[int]] = [[] for _ in range(bsz)]
            lps: list[list[float]] = [[] for _ in range(bsz)]
            for _ in range(self.cfg.max_new_tokens):
                attn = torch.cat([attn, alive.long()[:, None]], 1)
                out = self._forward(pending[:, None], pos[:, None], attn, cache)
                cache = out.cache
                logits = out.logits[:, -1].float()
                if not bool(torch.isfinite(logits).all()):
                    raise MedrlError("the policy's logits are not finite while sampling: the weights have diverged")
                nxt = sample_next(logits, self.cfg, self.gen, self.banned)
                lp = torch.log_softmax(logits / self.cfg.logprob_temperature, -1).gather(-1, nxt[:, None])[:, 0]
                pending = torch.where(alive, nxt, pending)
                pos = pos + alive.long()
                nl, ll = nxt.tolist(), lp.tolist()
                for r in alive.nonzero().flatten().tolist():
                    toks[r].append(nl[r])
                    lps[r].append(ll[r])
                    self.count.tokens_generated += 1
                    if self.stops.hit(toks[r]):
                        alive[r] = False
                if not bool(alive.any()):
                    break
            # the environment answers each turn; terminal rows leave the batch
            keep, chunks = [], []
            for r, br in enumerate(live):
                tree = br.tree
                parent = tree.nodes[parents[r]]
                node = Node(len(tree.nodes), parent.id, parent.depth + 1, toks[r], lps[r],
                            action=self.stops.text(toks[r]))
                obs, done, info = envs[r].step(node.action)
                self.count.env_calls += 1
                node.info = dict(info)
                node.env_done = bool(done)
                node.done = bool(done) or node.depth >= self.cfg.max_turns
                tree.nodes.append(node)
                parent.children.append(node.id)
                parents[r] = node.id
                if not node.done:
                    node.observation = obs
                    node.obs_tokens = self.tok.encode(OBSERVATION.format(obs), add_special_tokens=False)
                    keep.append(r)
                    chunks.append([int(pending[r])] + node.obs_tokens[:-1])
            if not keep:
                break
            idx = torch.tensor(keep, device=self.device)
            if len(keep) < bsz:
                cache.batch_select_indices(idx)
                attn, pending, pos = attn[idx], pending[idx], pos[idx]
                live, parents, envs = [live[r] for r in keep], [parents[r] for r in keep], [envs[r] for r in keep]
            # feed the observations (the model's last token first), padded to the longest; pads are masked out
            c = max(len(x) for x in chunks)
            ids = torch.full((len(keep), c), self.pad, dtype=torch.long, device=self.device)
            feed = torch.zeros(len(keep), c, dtype=torch.long, device=self.device)
            for i, x in enumerate(chunks):
                ids[i, : len(x)] = torch.tensor(x, device=self.device)
                feed[i, : len(x)] = 1
            steps = torch.arange(c, device=self.device)[None]
            lens = feed.sum(1)
            self._forward(ids, pos[:, None] + steps * feed, torch.cat([attn, feed], 1), cache)
            self.count.tokens_encoded += int(lens.sum())
            attn = torch.cat([attn, feed], 1)
            pos = pos + lens
            for i, br in enumerate(live):
                node = br.tree.nodes[parents[i]]
                pending[i] = node.obs_tokens[-1]
                s = attn.shape[1]
                node.state = _KV([(lay.keys[i], lay.values[i]) for lay in cache.layers], attn[i, :s].bool(),
                                 int(pending[i]), int(pos[i]))
                node.env = copy.deepcopy(envs[i])


# ---------------------------------------------------------------------------------------------- sampling
def _initial_prompts(processor: Any, records: Sequence[dict], envs: list[Any], is_vlm: bool) -> list[PromptInputs]:
    """Each record's prompt with the environment's first observation appended to its last user message."""
    from training.chat import render
    from training.data import load_images

    texts = []
    for rec, env in zip(records, envs):
        msgs = with_first_observation(rec["prompt"], env.reset(rec))
        texts.append(render(processor, msgs, add_generation_prompt=True))
    images = [load_images(r.get("images", [])) for r in records] if is_vlm else None
    return encode_prompts(processor, texts, images)


def _choose(n: int, k: int, generator: torch.Generator | None) -> list[int]:
    """k indices of range(n), distinct when k <= n, by the sampling generator (reproducible)."""
    if k <= n:
        return sorted(torch.randperm(n, generator=generator, device="cpu" if generator is None
                                     else generator.device).tolist()[:k])
    return torch.randint(n, (k,), generator=generator, device="cpu" if generator is None
                         else generator.device).tolist()


def sample_trees(model: torch.nn.Module, processor: Any, records: Sequence[dict], cfg: RolloutConfig,
                 generator: torch.Generator | None = None, is_vlm: bool = False) -> RolloutBatch:
    """Multi-turn rollouts for `records`: trees (``strategy: tree``) or G independent chains (``group``).

    Rows are grouped by prompt (`group_index`) and by tree (`tree_index`); `infos` holds each row's last
    environment info; `trees` the trees themselves; `stats` the counters and per-trajectory means.
    """
    cfg.validate()
    if cfg.env is None:
        raise MedrlError("rollout.env: multi-turn rollouts need an environment")
    tree_cfg = cfg.tree if cfg.strategy == "tree" else TreeConfig(m=cfg.num_generations, n=0, l=0, k=None)
    base = unwrap_model(model)
    tokenizer = getattr(processor, "tokenizer", processor)
    eos = eos_ids(base, tokenizer, cfg)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
    device = model_device(base)
    if generator is None and cfg.seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    disable_cpu_bf16_repack(base)
    envs = [make_env(cfg.env, cfg.env_modules, **cfg.env_args) for _ in records]
    prompts = [p.to(device) for p in _initial_prompts(processor, records, envs, is_vlm)]
    was_training = model.training
    model.eval()
    engine = _Engine(base, tokenizer, cfg, generator, eos, pad_id)
    trees: list[Tree] = []
    try:
        branches = []
        for pi, (prompt, env) in enumerate(zip(prompts, envs)):
            with torch.inference_mode():
                root_state = engine.root(prompt)
            for _ in range(tree_cfg.m):
                tree = Tree(pi, len(trees), [Node(0, None, 0, state=root_state, env=copy.deepcopy(env))])
                trees.append(tree)
                branches.append(_Branch(tree, 0, root_state, copy.deepcopy(env)))
        engine.run(branches)
        for _ in range(tree_cfg.l):
            branches = []
            for tree in trees:
                cands = [nd for nd in tree.nodes if nd.state is not None]
                if tree_cfg.expand == "internal" and len(cands) > 1:
                    cands = cands[1:]
                for i in _choose(len(cands), tree_cfg.n, generator):
                    nd = cands[i]
                    branches.append(_Branch(tree, nd.id, nd.state, copy.deepcopy(nd.env)))
            engine.run(branches)
    finally:
        model.train(was_training)
    for tree in trees:
        leaves = tree.leaves()
        keep = tree_cfg.kept if tree_cfg.k is not None else len(leaves)
        tree.kept = [leaves[i] for i in _choose(len(leaves), min(keep, len(leaves)), generator)]
        for nd in tree.nodes:  # free the caches: only the tokens are needed from here on
            nd.state, nd.env = None, None
    return _to_batch(trees, prompts, tokenizer, pad_id, cfg, engine.count, device)


def _to_batch(trees: list[Tree], prompts: list[PromptInputs], tokenizer: Any, pad_id: int, cfg: RolloutConfig,
              count: Counters, device: torch.device) -> RolloutBatch:
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
    stats = {"rollout/tokens_generated": float(count.tokens_generated),
             "rollout/tokens_encoded": float(count.tokens_encoded), "rollout/env_calls": float(count.env_calls),
             "rollout/trajectories": float(n), "rollout/tokens_per_trajectory": float(mask.sum()) / max(n, 1),
             "rollout/turns_per_trajectory": sum(x["turns_taken"] for x in infos) / max(n, 1)}
    for key, name in (("questions", "questions_asked"), ("answered", "answer_rate")):
        vals = [float(x[key]) for x in infos if key in x]
        if vals:
            stats[f"rollout/{name}"] = sum(vals) / len(vals)
    batch = RolloutBatch(list(prompts), ids.to(device), mask.to(device), torch.tensor(group, device=device),
                         int(pad_id), lp.to(device), texts, torch.tensor(truncated, device=device),
                         cfg.logprob_temperature)
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


def save_trees(path: str | Path, batch: RolloutBatch, tokenizer: Any, step: int, rewards: torch.Tensor,
               advantages: torch.Tensor) -> Path:
    """`trees/step-N.jsonl`: one tree per line (see `Tree.to_json`); rewards/advantages are the batch rows'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    r, a = rewards.detach().float().cpu().tolist(), advantages.detach().float().cpu().tolist()
    row = 0
    lines = []
    for tree in batch.trees:
        rw, ad = {}, {}
        for leaf in tree.kept:
            rw[leaf], ad[leaf] = r[row], a[row]
            row += 1
        lines.append(json.dumps(tree.to_json(tokenizer, rw, ad, step)))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------- tree forward
def _row_leaves(batch: RolloutBatch) -> list[tuple[Tree, int]]:
    """(tree, leaf id) of every row: a tree's rows are its kept leaves, in order (also after `select_groups`)."""
    if batch.tree_index is None or not batch.trees:
        raise ValueError("loss.forward 'tree' needs a Tree-GRPO batch (rollout.env set: rows with their trees)")
    by_index = {t.index: t for t in batch.trees}
    seen: dict[int, int] = {}
    out = []
    for ti in batch.tree_index.tolist():
        tree = by_index[int(ti)]
        k = seen.get(tree.index, 0)
        seen[tree.index] = k + 1
        out.append((tree, tree.kept[k]))
    return out


def pack_trees(base: torch.nn.Module, batch: RolloutBatch, dense: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor, list[PromptInputs],
                                                                                  TreeSpec]:
    """The trees of each prompt packed once, one right-padded row per prompt: [prompt; tree 1's nodes; tree 2's ...].

    Returns (input_ids (B,L), position_ids, mask (B,1,L,L) bool, only when ``dense`` (else None): each token sees
    the prompt, its ancestors' tokens and its own node causally; padding sees itself only, gather (N,T): the flat index (row * L + column) of the state
    predicting each completion token, prompts, the same layout as a `TreeSpec` for the efficient attention). Nodes
    are laid out by id, so ancestors always come first; positions continue along each path (mRoPE: the prompt's last
    position + 1, in all three rows)."""
    from training.batch import continuation_positions

    device = model_device(base)
    rows = _row_leaves(batch)
    groups: dict[int, list[Tree]] = {}  # prompt (index into batch.prompts, remapped by select_groups) -> its trees
    needed: dict[int, set[int]] = {}
    for (tree, leaf), g in zip(rows, batch.group_index.tolist()):
        if tree.index not in needed:
            groups.setdefault(int(g), []).append(tree)
            needed[tree.index] = set()
        needed[tree.index].update(n.id for n in tree.path(leaf))
    packed, prompts = [], []
    where: dict[tuple[int, int], tuple[int, int, int]] = {}  # (tree, node) -> (row, start, end)
    prompt_end: dict[int, tuple[int, int]] = {}  # tree -> (row, the prompt's last column)
    for b, (g, trees) in enumerate(groups.items()):
        prompt = batch.prompts[g].to(device)
        prompts.append(prompt)
        ppos = prompt_positions(base, prompt)
        ids, pos, owner = [prompt.input_ids], [ppos], [torch.zeros(len(prompt), dtype=torch.long)]
        cursor, parents = len(prompt), [-1]  # parents: the row's node graph, node 0 the shared prompt
        for tree in trees:
            prompt_end[tree.index] = (b, len(prompt) - 1)
            local = {0: 0}
            offset = {0: 0}  # tokens from the prompt's end to a node's end, along its path
            for nd in tree.nodes[1:]:
                seg = nd.tokens + nd.obs_tokens
                start = offset[nd.parent]
                offset[nd.id] = start + len(seg)
                if nd.id not in needed[tree.index]:
                    continue
                local[nd.id] = len(parents)
                parents.append(local[nd.parent])
                ids.append(torch.tensor(seg, dtype=torch.long, device=device))
                pos.append(continuation_positions(ppos, start + len(seg))[..., start:])
                owner.append(torch.full((len(seg),), local[nd.id], dtype=torch.long))
                where[(tree.index, nd.id)] = (b, cursor, cursor + len(seg))
                cursor += len(seg)
        anc = torch.zeros(len(parents), len(parents), dtype=torch.bool)  # anc[x, y]: y is x or above it
        for x in range(len(parents)):
            y = x
            while y >= 0:
                anc[x, y] = True
                y = parents[y]
        own = torch.cat(owner)
        packed.append((torch.cat(ids), torch.cat(pos, -1), anc[own[:, None], own[None, :]].tril() if dense else None))
    n_rows, width = len(packed), max(x[0].shape[0] for x in packed)
    input_ids = torch.full((n_rows, width), batch.pad_token_id, dtype=torch.long, device=device)
    mrope = packed[0][1].dim() == 2
    position_ids = torch.zeros((3, n_rows, width) if mrope else (n_rows, width), dtype=torch.long, device=device)
    mask = torch.eye(width, dtype=torch.bool, device=device).repeat(n_rows, 1, 1) if dense else None
    for b, (ids, pos, m) in enumerate(packed):
        ln = ids.shape[0]
        input_ids[b, :ln] = ids
        position_ids[..., b, :ln] = pos
        if mask is not None:
            mask[b, :ln, :ln] = m.to(device)
    n, t = batch.completion_ids.shape
    gather = torch.zeros(n, t, dtype=torch.long)
    for r, (tree, leaf) in enumerate(rows):
        b, last = prompt_end[tree.index]
        idx = [last]
        for nd in tree.path(leaf):
            _, s0, e0 = where[(tree.index, nd.id)]
            idx += range(s0, e0)
        ln = min(len(idx) - 1, t)
        gather[r, :ln] = torch.tensor(idx[:ln]) + b * width
    segments = []  # (row, start, end, context key index): the prompt's is empty (causal on itself)
    for (tindex, nid), (b, s0, e0) in where.items():
        tree = next(t for ts in groups.values() for t in ts if t.index == tindex)
        ctx, y = [], tree.nodes[nid].parent
        while y:
            _, s1, e1 = where[(tindex, y)]
            ctx = list(range(s1, e1)) + ctx
            y = tree.nodes[y].parent
        p_len = prompt_end[tindex][1] + 1
        segments.append((b, s0, e0, torch.tensor(list(range(p_len)) + ctx, dtype=torch.long, device=device)))
    prompt_lens = [len(p) for p in prompts]
    spec = TreeSpec(width, sorted(segments, key=lambda x: (x[0], x[1])), prompt_lens, [len(x[0]) for x in packed])
    return input_ids, position_ids, None if mask is None else mask[:, None], gather.to(device), prompts, spec


@dataclass
class TreeSpec:
    """The packed rows' layout for the attention (a forward kwarg, dispatched by `training.prefix_grouper`): per row
    the prompt runs causally once; every node's queries attend to [prompt + ancestors' keys (all visible) + own keys
    (causal)], so the cost follows the tokens actually seen, not a dense L x L mask."""

    length: int
    segments: list[tuple[int, int, int, torch.Tensor]]  # (row, start, end, context key positions)
    prompt_lens: list[int]
    row_lens: list[int]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, dropout: float
               ) -> torch.Tensor:
        """q, k, v: (B, H, L, D) -> (B, L, H, D)."""
        import torch.nn.functional as F

        rows: list[list[torch.Tensor]] = [[] for _ in range(q.shape[0])]
        for b, p in enumerate(self.prompt_lens):
            rows[b].append(F.scaled_dot_product_attention(q[b:b + 1, :, :p], k[b:b + 1, :, :p], v[b:b + 1, :, :p],
                                                          is_causal=True, scale=scale, dropout_p=dropout)[0])
        for b, s0, e0, ctx in self.segments:
            n = e0 - s0
            keys = torch.cat([k[b].index_select(1, ctx), k[b, :, s0:e0]], 1)[None]
            vals = torch.cat([v[b].index_select(1, ctx), v[b, :, s0:e0]], 1)[None]
            own = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
            mask = torch.cat([torch.ones(n, ctx.numel(), dtype=torch.bool, device=q.device), own], 1)
            rows[b].append(F.scaled_dot_product_attention(q[b:b + 1, :, s0:e0], keys, vals, attn_mask=mask,
                                                          scale=scale, dropout_p=dropout)[0])
        h, d = q.shape[1], q.shape[3]
        out = []
        for b, pieces in enumerate(rows):
            pad = self.length - self.row_lens[b]
            if pad:
                pieces.append(q.new_zeros(h, pad, d))
            out.append(torch.cat(pieces, 1))
        return torch.stack(out).transpose(1, 2).contiguous()


def tree_hidden(model: torch.nn.Module, batch: RolloutBatch, mode: str = "efficient") -> torch.Tensor:
    """(M, H) hidden states predicting the masked completion tokens (row-major, as the other forwards), each prompt
    and each tree node encoded once; a token shared by several rows is one hidden state gathered into each.
    ``efficient``: per-node attention over [prompt + ancestors + own causal] keys (`TreeSpec`); ``dense``: the same
    as one (B,1,L,L) mask under SDPA (a reference for tests)."""
    from training.prefix_grouper import SPEC_KWARG, decoder_hidden, enable_prefix_grouper, vision_kwargs

    base = enable_prefix_grouper(model) if mode == "efficient" else unwrap_model(model)
    mask = batch.completion_mask.bool()
    if not bool(mask.any()):
        return torch.zeros(0, base.config.get_text_config().hidden_size, device=model_device(base))
    input_ids, position_ids, mask4d, gather, prompts, spec = pack_trees(base, batch, dense=mode == "dense")
    if mode == "efficient":
        layer_types = set(getattr(base.config.get_text_config(), "layer_types", None) or ["full_attention"])
        if "sliding_attention" in layer_types:
            raise NotImplementedError("the tree forward with sliding-window layers is not supported")
        hidden = decoder_hidden(base, input_ids, position_ids, dict.fromkeys(layer_types), **vision_kwargs(prompts),
                                **{SPEC_KWARG: spec})
    else:
        hidden = decoder_hidden(base, input_ids, position_ids, mask4d, **vision_kwargs(prompts))
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, gather[mask.to(gather.device)])
