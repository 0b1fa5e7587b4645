"""Tree-GRPO's loss forward: every tree of a prompt packed into one row, each prompt and node encoded once.

A token shared by several kept paths (the prompt, a node above a branching) is one position of the packed row and
one hidden state gathered into each row that contains it; the attention lets each node see the prompt, its
ancestors and itself (causally), as `TreeSpec` describes for `training.objectives.prefix_grouper`'s efficient attention, or as
a dense (L, L) mask (the reference the tests hold it to).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.data.batch import (
    PromptInputs,
    RolloutBatch,
    continuation_positions,
    model_device,
    prompt_positions,
    unwrap_model,
)
from training.rollout.tree import Tree


def _row_leaves(batch: RolloutBatch) -> list[tuple[Tree, int]]:
    """(tree, leaf id) of every row: a tree's rows are its kept leaves, in order (also after `select_groups`)."""
    if batch.tree_index is None or not batch.trees:
        raise ValueError(
            "loss.forward 'tree' needs a Tree-GRPO batch (rollout.env set: rows with their trees)"
        )
    by_index = {t.index: t for t in batch.trees}
    seen: dict[int, int] = {}
    out = []
    for ti in batch.tree_index.tolist():
        tree = by_index[int(ti)]
        k = seen.get(tree.index, 0)
        seen[tree.index] = k + 1
        out.append((tree, tree.kept[k]))
    return out


def pack_trees(
    base: torch.nn.Module, batch: RolloutBatch, dense: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[PromptInputs], TreeSpec]:
    """The trees of each prompt packed once, one right-padded row per prompt: [prompt; tree 1's nodes; tree 2's ...].

    Returns (input_ids (B,L), position_ids, mask (B,1,L,L) bool, only when ``dense`` (else None): each token sees
    the prompt, its ancestors' tokens and its own node causally; padding sees itself only, gather (N,T): the flat index (row * L + column) of the state
    predicting each completion token, prompts, the same layout as a `TreeSpec` for the efficient attention). Nodes
    are laid out by id, so ancestors always come first; positions continue along each path (mRoPE: the prompt's last
    position + 1, in all three rows)."""
    device = model_device(base)
    rows = _row_leaves(batch)
    groups: dict[
        int, list[Tree]
    ] = {}  # prompt (index into batch.prompts, remapped by select_groups) -> its trees
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
        packed.append(
            (torch.cat(ids), torch.cat(pos, -1), anc[own[:, None], own[None, :]].tril() if dense else None)
        )
    n_rows, width = len(packed), max(x[0].shape[0] for x in packed)
    input_ids = torch.full((n_rows, width), batch.pad_token_id, dtype=torch.long, device=device)
    mrope = packed[0][1].dim() == 2
    position_ids = torch.zeros(
        (3, n_rows, width) if mrope else (n_rows, width), dtype=torch.long, device=device
    )
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
    spec = TreeSpec(
        width, sorted(segments, key=lambda x: (x[0], x[1])), prompt_lens, [len(x[0]) for x in packed]
    )
    return input_ids, position_ids, None if mask is None else mask[:, None], gather.to(device), prompts, spec


@dataclass
class _Bucket:
    """Nodes of similar shape attended in one batched call: queries and keys gathered into (S, Nq) / (S, K).

    ``query_index`` (S*Nq,): the flat position (row * L + column) of each node's queries, padded with its first
    one; ``key_index`` (S*K,): the flat positions of [context keys; own keys], padded with the row's first column;
    ``mask`` (S, 1, Nq, K) bool: context all visible, own keys causal, a padded query sees key 0 only (no empty
    softmax row, so no NaN in the backward); ``shape``: (S, Nq, K)."""

    query_index: torch.Tensor
    key_index: torch.Tensor
    mask: torch.Tensor
    shape: tuple[int, int, int]


def _buckets(
    segments: list[tuple[int, int, int, torch.Tensor]], width: int, device: torch.device, slack: float = 0.8
) -> tuple[list[_Bucket], list[tuple[int, int, int, int]]]:
    """Nodes clustered by query count, then by key count, each cluster cut where its shortest node falls under
    ``slack`` of its longest, so padding wastes at most about 1 - slack per side of a bucket's attention and a tree
    costs a handful of calls per layer instead of one per node. Also returns, per bucket entry, (row, start, end,
    offset of its first query in the concatenated bucket outputs)."""

    def cut(items: list[int], size) -> list[list[int]]:
        out: list[list[int]] = []
        for i in sorted(items, key=lambda i: -size(i)):
            if out and size(i) >= slack * size(out[-1][0]):
                out[-1].append(i)
            else:
                out.append([i])
        return out

    def queries(i: int) -> int:
        return segments[i][2] - segments[i][1]

    def keys(i: int) -> int:
        return segments[i][3].numel() + queries(i)

    groups = [g for by_q in cut(list(range(len(segments))), queries) for g in cut(by_q, keys)]
    buckets, placed, offset = [], [], 0
    for grp in groups:
        segs = [segments[i] for i in grp]
        nq = max(e - s for _, s, e, _ in segs)
        nk = max(c.numel() + e - s for _, s, e, c in segs)
        qi = torch.empty(len(segs), nq, dtype=torch.long)
        ki = torch.empty(len(segs), nk, dtype=torch.long)
        mask = torch.zeros(len(segs), 1, nq, nk, dtype=torch.bool)
        for j, (b, s0, e0, ctx) in enumerate(segs):
            n, c = e0 - s0, ctx.numel()
            qi[j] = b * width + s0
            qi[j, :n] = b * width + torch.arange(s0, e0)
            ki[j] = b * width
            ki[j, :c] = b * width + ctx.cpu()
            ki[j, c : c + n] = b * width + torch.arange(s0, e0)
            mask[j, 0, :n, :c] = True
            mask[j, 0, :n, c : c + n] = torch.ones(n, n, dtype=torch.bool).tril()
            mask[j, 0, n:, 0] = True
            placed.append((b, s0, e0, offset + j * nq))
        offset += len(segs) * nq
        buckets.append(
            _Bucket(qi.flatten().to(device), ki.flatten().to(device), mask.to(device), (len(segs), nq, nk))
        )
    return buckets, placed


