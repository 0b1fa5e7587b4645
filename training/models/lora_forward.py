"""The LoRA layer's training forward as one fused multiply-add: `base(x) + (A(x) * s) @ B^T` in a single `addmm`.

peft computes `result + lora_B(lora_A(dropout(x))) * scaling`: the B product, the scaling and the add each write
a full (tokens x out_features) tensor, forward and again backward. Scaling the r-wide intermediate instead and
adding the B product into the base output inside one `addmm` gives the same function with two of those three
full-width passes gone. On the CPU at the embedded shapes (8,192 packed tokens, r=16) this is about 5% of the loss
forward and backward; the matmuls are unchanged, so on a GPU it saves little and costs nothing.

Only plain LoRA on an fp32 `nn.Linear` base is fused (the layers `plain_fp32_lora` accepts: the rollout merges
the same ones), and each call falls back to peft's own forward whenever anything is not the plain case: adapters
disabled (the reference policy) or merged (the rollout), several or no active adapters, per-call arguments
(`adapter_names`), a LoRA bias, non-fp32 input or autocast. The forward is replaced on the instance, for good,
so that gradient checkpointing's recomputation in backward runs the same function as the forward did.
"""

from __future__ import annotations

import types

import torch

FUSED_ATTR = "_medrl_fused_lora"


def lora_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """peft's LoRA layers of ``model`` with an active adapter (an empty list for a model without adapters)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # peft is a dependency; a model without it has no LoRA layers
        return []
    return [m for m in model.modules() if isinstance(m, LoraLayer) and m.active_adapters]


def plain_fp32_lora(layer: torch.nn.Module) -> bool:
    """A plain LoRA delta (no DoRA or other variant) on an unmerged fp32 `nn.Linear`: exact to merge and to fuse."""
    base = getattr(layer, "base_layer", None)
    weight = getattr(base, "weight", None)
    return (
        type(base) is torch.nn.Linear
        and weight is not None
        and weight.dtype == torch.float32
        and not getattr(layer, "merged", False)
        and not getattr(layer, "lora_variant", {})
    )


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """One layer's forward (bound to the layer by `fuse_lora_forward`); peft's own for anything but the plain case."""
    active = self.active_adapters
    name = active[0] if len(active) == 1 else None
    if (
        args
        or kwargs
        or name is None
        or self.disable_adapters
        or self.merged
        or name not in self.lora_A
        or name in self.lora_variant
        or self.lora_B[name].bias is not None
        or x.dtype != torch.float32
        or torch.is_autocast_enabled(x.device.type)
    ):
        return type(self).forward(self, x, *args, **kwargs)
    out = self.base_layer(x)
    # scaled at (..., r), the narrow end, then added into the base output by the matmul itself
    low = self.lora_A[name](self.lora_dropout[name](x)) * self.scaling[name]
    flat = torch.addmm(
        out.reshape(-1, out.shape[-1]), low.reshape(-1, low.shape[-1]), self.lora_B[name].weight.t()
    )
    return flat.view(out.shape)


def fuse_lora_forward(model: torch.nn.Module) -> int:
    """Give every plain fp32 LoRA layer of ``model`` the fused forward (idempotent); returns how many have it."""
    count = 0
    for layer in lora_layers(model):
        if getattr(layer, FUSED_ATTR, False):
            count += 1
        elif plain_fp32_lora(layer):
            layer.forward = types.MethodType(_fused_forward, layer)
            setattr(layer, FUSED_ATTR, True)
            count += 1
    return count
