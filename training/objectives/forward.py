"""The loss forward: per-token log-probs (and entropies) of a `RolloutBatch`'s completions under the policy.

Two questions, answered separately: which forward produces the hidden states (`naive`: every completion with
its own copy of the prompt; `grouped`: Prefix-Grouper's shared prompt, `training.objectives.prefix_grouper`; `dense`: the
same packing with a dense mask, for tests), and which output head turns them into log-probs (`training.objectives.head`:
chunked, never holding full-vocabulary logits for all tokens, or the plain `full` head). Only the hidden states
that predict masked completion tokens reach the head, so padding and observation tokens cost no vocabulary work.

Log-probs are of logits / `temperature`: pass the sampling temperature wherever the sampling policy is meant
(ratio, KL, entropy), as `training.rollout.engine` records them.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from training.data.batch import (
    RolloutBatch,
    fed_lengths,
    is_mrope_model,
    mm_token_types,
    model_device,
    unwrap_model,
)
from training.objectives.head import EntropyMode, head_logprobs
from training.objectives.losses import FORWARDS
from training.objectives.prefix_grouper import decoder_hidden, grouped_hidden, vision_kwargs


@dataclass
class CompletionLogProbs:
    """Per-token log-probs (and entropies) of completions, (N, T) fp32, 0 where the completion mask is 0."""

    logprobs: torch.Tensor
    entropy: torch.Tensor | None = None


def naive_hidden(model: torch.nn.Module, batch: RolloutBatch) -> torch.Tensor:
    """(M, H) hidden states predicting the masked completion tokens, each row run as [prompt; completion]."""
    base = unwrap_model(model)
    device = model_device(base)
    lengths = fed_lengths(batch.completion_mask).tolist()
    n, t = batch.completion_ids.shape
    rows, types, prompts = [], [], []
    gather = torch.zeros(n, t, dtype=torch.long)
    mrope = is_mrope_model(base)
    for r in range(n):
        prompt = batch.prompts[int(batch.group_index[r])].to(device)
        prompts.append(prompt)
        ln, p = lengths[r], len(prompt)
        rows.append(torch.cat([prompt.input_ids, batch.completion_ids[r, :ln].to(device)]))
        if mrope:
            pt = (
                prompt.mm_token_type_ids
                if prompt.mm_token_type_ids is not None
                else mm_token_types(base.model, prompt.input_ids)
            )
            types.append(torch.cat([pt.to(device), torch.zeros(ln, dtype=pt.dtype, device=device)]))
        gather[r, : max(ln, 1)] = torch.arange(p - 1, p - 1 + max(ln, 1))
    width = max(len(x) for x in rows)
    input_ids = torch.full((n, width), batch.pad_token_id, dtype=torch.long, device=device)
    attn = torch.zeros((n, width), dtype=torch.long, device=device)
    for r, x in enumerate(rows):
        input_ids[r, : len(x)] = x
        attn[r, : len(x)] = 1
    kwargs: dict[str, Any] = vision_kwargs(prompts)
    if types:
        mm = torch.zeros((n, width), dtype=types[0].dtype, device=device)
        for r, x in enumerate(types):
            mm[r, : len(x)] = x
        kwargs["mm_token_type_ids"] = mm
    hidden = decoder_hidden(base, input_ids, None, attn, **kwargs)
    if mrope:
        base.model.rope_deltas = None  # the plain forward caches deltas; do not leak them into generation
    mask = batch.completion_mask.bool().cpu()
    flat = (torch.arange(n)[:, None] * width + gather)[mask].to(device)
    return hidden.reshape(n * width, -1).index_select(0, flat)


def completion_logprobs(
    model: torch.nn.Module,
    batch: RolloutBatch,
    *,
    method: str = "grouped",
    head: str = "auto",
    temperature: float = 1.0,
    entropy: EntropyMode = "none",
) -> CompletionLogProbs:
    """The one entry point for every loss: `method` picks the forward, `head` the output head (see module doc)."""
    if method == "naive":
        hidden = naive_hidden(model, batch)
    elif method in ("grouped", "dense"):
        hidden = grouped_hidden(model, batch, mode="dense" if method == "dense" else "efficient")
    elif method == "tree":  # Tree-GRPO: each tree packed once (training.objectives.tree_pack)
        from training.objectives.tree_pack import tree_hidden

        hidden = tree_hidden(model, batch)
    else:
        raise ValueError(f"loss.forward: expected one of {list(FORWARDS)}, got {method!r}")
    base = unwrap_model(model)
    device = hidden.device
    mask = batch.completion_mask.bool().to(device)
    targets = batch.completion_ids.to(device)[mask]
    logp, ent = head_logprobs(
        base.get_output_embeddings(), hidden, targets, temperature=temperature, entropy=entropy, mode=head
    )
    return CompletionLogProbs(_scatter(logp, mask), None if ent is None else _scatter(ent, mask))


def _scatter(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(M,) values of the masked positions -> (N, T) with zeros elsewhere; differentiable."""
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    return out.masked_scatter(mask, values)


@torch.no_grad()
def frozen_logprobs(
    model: torch.nn.Module,
    batch: RolloutBatch,
    *,
    method: str,
    head: str = "auto",
    temperature: float = 1.0,
    adapter_off: bool = False,
) -> torch.Tensor:
    """Log-probs without a graph, in eval mode (no dropout): the old policy's and the reference's."""
    was_training = model.training
    model.eval()
    try:
        ctx = model.disable_adapter() if adapter_off else nullcontext()
        with ctx:
            return completion_logprobs(
                model, batch, method=method, head=head, temperature=temperature
            ).logprobs
    finally:
        model.train(was_training)
