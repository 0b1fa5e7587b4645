"""Running Tree-GRPO branches to terminal nodes: batched multi-turn decoding over cached paths.

Decoding is batched over every open branch of every prompt. Each node keeps the key/value cache of its path (views
of the cache tensors, which later steps never modify in place), so a branch starts from its node's cache: its
ancestors are never encoded again. Branches of different lengths share one cache with left padding and holes
(turns that ended early, shorter observations), all masked out by a 2-D attention mask; positions are explicit and
continue along each path. Counted per call: tokens generated, tokens encoded (prompts and observations fed to the
model), environment calls.

Sampling, log-probs, EOS and stop strings are the group sampler's (`training.rollout.engine.sample_with_logprobs`,
`training.rollout.engine.decoding`, `training.rollout.stops`), so a turn ends exactly as a single-turn completion does. The cache
is transformers' `DynamicCache`, not the group sampler's `training.rollout.kv_cache.RolloutKVCache`: that one holds one
prompt per group and a fixed own buffer per row, while a tree branch resumes from any node's path, and its decode
attention sums in another order, which would change the sampled tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from training.data.batch import PromptInputs, prompt_positions
from training.errors import MedrlError
from training.rollout.engine import Decoding, decode_threads, never_sampled_ids, sample_with_logprobs
from training.rollout.env import OBSERVATION
from training.rollout.tree import Node, RolloutConfig, Tree
from training.run.threads import intra_op_threads


@dataclass
class PathCache:
    """One path's cache, excluding its last token (`pending`, fed with the next step) at position `pos`."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]  # (heads, S, dim) per layer
    valid: torch.Tensor  # (S,) bool: False on padding and holes
    pending: int
    pos: int


@dataclass
class Branch:
    """A trajectory being decoded: it continues `tree` below node `parent`, from that node's cache and env."""

    tree: Tree
    parent: int  # node id it continues from
    state: PathCache
    env: Any


@dataclass
class Counters:
    """What one sampler call cost: tokens generated, tokens fed to the model, environment calls."""

    tokens_generated: int = 0
    tokens_encoded: int = 0
    env_calls: int = 0


class BranchDecoder:
    """Runs branches to terminal nodes, batched; see the module docstring for the cache layout."""

    def __init__(self, d: Decoding, cfg: RolloutConfig):
        self.base, self.tok, self.cfg, self.gen, self.pad = d.base, d.tokenizer, cfg, d.generator, d.pad_id
        self.eos, self.stops, self.device = frozenset(d.eos), d.stops, d.device
        self.banned = never_sampled_ids(d.base, self.device)
        self.count = Counters()
        self.mrope = hasattr(getattr(d.base, "model", None), "get_rope_index")

    def _positions(self, pos: torch.Tensor) -> torch.Tensor:
        """(B, C) text positions -> the model's position_ids ((3, B, C) for mRoPE: all rows equal after the prompt)."""
        return pos[None].expand(3, *pos.shape) if self.mrope else pos

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, attn: torch.Tensor, cache: Any) -> Any:
        return self.base(
            input_ids=ids,
            position_ids=self._positions(pos),
            attention_mask=attn,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )

    def root(self, prompt: PromptInputs) -> PathCache:
        """Prefill the prompt but its last token, once; every tree of the prompt starts from this cache."""
        p = len(prompt)
        if p < 2:
            raise ValueError("multi-turn rollouts need prompts of at least 2 tokens")
        pos = prompt_positions(self.base, prompt)
        kwargs: dict[str, Any] = {}
        if prompt.pixel_values is not None:
            kwargs.update(pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw)
        pre = pos[..., : p - 1]
        out = self.base(
            input_ids=prompt.input_ids[None, : p - 1],
            position_ids=pre[:, None] if pre.dim() == 2 else pre[None],
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
        self.count.tokens_encoded += p - 1
        layers = [(lay.keys[0], lay.values[0]) for lay in out.cache.layers]
        return PathCache(
            layers,
            torch.ones(p - 1, dtype=torch.bool, device=self.device),
            int(prompt.input_ids[-1]),
            int(pos[..., -1].max()),
        )

    def _stack(self, states: list[PathCache]) -> tuple[Any, torch.Tensor]:
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
                ks[b, :, s - n :] = st.layers[li][0]
                vs[b, :, s - n :] = st.layers[li][1]
            data.append((ks, vs))
        valid = torch.zeros(len(states), s, dtype=torch.long, device=self.device)
        for b, st in enumerate(states):
            valid[b, s - st.valid.shape[0] :] = st.valid.long()
        return DynamicCache(ddp_cache_data=data), valid

    @torch.inference_mode()
    def run(self, branches: list[Branch]) -> None:
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
            stop_state = [self.stops.start() for _ in range(bsz)]
            with intra_op_threads(decode_threads(self.base, bsz, self.cfg)):
                for _ in range(self.cfg.max_new_tokens):
                    attn = torch.cat([attn, alive.long()[:, None]], 1)
                    out = self._forward(pending[:, None], pos[:, None], attn, cache)
                    cache = out.cache
                    logits = out.logits[:, -1].float()
                    if not bool(torch.isfinite(logits).all()):
                        raise MedrlError(
                            "the policy's logits are not finite while sampling: the weights have diverged"
                        )
                    nxt, lp = sample_with_logprobs(logits, self.cfg, self.gen, self.banned)
                    pending = torch.where(alive, nxt, pending)
                    pos = pos + alive.long()
                    nl, ll = nxt.tolist(), lp.tolist()
                    for r in alive.nonzero().flatten().tolist():
                        toks[r].append(nl[r])
                        lps[r].append(ll[r])
                        self.count.tokens_generated += 1
                        hit = nl[r] in self.eos
                        if not hit and self.stops:
                            stop_state[r], hit = self.stops.feed(stop_state[r], nl[r])
                        if hit:
                            alive[r] = False
                    if not bool(alive.any()):
                        break
            # the environment answers each turn; terminal rows leave the batch
            keep, chunks = [], []
            for r, br in enumerate(live):
                tree = br.tree
                parent = tree.nodes[parents[r]]
                node = Node(
                    len(tree.nodes),
                    parent.id,
                    parent.depth + 1,
                    toks[r],
                    lps[r],
                    action=self.stops.cut(self.tok.decode(toks[r], skip_special_tokens=True)),
                )
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
                live, parents, envs = (
                    [live[r] for r in keep],
                    [parents[r] for r in keep],
                    [envs[r] for r in keep],
                )
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
                node.state = PathCache(
                    [(lay.keys[i], lay.values[i]) for lay in cache.layers],
                    attn[i, :s].bool(),
                    int(pending[i]),
                    int(pos[i]),
                )
                node.env = copy.deepcopy(envs[i])
