"""The memory-lean output head: token log-probs (and entropy) from hidden states, never all logits at once.

A full-vocabulary head keeps about 16 * V bytes per scored token for backward (fp32 logits, log_softmax,
entropy temporaries): 6 GB for 2,048 completion tokens at Qwen's V = 151,936. Here the scored rows go through the
head in chunks of ``chunk_rows`` (default: about 64 MB of fp32 logits per chunk); each chunk keeps only its input
(a view of ``hidden``) and its outputs, and is recomputed in backward. Rows that fit in one chunk run once and keep
that chunk's logits for backward instead: the same peak, without the recomputation.

Why ``torch.utils.checkpoint`` around a per-chunk function rather than a hand-written ``autograd.Function`` on
``weight``: the head may be a plain ``nn.Linear``, a peft LoRA-wrapped Linear (a user targeting ``lm_head``) or a
bitsandbytes layer, and checkpointing calls the module as it is, so all three get exact gradients (LoRA
included) from one path with no per-layer-type code. The matmul count equals a fused backward's (forward,
recompute, grad-input and grad-weight GEMMs); the extra cost is elementwise work on one chunk at a time.
Inside a chunk the maths is ``training.objectives.losses.selective_log_softmax`` and ``entropy_from_logits`` in fp32.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from training.models.chat import IGNORE_INDEX
from training.objectives.losses import HEADS, entropy_from_logits, selective_log_softmax

EntropyMode = Literal["none", "stats", "grad"]
HeadMode = Literal["auto", "chunked", "full"]
ENTROPY_MODES: tuple[str, ...] = ("none", "stats", "grad")
HEAD_MODES = HEADS  # the recipe's loss.head values
CHUNK_ELEMENTS = 1 << 24  # fp32 logits per chunk: 64 MB


def default_chunk_rows(vocab: int) -> int:
    """Rows per chunk so that one chunk's fp32 logits take about 64 MB (110 rows at V = 151,936)."""
    return max(1, CHUNK_ELEMENTS // max(int(vocab), 1))


def head_logprobs(
    head: nn.Module,
    hidden: Tensor,
    targets: Tensor,
    *,
    temperature: float = 1.0,
    entropy: EntropyMode = "none",
    mode: HeadMode = "auto",
    chunk_rows: int | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """log softmax(head(hidden) / temperature)[targets] of shape ``targets.shape``, and optionally the entropy.

    ``hidden`` is (..., H) with ``targets.shape == hidden.shape[:-1]``. ``mask`` (same shape as ``targets``):
    only True positions reach the head; the others come back as exactly 0 (log-prob and entropy), and their
    targets may be anything (padding, -100). ``entropy``: "none" -> None; "stats" -> no graph, nothing kept for
    backward; "grad" -> differentiable (an entropy bonus). ``mode``: "auto" / "chunked" the lean path, "full"
    one head call with a full log_softmax (the old behaviour, for comparison). Outputs are fp32 for 16/32-bit
    heads (fp64 for an fp64 head), whatever the dtype of ``hidden``.
    """
    _check(hidden, targets, temperature, entropy, mode, chunk_rows, mask)
    shape = targets.shape
    rows = hidden.reshape(-1, hidden.shape[-1])
    flat_targets = targets.reshape(-1)
    index = None
    if mask is not None:
        index = mask.reshape(-1).to(device=rows.device).bool().nonzero().squeeze(1)
        rows, flat_targets = rows.index_select(0, index), flat_targets.to(rows.device).index_select(0, index)
    logp, ent = _row_logprobs(head, rows, flat_targets, temperature, entropy, mode, chunk_rows)
    if index is not None:
        logp = _scatter(logp, index, shape.numel())
        ent = None if ent is None else _scatter(ent, index, shape.numel())
    return logp.view(shape), None if ent is None else ent.view(shape)


def head_nll(
    head: nn.Module,
    hidden: Tensor,
    labels: Tensor,
    *,
    temperature: float = 1.0,
    mode: HeadMode = "auto",
    chunk_rows: int | None = None,
) -> tuple[Tensor, int]:
    """(sum of -log p(label) over labelled positions, their count), for SFT's token-mean cross-entropy.

    ``labels`` are aligned with ``hidden`` (..., H) already (the caller shifts); ``IGNORE_INDEX`` positions never
    reach the head. The sum is fp32 and keeps the graph even when nothing is labelled, so ``backward()`` works on
    an all-ignored micro-batch; divide by the step's token count yourself.
    """
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)} do not align")
    keep = (labels != IGNORE_INDEX).reshape(-1).to(hidden.device)
    index = keep.nonzero().squeeze(1)
    rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)
    targets = labels.reshape(-1).to(hidden.device).index_select(0, index)
    _check(rows, targets, temperature, "none", mode, chunk_rows, None)
    logp, _ = _row_logprobs(head, rows, targets, temperature, "none", mode, chunk_rows)
    return -logp.sum(), int(index.numel())


def _check(
    hidden: Tensor,
    targets: Tensor,
    temperature: float,
    entropy: str,
    mode: str,
    chunk_rows: int | None,
    mask: Tensor | None,
) -> None:
    if hidden.dim() < 1 or hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and targets {tuple(targets.shape)} do not align")
    if mask is not None and mask.shape != targets.shape:
        raise ValueError(f"mask {tuple(mask.shape)} and targets {tuple(targets.shape)} do not align")
    if isinstance(temperature, bool) or not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite float > 0, got {temperature!r}")
    if entropy not in ENTROPY_MODES:
        raise ValueError(f"entropy must be one of {list(ENTROPY_MODES)}, got {entropy!r}")
    if mode not in HEAD_MODES:
        raise ValueError(f"mode must be one of {list(HEAD_MODES)}, got {mode!r}")
    if chunk_rows is not None and (
        isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1
    ):
        raise ValueError(f"chunk_rows must be an int >= 1 or None, got {chunk_rows!r}")


