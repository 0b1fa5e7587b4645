"""Sampling on LoRA weights merged into the base: one matmul per projection instead of three.

A decode step of a small model on a CPU is dominated by per-operation cost, and peft's LoRA layer turns each
projection into five operations (the base matmul, A, B, the scaling, the add) plus dtype casts. The rollout needs
no gradients, so for its duration every LoRA layer's delta is added into its base weight (peft's own `merge`) and
the layer runs as a plain linear. Afterwards the base weights are restored **from a copy**, not by subtracting the
delta again: `(W + D) - D` is not `W` in floating point, and the drift would accumulate over a run's steps; the
copy makes the training forward see exactly the weights it saw before.

Only plain LoRA on fp32 base weights is merged: a 16-bit weight would round the small delta away (a weight of
0.02 has a bf16 step of about 1e-4), 4-bit and 8-bit bitsandbytes layers would be dequantized and requantized,
and DoRA and the other variants are not a plain delta; such models sample unmerged. The copies cost the
targeted weights' memory for the rollout's duration, so `auto` merges on the CPU only, where the saving is
largest and memory is cheapest; `on` merges on any device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from training.models.lora_forward import lora_layers, plain_fp32_lora

MERGE_MODES = ("auto", "on", "off")


@contextlib.contextmanager
def merged_lora(model: torch.nn.Module, mode: str = "auto") -> Iterator[bool]:
    """Inside the block, every mergeable LoRA layer runs merged; yields whether anything was merged. All or
    nothing: a model with any layer that cannot be merged exactly runs unmerged."""
    if mode not in MERGE_MODES:
        raise ValueError(f"rollout.merge_lora: expected one of {' | '.join(MERGE_MODES)}, got {mode!r}")
    layers = lora_layers(model) if mode != "off" else []
    if layers and mode == "auto":
        devices = {p.device.type for layer in layers for p in layer.base_layer.parameters()}
        layers = layers if devices == {"cpu"} else []
    if not layers or not all(plain_fp32_lora(layer) for layer in layers):
        yield False
        return
    saved = [layer.base_layer.weight.detach().clone() for layer in layers]
    try:
        with torch.no_grad():
            for layer in layers:
                layer.merge(adapter_names=list(layer.active_adapters))
        yield True
    finally:
        with torch.no_grad():
            for layer, weight in zip(layers, saved):
                if getattr(layer, "merged", False):
                    layer.unmerge()  # peft's bookkeeping (merged_adapters); the weight is then restored exactly
                layer.base_layer.weight.copy_(weight)