@dataclass
class TreeSpec:
    """The packed rows' layout for the attention (a forward kwarg, dispatched by `training.objectives.prefix_grouper`):
    every row's prompt runs causally once (one call for all rows); every node's queries attend to [prompt +
    ancestors' keys (all visible) + own keys (causal)], nodes of similar query and key counts batched into one call
    (`_buckets`), so the cost follows the tokens actually seen in a few calls per layer, not a dense L x L mask nor
    one call per node. Index tensors are built once per forward and reused by every layer."""

    length: int
    segments: list[tuple[int, int, int, torch.Tensor]]  # (row, start, end, context key positions)
    prompt_lens: list[int]
    row_lens: list[int]

    def __post_init__(self) -> None:
        device = self.segments[0][3].device if self.segments else torch.device("cpu")
        self.buckets, placed = _buckets(self.segments, self.length, device)
        rows, width, pmax = len(self.prompt_lens), self.length, max(self.prompt_lens)
        n_prompt = rows * pmax
        n_nodes = sum(b.shape[0] * b.shape[1] for b in self.buckets)
        # where each packed position's output lies in [prompt outputs (B*Pmax); bucket outputs; one zero row]
        source = torch.full((rows, width), n_prompt + n_nodes, dtype=torch.long)
        for b, p in enumerate(self.prompt_lens):
            source[b, :p] = b * pmax + torch.arange(p)
        for b, s0, e0, at in placed:
            source[b, s0:e0] = n_prompt + at + torch.arange(e0 - s0)
        self.source = source.flatten().to(device)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, dropout: float
    ) -> torch.Tensor:
        """q, k, v: (B, H, L, D) -> (B, L, H, D)."""
        import torch.nn.functional as F

        bsz, h, width, d = q.shape
        pmax = max(self.prompt_lens)
        # right-padded prompts under one causal call: a prompt's queries never reach the columns after it
        out_p = F.scaled_dot_product_attention(
            q[:, :, :pmax], k[:, :, :pmax], v[:, :, :pmax], is_causal=True, scale=scale, dropout_p=dropout
        )
        pieces = [out_p.transpose(1, 2).reshape(bsz * pmax, h, d)]
        if self.buckets:
            flat = [x.transpose(1, 2).reshape(bsz * width, h, d) for x in (q, k, v)]
            for bk in self.buckets:
                s, nq, nk = bk.shape
                qb = flat[0].index_select(0, bk.query_index).view(s, nq, h, d).transpose(1, 2)
                kb = flat[1].index_select(0, bk.key_index).view(s, nk, h, d).transpose(1, 2)
                vb = flat[2].index_select(0, bk.key_index).view(s, nk, h, d).transpose(1, 2)
                ob = F.scaled_dot_product_attention(
                    qb, kb, vb, attn_mask=bk.mask, scale=scale, dropout_p=dropout
                )
                pieces.append(ob.transpose(1, 2).reshape(s * nq, h, d))
        pieces.append(q.new_zeros(1, h, d))
        return torch.cat(pieces).index_select(0, self.source).view(bsz, width, h, d)


def tree_hidden(model: torch.nn.Module, batch: RolloutBatch, mode: str = "efficient") -> torch.Tensor:
    """(M, H) hidden states predicting the masked completion tokens (row-major, as the other forwards), each prompt
    and each tree node encoded once; a token shared by several rows is one hidden state gathered into each.
    ``efficient``: nodes of similar shape attended together over [prompt + ancestors + own causal] keys
    (`TreeSpec`); ``dense``: the same as one (B,1,L,L) mask under SDPA (a reference for tests)."""
    from training.objectives.prefix_grouper import (
        SPEC_KWARG,
        decoder_hidden,
        enable_prefix_grouper,
        vision_kwargs,
    )

    base = enable_prefix_grouper(model) if mode == "efficient" else unwrap_model(model)
    mask = batch.completion_mask.bool()
    if not bool(mask.any()):
        return torch.zeros(0, base.config.get_text_config().hidden_size, device=model_device(base))
    input_ids, position_ids, mask4d, gather, prompts, spec = pack_trees(base, batch, dense=mode == "dense")
    if mode == "efficient":
        layer_types = set(getattr(base.config.get_text_config(), "layer_types", None) or ["full_attention"])
        if "sliding_attention" in layer_types:
            raise NotImplementedError("the tree forward with sliding-window layers is not supported")
        hidden = decoder_hidden(
            base,
            input_ids,
            position_ids,
            dict.fromkeys(layer_types),
            **vision_kwargs(prompts),
            **{SPEC_KWARG: spec},
        )
    else:
        hidden = decoder_hidden(base, input_ids, position_ids, mask4d, **vision_kwargs(prompts))
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, gather[mask.to(gather.device)])