def _scatter(values: Tensor, index: Tensor, size: int) -> Tensor:
    """Values at ``index`` of a zero vector; out-of-place so the gradient flows back to ``values``."""
    return values.new_zeros(size).index_copy(0, index, values)


def _row_logprobs(
    head: nn.Module,
    rows: Tensor,
    targets: Tensor,
    temperature: float,
    entropy: str,
    mode: str,
    chunk_rows: int | None,
) -> tuple[Tensor, Tensor | None]:
    """(n,) log-probs and entropy of (n, H) rows."""
    if rows.shape[0] == 0:
        dtype = torch.promote_types(rows.dtype, torch.float32)
        empty = rows.new_zeros(0, dtype=dtype) + rows.reshape(-1)[:0].to(dtype).sum()  # keeps the graph
        if entropy == "none":
            return empty, None
        return empty, empty if entropy == "grad" else empty.detach()
    targets = targets.to(rows.device).long()
    if mode == "full":
        return _full(head, rows, targets, temperature, entropy)
    return _chunked(
        head, rows, targets, temperature, entropy, chunk_rows or default_chunk_rows(_vocab(head, rows))
    )


def _vocab(head: nn.Module, rows: Tensor) -> int:
    """Output width of ``head``: nn.Linear, peft and bitsandbytes layers all carry ``out_features``."""
    width = getattr(head, "out_features", None)
    if isinstance(width, int) and width > 0:
        return width
    with torch.no_grad():
        return int(head(_as_input(head, rows[:1])).shape[-1])


def _as_input(head: nn.Module, rows: Tensor) -> Tensor:
    """Rows in the head's floating weight dtype (bf16 hidden into an fp32 head, or back); quantized heads cast
    for themselves."""
    weight = getattr(head, "weight", None)
    if isinstance(weight, Tensor) and weight.is_floating_point() and weight.dtype != rows.dtype:
        return rows.to(weight.dtype)
    return rows


def _logits(head: nn.Module, rows: Tensor, temperature: float) -> Tensor:
    """fp32 (fp64 for an fp64 head) logits / temperature (log pi/T is the sampling policy)."""
    logits = head(_as_input(head, rows))
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits if temperature == 1.0 else logits / temperature


def _full(
    head: nn.Module, rows: Tensor, targets: Tensor, temperature: float, entropy: str
) -> tuple[Tensor, Tensor | None]:
    """The old head: one call, a full fp32 log_softmax kept for backward (about 16 * V bytes per row)."""
    logp_all = torch.log_softmax(_logits(head, rows, temperature), -1)
    logp = logp_all.gather(-1, targets[:, None])[:, 0]
    if entropy == "none":
        return logp, None
    with torch.set_grad_enabled(entropy == "grad" and torch.is_grad_enabled()):
        ent = -(logp_all.exp() * logp_all).sum(-1)
    return logp, ent


def _chunked(
    head: nn.Module, rows: Tensor, targets: Tensor, temperature: float, entropy: str, chunk_rows: int
) -> tuple[Tensor, Tensor | None]:
    graph = torch.is_grad_enabled()  # not "does anything require grad": a head may close over such tensors
    if graph and rows.shape[0] <= chunk_rows:
        # One chunk: its logits are the head's peak whether they are kept for backward or recomputed there, so
        # recomputing would only cost a second head matmul and softmax.
        return _chunk(head, rows, targets, temperature, entropy, [])
    logps, ents = [], []
    for h, t in zip(rows.split(chunk_rows), targets.split(chunk_rows)):
        if not graph:
            with torch.no_grad():
                lp, ent = _chunk(head, h, t, temperature, entropy, [])
        elif entropy == "stats":
            sink: list[Tensor] = []
            lp = checkpoint(_chunk, head, h, t, temperature, entropy, sink, use_reentrant=False)[0]
            ent = sink[0]
        else:
            lp, ent = checkpoint(_chunk, head, h, t, temperature, entropy, [], use_reentrant=False)
        logps.append(lp)
        ents.append(ent)
    logp = torch.cat(logps) if len(logps) > 1 else logps[0]
    if entropy == "none":
        return logp, None
    return logp, torch.cat(ents) if len(ents) > 1 else ents[0]


def _chunk(
    head: nn.Module, rows: Tensor, targets: Tensor, temperature: float, entropy: str, sink: list[Tensor]
) -> tuple[Tensor, Tensor | None]:
    """One chunk, run twice under checkpointing (forward, then recomputed in backward).

    "stats" entropy is computed without a graph on the first run only and handed out through ``sink``: the
    recompute saves the same tensors without it, and skips a softmax over the chunk.
    """
    logits = _logits(head, rows, temperature)
    blocks = logits.shape[
        0
    ]  # one block: smaller ones measured worse on the CPU (heap fragmentation, not mmap)
    logp = selective_log_softmax(logits, targets, chunk_rows=blocks)
    if entropy == "grad":
        return logp, entropy_from_logits(logits, chunk_rows=blocks)
    if entropy == "stats" and not sink:
        with torch.no_grad():
            sink.append(entropy_from_logits(logits.detach(), chunk_rows=blocks))
    return logp, sink[0] if sink else None
