"""The rollout's pre-allocated cache: each prompt's keys/values held ONCE, its G completions' keys/values per row.

Per layer: `prompt_keys/values (prompts, kv_heads, width, head_dim)` and `own_keys/values (prompts x G,
kv_heads, steps, head_dim)`, rows in group order. Prompts are right-aligned to `width` (left padding): a prompt
of P tokens leaves its last token out (the first decode step feeds it), so its P - 1 keys sit in columns
`[width - P + 1, width)`; `prompt_mask (prompts, 1, 1, width)` says which columns are real. Decode step t writes
column t of every row's own buffer, in place; nothing is concatenated or re-allocated per step.

Decode attention (`rollout_attention`, registered with transformers and switched on only around the decode loop
by `decode_attention`) scores each row's query against its prompt's keys (the G rows of a group share one copy,
so the prompt part is a (G x heads)-query matmul per prompt instead of G copies of the prompt read per step) and
against its own keys, with one softmax over both. Prefill runs through the model's usual attention with a
left-padding mask (`prefill_mask`) and writes each prompt's keys once.

`static=True` (the compiled decode) writes at a 0-d device tensor position and attends over the whole own buffer
with the unwritten columns masked, so shapes and addresses stay fixed across steps. `select_groups` drops whole
groups whose rows have all finished (one copy, done rarely; never in static mode).

It is a transformers `Cache` (Qwen2 / Qwen2.5-VL attention calls `cache.update(k, v, layer_idx)`), passed as
`cache=`; positions and masks are always passed explicitly, so the model never asks it for a length.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

ATTN_NAME = "medrl_rollout"
CACHE_KWARG = "rollout_cache"


class _RolloutLayer(CacheLayerMixin):
    is_compileable = True
    is_sliding = False

    def __init__(self, owner: RolloutKVCache):
        super().__init__()
        self.owner = owner
        self.prompt_keys: torch.Tensor | None = None
        self.prompt_values: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Buffers take the dtype the attention produces (bf16 under autocast) and the states' device."""
        o = self.owner
        heads, dk, dv = key_states.shape[1], key_states.shape[-1], value_states.shape[-1]
        kw = {"dtype": key_states.dtype, "device": key_states.device}
        self.prompt_keys = torch.zeros(o.prompts, heads, o.width, dk, **kw)
        self.prompt_values = torch.zeros(o.prompts, heads, o.width, dv, **kw)
        self.keys = torch.zeros(o.prompts * o.group, heads, o.steps, dk, **kw)
        self.values = torch.zeros(o.prompts * o.group, heads, o.steps, dv, **kw)
        if o.static and not torch.compiler.is_compiling():
            for t in (self.prompt_keys, self.prompt_values, self.keys, self.values):
                torch._dynamo.mark_static_address(t)
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.owner
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if (
            o.prefill is not None
        ):  # (first prompt, first column) of this chunk: attention sees the chunk's own keys
            first, col = o.prefill
            n, w = key_states.shape[0], key_states.shape[2]
            self.prompt_keys[first : first + n, :, col : col + w] = key_states
            self.prompt_values[first : first + n, :, col : col + w] = value_states
            return key_states, value_states
        if o.static:
            self.keys.index_copy_(2, o.write_pos, key_states.to(self.keys.dtype))
            self.values.index_copy_(2, o.write_pos, value_states.to(self.values.dtype))
            return self.keys, self.values
        t = o.step
        self.keys[:, :, t : t + 1] = key_states
        self.values[:, :, t : t + 1] = value_states
        return self.keys[:, :, : t + 1], self.values[:, :, : t + 1]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.width + self.owner.steps, 0

    def get_seq_length(self) -> int:
        return self.owner.width + max(self.owner.step, 0)

    def get_max_length(self) -> int:
        return self.owner.width + self.owner.steps

    def select(self, groups: torch.Tensor, rows: torch.Tensor) -> None:
        if self.is_initialized:
            self.prompt_keys = self.prompt_keys.index_select(0, groups)
            self.prompt_values = self.prompt_values.index_select(0, groups)
            self.keys = self.keys.index_select(0, rows)
            self.values = self.values.index_select(0, rows)


