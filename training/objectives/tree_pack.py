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
class TreeSpec:
    """The packed rows' layout for the attention (a forward kwarg, dispatched by `training.objectives.prefix_grouper`): per row
    the prompt runs causally once; every node's queries attend to [prompt + ancestors' keys (all visible) + own keys
    (causal)], so the cost follows the tokens actually seen, not a dense L x L mask."""

    length: int
    segments: list[tuple[int, int, int, torch.Tensor]]  # (row, start, end, context key positions)
    prompt_lens: list[int]
    row_lens: list[int]

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, dropout: float
    ) -> torch.Tensor:
        """q, k, v: (B, H, L, D) -> (B, L, H, D)."""
        import torch.nn.functional as F

        rows: list[list[torch.Tensor]] = [[] for _ in range(q.shape[0])]
        for b, p in enumerate(self.prompt_lens):
            rows[b].append(
                F.scaled_dot_product_attention(
                    q[b : b + 1, :, :p],
                    k[b : b + 1, :, :p],
                    v[b : b + 1, :, :p],
                    is_causal=True,
                    scale=scale,
                    dropout_p=dropout,
                )[0]
            )
        for b, s0, e0, ctx in self.segments:
            n = e0 - s0
            keys = torch.cat([k[b].index_select(1, ctx), k[b, :, s0:e0]], 1)[None]
            vals = torch.cat([v[b].index_select(1, ctx), v[b, :, s0:e0]], 1)[None]
            own = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
            mask = torch.cat([torch.ones(n, ctx.numel(), dtype=torch.bool, device=q.device), own], 1)
            rows[b].append(
                F.scaled_dot_product_attention(
                    q[b : b + 1, :, s0:e0], keys, vals, attn_mask=mask, scale=scale, dropout_p=dropout
                )[0]
            )
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
