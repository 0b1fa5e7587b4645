"""Shared-prefix forward ("Prefix Grouper", 2025): each group runs as `[prompt; c1; ...; cG]` in one packed row.

All groups of a batch are concatenated into ONE packed row (no padding anywhere), so the projections and MLPs
see sum(P) + sum(T_i) tokens instead of sum over rows of (P + T_i). Attention is a registered function that, per
group, runs the prompt's causal attention once and the completions' attention over [prompt keys (broadcast,
shared by the G completions) + their own causal keys]; its cost follows the ideal token ratio, unlike a dense
L x L mask. A dense 4-D mask path (`mode="dense"`) is kept as a fallback and for tests.

Positions restart after the prompt for every completion: P, P+1, ... for a text LM; for Qwen2.5-VL the prompt's
3-D positions come from `get_rope_index` and each completion continues at the prompt's LAST position + 1 in all
three rows. Only the hidden states that predict completion tokens leave this module (`grouped_hidden`), in the
same order as the naive forward's, so `training.objectives.forward` applies one output head whichever forward ran.

The last decoder layer computes only what is read: the hidden states that predict completion tokens (each
group's last prompt position and its completions). Its prompt positions still give keys and values (the
completions attend to them), but their queries' attention and their MLP rows are skipped (the spec's `rows`; a
hook on that layer's MLP), about half of one layer's work at the embedded shapes, with the same outputs.

Registering the attention switches the model's (text) attention implementation to `medrl_prefix_grouper`; calls
without a packing spec (generation, plain forwards) go to transformers' SDPA unchanged. The switch (and the last
layer's hooks) is permanent on purpose: gradient checkpointing replays layers during backward and must find the
same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from training.data.batch import (
    RolloutBatch,
    continuation_positions,
    fed_lengths,
    model_device,
    prompt_positions,
    unwrap_model,
)

ATTN_NAME = "medrl_prefix_grouper"
MODES = ("efficient", "dense")
SPEC_KWARG = "prefix_grouper"
PRUNE_ATTR = "_medrl_prefix_rows"  # on the last layer's MLP: (rows, length) of the packed call, else None
PRUNE_HOOKED = "_medrl_last_layer_hooked"  # on the model: the hooks are in place (or it has no such layer)


@dataclass
class _Segment:
    """One group inside the packed row; index tensors are built once per forward and reused by every layer."""

    start: int  # row offset of the prompt
    prompt_len: int
    lengths: list[int]  # completion lengths, in row order
    # (G*Tmax,) offsets into the group's completions, in (G, Tmax) layout; None if all lengths are equal
    pad_index: torch.Tensor | None
    unpad_index: torch.Tensor | None  # (sum T,) positions of real tokens in the (G*Tmax) layout
    mask: torch.Tensor  # (G or 1, 1, Tmax, P + Tmax) bool: prompt keys all visible, own keys causal

    @property
    def end(self) -> int:
        return self.start + self.prompt_len + sum(self.lengths)


@dataclass
class PackSpec:
    """What the attention function needs to know about the packed row (passed as a forward kwarg)."""

    mode: str
    length: int
    segments: list[_Segment]
    dense_mask: torch.Tensor | None = None  # (1, 1, L, L) bool, mode == "dense" only
    rows: torch.Tensor | None = None  # positions the last layer computes (see module doc); None: all of them
    last_layer: int = -1  # that layer's index


def _segment(start: int, prompt_len: int, lengths: list[int], device: torch.device) -> _Segment:
    tmax = max(lengths)
    own = torch.ones(tmax, tmax, dtype=torch.bool, device=device).tril()
    if all(n == tmax for n in lengths):
        mask = torch.cat([torch.ones(tmax, prompt_len, dtype=torch.bool, device=device), own], 1)[None, None]
        return _Segment(start, prompt_len, lengths, None, None, mask)
    lens = torch.tensor(lengths, device=device)
    offsets = torch.cumsum(lens, 0) - lens
    t = torch.arange(tmax, device=device)
    valid = t[None] < lens[:, None]  # (G, Tmax)
    pad_index = torch.where(valid, offsets[:, None] + t[None], torch.zeros_like(valid, dtype=torch.long))
    unpad_index = valid.flatten().nonzero().flatten()
    own_g = own[None] & valid[:, None, :]
    prompt_part = torch.ones(len(lengths), tmax, prompt_len, dtype=torch.bool, device=device)
    mask = torch.cat([prompt_part, own_g], 2)[:, None]
    return _Segment(start, prompt_len, lengths, pad_index.flatten(), unpad_index, mask)


def _dense_mask(segments: list[_Segment], length: int, device: torch.device) -> torch.Tensor:
    m = torch.zeros(length, length, dtype=torch.bool, device=device)
    for s in segments:
        p0, p = s.start, s.prompt_len
        m[p0 : p0 + p, p0 : p0 + p] = torch.ones(p, p, dtype=torch.bool, device=device).tril()
        c = p0 + p
        for n in s.lengths:
            m[c : c + n, p0 : p0 + p] = True
            m[c : c + n, c : c + n] = torch.ones(n, n, dtype=torch.bool, device=device).tril()
            c += n
    return m[None, None]


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def _segment_attention(
    prompt: tuple[torch.Tensor, ...],
    completions: tuple[torch.Tensor, ...],
    seg: _Segment,
    scale: float | None,
    dropout: float,
    last_prompt_only: bool = False,
) -> torch.Tensor:
    """`prompt`: (q, k, v) of one group's prompt, each (H, P, D); `completions`: the same of its completions,
    (H, sum T, D). Returns (H, P + sum T, D); with `last_prompt_only`, the prompt's positions but its last are
    zeros (the last layer: nothing reads them)."""
    qp, kp, vp = (x[None] for x in prompt)
    if last_prompt_only:  # the last prompt query sees every prompt key: no mask
        last = F.scaled_dot_product_attention(qp[:, :, -1:], kp, vp, scale=scale, dropout_p=dropout)[0]
        out_p = torch.cat([last.new_zeros(last.shape[0], seg.prompt_len - 1, last.shape[2]), last], 1)
    else:
        out_p = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, scale=scale, dropout_p=dropout)[0]
    g, tmax, p = len(seg.lengths), max(seg.lengths), seg.prompt_len
    h, _, d = prompt[0].shape
    if seg.pad_index is None:  # equal lengths: a view, no gather

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(h, g, tmax, d).transpose(0, 1)
    else:

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.index_select(1, seg.pad_index).reshape(h, g, tmax, d).transpose(0, 1)

    qc, kc, vc = (split(x) for x in completions)
    keys = torch.cat([kp.expand(g, h, p, d), kc], 2)
    values = torch.cat([vp.expand(g, h, p, d), vc], 2)
    out_c = F.scaled_dot_product_attention(
        qc, keys, values, attn_mask=seg.mask, scale=scale, dropout_p=dropout
    )
    out_c = out_c.transpose(0, 1).reshape(h, g * tmax, d)
    if seg.unpad_index is not None:
        out_c = out_c.index_select(1, seg.unpad_index)
    return torch.cat([out_p, out_c], 1)


def prefix_grouper_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The registered attention: grouped when a PackSpec is passed to a causal layer, plain SDPA otherwise."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    spec: PackSpec | None = kwargs.get(SPEC_KWARG)
    if spec is None or not getattr(module, "is_causal", True) or query.shape[2] != spec.length:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    n_rep = getattr(module, "num_key_value_groups", 1)
    attend = getattr(
        spec, "attend", None
    )  # another packing's own attention (Tree-GRPO: training.objectives.tree_pack.TreeSpec)
    if attend is not None:
        return attend(query, _repeat_kv(key, n_rep), _repeat_kv(value, n_rep), scaling, dropout), None
    if query.shape[0] != 1:
        raise ValueError("the prefix-grouped forward takes one packed row")
    if spec.mode == "dense":
        k, v = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
        out = F.scaled_dot_product_attention(
            query, k, v, attn_mask=spec.dense_mask, scale=scaling, dropout_p=dropout
        )
        return out.transpose(1, 2).contiguous(), None
    q, k, v = query[0], _repeat_kv(key, n_rep)[0], _repeat_kv(value, n_rep)[0]
    last = spec.rows is not None and getattr(module, "layer_idx", None) == spec.last_layer
    # one split per tensor (its backward is one concatenation; a slice per piece would zero-fill the whole row's
    # gradient once per piece): prompt, completions, next prompt, ...
    sizes = [n for s in spec.segments for n in (s.prompt_len, sum(s.lengths))]
    qs, ks, vs = q.split(sizes, 1), k.split(sizes, 1), v.split(sizes, 1)
    pieces = [
        _segment_attention(
            (qs[2 * i], ks[2 * i], vs[2 * i]),
            (qs[2 * i + 1], ks[2 * i + 1], vs[2 * i + 1]),
            s,
            scaling,
            dropout,
            last,
        )
        for i, s in enumerate(spec.segments)
    ]
    out = torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0]
    return out.transpose(0, 1)[None].contiguous(), None


def register_attention() -> None:
    """Idempotent: add the function (and transformers' SDPA mask builder for it) to the interfaces."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, prefix_grouper_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


def enable_prefix_grouper(model: torch.nn.Module) -> torch.nn.Module:
    """Switch the (text) attention of `model` (peft or plain) to the grouped function; returns the base model."""
    register_attention()
    base = unwrap_model(model)
    text_cfg = base.config.get_text_config()
    if getattr(text_cfg, "_attn_implementation", None) != ATTN_NAME:
        subs = getattr(base.config, "sub_configs", {}) or {}
        base.set_attn_implementation({"text_config": ATTN_NAME} if "text_config" in subs else ATTN_NAME)
    _prune_last_layer(base)
    return base


def _last_decoder_layer(base: torch.nn.Module) -> torch.nn.Module | None:
    """The text decoder's last layer: the module with `self_attn` (of that layer index) and an `mlp`."""
    last = base.config.get_text_config().num_hidden_layers - 1
    for module in base.modules():
        attn, mlp = getattr(module, "self_attn", None), getattr(module, "mlp", None)
        if isinstance(mlp, torch.nn.Module) and getattr(attn, "layer_idx", None) == last:
            return module
    return None


def _prune_last_layer(base: torch.nn.Module) -> None:
    """Hooks (once) on the last layer: a packed forward's MLP runs on the spec's `rows` only, and the rows it
    skips come out as zeros (nothing reads them). The layer's pre-hook reads the spec from its own kwargs, so a
    checkpointed layer replayed in backward prunes the same way; any other call runs the whole MLP."""
    if hasattr(base, PRUNE_HOOKED):  # once per model, not once per forward
        return
    layer = _last_decoder_layer(base)
    setattr(base, PRUNE_HOOKED, True)
    if layer is None:
        return
    setattr(layer.mlp, PRUNE_ATTR, None)

    def read_spec(module, args, kwargs):
        spec = kwargs.get(SPEC_KWARG)
        keep = isinstance(spec, PackSpec) and spec.rows is not None
        setattr(module.mlp, PRUNE_ATTR, (spec.rows, spec.length) if keep else None)

    def select(module, args):
        pruned = getattr(module, PRUNE_ATTR)
        return None if pruned is None else (args[0].index_select(1, pruned[0]), *args[1:])

    def scatter(module, args, out):
        pruned = getattr(module, PRUNE_ATTR)
        if pruned is None:
            return None
        rows, length = pruned
        return out.new_zeros(out.shape[0], length, out.shape[2]).index_copy(1, rows, out)

    layer.register_forward_pre_hook(read_spec, with_kwargs=True)
    layer.mlp.register_forward_pre_hook(select)
    layer.mlp.register_forward_hook(scatter)


def _group_rows(batch: RolloutBatch) -> tuple[list[int], list[list[int]], list[int]]:
    """(prompt index per group, row indices per group, fed length per row = last unmasked token + 1)."""
    lengths = fed_lengths(batch.completion_mask).tolist()
    order: dict[int, list[int]] = {}
    for r, gidx in enumerate(batch.group_index.tolist()):
        order.setdefault(int(gidx), []).append(r)
    groups = [g for g in order if any(lengths[r] > 0 for r in order[g])]
    return groups, [[r for r in order[g] if lengths[r] > 0] for g in groups], lengths


def vision_kwargs(prompts: list[Any]) -> dict[str, torch.Tensor]:
    pv = [p.pixel_values for p in prompts if p.pixel_values is not None]
    if not pv:
        return {}
    return {
        "pixel_values": torch.cat(pv, 0),
        "image_grid_thw": torch.cat([p.image_grid_thw for p in prompts if p.pixel_values is not None], 0),
    }


def pack_batch(
    base: torch.nn.Module, batch: RolloutBatch, mode: str = "efficient"
) -> tuple[torch.Tensor, torch.Tensor, PackSpec, torch.Tensor, list[Any]]:
    """The packed row: (input_ids (1,L), position_ids ((1,L) or (3,1,L)), spec, gather index (N,T), prompts)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    device = model_device(base)
    groups, rows, lengths = _group_rows(batch)
    n, t = batch.completion_ids.shape
    ids_parts, pos_parts, segments = [], [], []
    gather = torch.zeros(n, t, dtype=torch.long)
    cursor = 0
    prompts = []
    for gidx, grow in zip(groups, rows):
        prompt = batch.prompts[gidx].to(device)
        prompts.append(prompt)
        p = len(prompt)
        ppos = prompt_positions(base, prompt)
        ids_parts.append(prompt.input_ids)
        pos_parts.append(ppos)
        c = cursor + p
        for r in grow:
            ln = lengths[r]
            ids_parts.append(batch.completion_ids[r, :ln].to(device))
            pos_parts.append(continuation_positions(ppos, ln))
            gather[r, 0] = cursor + p - 1
            gather[r, 1:ln] = torch.arange(c, c + ln - 1)
            c += ln
        segments.append(_segment(cursor, p, [lengths[r] for r in grow], device))
        cursor = c
    input_ids = torch.cat(ids_parts)[None]
    pos = torch.cat(pos_parts, -1)
    position_ids = pos[:, None] if pos.dim() == 2 else pos[None]
    dense = mode == "dense"
    read = [torch.arange(s.start + s.prompt_len - 1, s.end, device=device) for s in segments]
    spec = PackSpec(
        mode,
        cursor,
        segments,
        _dense_mask(segments, cursor, device) if dense else None,
        None if dense or not read else torch.cat(read),
        base.config.get_text_config().num_hidden_layers - 1,
    )
    return input_ids, position_ids, spec, gather.to(device), prompts


def decoder_hidden(
    base: torch.nn.Module,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor | None,
    attention_mask: Any,
    **kwargs: Any,
) -> torch.Tensor:
    """Last hidden states of the inner model (vision tower + decoder), without the lm_head."""
    out = base.model(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=attention_mask,
        use_cache=False,
        **kwargs,
    )
    return out.last_hidden_state


def grouped_hidden(model: torch.nn.Module, batch: RolloutBatch, mode: str = "efficient") -> torch.Tensor:
    """(M, H) hidden states that predict the M masked completion tokens (row-major over the mask), each group's
    prompt encoded once (see module docstring); differentiable. The caller applies the output head."""
    base = enable_prefix_grouper(model)
    mask = batch.completion_mask.bool()
    if not bool(mask.any()):
        hidden_size = base.config.get_text_config().hidden_size
        return torch.zeros(0, hidden_size, device=model_device(base))
    input_ids, position_ids, spec, gather, prompts = pack_batch(base, batch, mode)
    text_cfg = base.config.get_text_config()
    layer_types = set(getattr(text_cfg, "layer_types", None) or ["full_attention"])
    if "sliding_attention" in layer_types:
        raise NotImplementedError("prefix grouping with sliding-window layers is not supported")
    masks = dict.fromkeys(
        layer_types
    )  # a dict skips transformers' mask building; the spec carries the layout
    hidden = decoder_hidden(
        base, input_ids, position_ids, masks, **vision_kwargs(prompts), **{SPEC_KWARG: spec}
    )
    return hidden[0].index_select(0, gather[mask.to(gather.device)])