class RolloutKVCache(Cache):
    """`prompts` groups of `group` rows; prompt keys `width` columns wide, own keys `steps` columns."""

    def __init__(
        self,
        num_layers: int,
        prompts: int,
        group: int,
        width: int,
        steps: int,
        prompt_mask: torch.Tensor,
        static: bool = False,
    ):
        self.prompts, self.group, self.width, self.steps, self.static = prompts, group, width, steps, static
        self.prompt_mask = prompt_mask  # (prompts, 1, 1, width) bool
        self.prefill: tuple[int, int] | None = None
        self.step = -1  # the own column the next decode step writes (eager mode)
        self.write_pos = torch.zeros(1, dtype=torch.long, device=prompt_mask.device)  # the same (static mode)
        if static:
            torch._dynamo.mark_static_address(self.write_pos)
            torch._dynamo.mark_static_address(self.prompt_mask)
        super().__init__(layers=[_RolloutLayer(self) for _ in range(num_layers)])

    def reuse(self, prompt_mask: torch.Tensor) -> None:
        """Start a new rollout in the same buffers (same shapes): a compiled, CUDA-graphed step keeps its static
        addresses. Buffers are zeroed so masked columns never hold stale values."""
        self.prompt_mask.copy_(prompt_mask)
        for layer in self.layers:
            if layer.is_initialized:
                for t in (layer.prompt_keys, layer.prompt_values, layer.keys, layer.values):
                    t.zero_()
        self.prefill, self.step = None, -1
        self.write_pos.zero_()

    def begin_prefill(self, first_prompt: int, width: int) -> None:
        """The next forward is a chunk of prompts starting at `first_prompt`, left-padded to `width` tokens."""
        self.prefill = (first_prompt, self.width - width)

    def begin_decode(self, step: int) -> None:
        """The next forward is one token per row, written at own column `step`."""
        self.prefill = None
        self.step = step
        if self.static:
            self.write_pos.fill_(step)

    def select_groups(self, groups: torch.Tensor) -> None:
        """Keep only these groups (in this order), all their rows; the buffers are copied once."""
        rows = (groups[:, None] * self.group + torch.arange(self.group, device=groups.device)).flatten()
        for layer in self.layers:
            layer.select(groups, rows)
        self.prompt_mask = self.prompt_mask.index_select(0, groups)
        self.prompts = int(groups.shape[0])

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layers[layer_idx].get_seq_length()


def rollout_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """One query per row over [its prompt's keys (shared by the group); its own keys]: one softmax, in fp32.

    Calls without a rollout cache (anything outside the decode loop) go to transformers' SDPA unchanged."""
    cache: RolloutKVCache | None = kwargs.get(CACHE_KWARG)
    if cache is None or cache.prefill is not None or query.shape[2] != 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    layer = cache.layers[module.layer_idx]
    pk, pv = layer.prompt_keys, layer.prompt_values
    n, kv_heads, width, d = pk.shape
    rows, heads = query.shape[0], query.shape[1]
    g, rep = rows // n, heads // kv_heads
    scale = scaling if scaling is not None else d**-0.5
    q = query.reshape(n, g, kv_heads, rep, d)  # head h reads kv head h // rep, as repeat_kv does
    qg = q.permute(0, 2, 1, 3, 4).reshape(n, kv_heads, g * rep, d)
    s_prompt = torch.matmul(qg, pk.transpose(-1, -2)).float() * scale  # (n, kv, g*rep, width)
    s_prompt = s_prompt.masked_fill(~cache.prompt_mask, float("-inf"))
    s_own = torch.matmul(query.reshape(rows, kv_heads, rep, d), key.transpose(-1, -2)).float() * scale
    if cache.static:  # the whole own buffer: columns not written yet are masked
        cols = torch.arange(key.shape[2], device=key.device)
        s_own = s_own.masked_fill(cols > cache.write_pos, float("-inf"))
    s_prompt = s_prompt.view(n, kv_heads, g, rep, width).permute(0, 2, 1, 3, 4)  # (n, g, kv, rep, width) view
    s_own = s_own.view(n, g, kv_heads, rep, -1)
    top = torch.maximum(
        s_prompt.amax(-1, keepdim=True), s_own.amax(-1, keepdim=True)
    )  # own column t is finite
    e_prompt, e_own = (s_prompt - top).exp(), (s_own - top).exp()
    denom = e_prompt.sum(-1, keepdim=True) + e_own.sum(-1, keepdim=True)
    p_prompt = e_prompt.permute(0, 2, 1, 3, 4).reshape(n, kv_heads, g * rep, width).to(pv.dtype)
    out = torch.matmul(p_prompt, pv).view(n, kv_heads, g, rep, d).permute(0, 2, 1, 3, 4).float()
    out = (
        out
        + torch.matmul(e_own.reshape(rows, kv_heads, rep, -1).to(value.dtype), value)
        .view(n, g, kv_heads, rep, d)
        .float()
    )
    out = (out / denom).to(query.dtype)
    return out.reshape(rows, 1, heads, d), None


def register_attention() -> None:
    """Idempotent: add the function (and transformers' SDPA mask builder for it) to the interfaces."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, rollout_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


@contextlib.contextmanager
def decode_attention(base: torch.nn.Module) -> Iterator[None]:
    """The text layers' attention is `rollout_attention` inside the block and what it was before after it."""
    register_attention()
    cfg = base.config.get_text_config()
    before = cfg._attn_implementation
    cfg._attn_implementation = ATTN_NAME
    try:
        yield
    finally:
        cfg._attn_implementation = before


def prefill_mask(pad: torch.Tensor, width: int, additive_dtype: torch.dtype | None) -> torch.Tensor:
    """(n, 1, width, width) for a chunk whose row i starts at column pad[i]: causal over real tokens, and
    padding queries attend to themselves (no empty softmax row, so no NaN keys reach the cache). Eager attention
    adds its mask to the scores, so it gets an additive float mask; SDPA and registered functions take bool."""
    q = torch.arange(width, device=pad.device)
    m = (q[None, :] <= q[:, None])[None] & (q[None, None, :] >= pad[:, None, None])
    m = (m | torch.eye(width, dtype=torch.bool, device=pad.device)[None])[:, None]
    if additive_dtype is None:
        return m
    return torch.zeros(m.shape, dtype=additive_dtype, device=m.device).masked_fill(
        ~m, torch.finfo(additive_dtype).min
    )
