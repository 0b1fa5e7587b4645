"""The fused LoRA training forward against peft's own forward (the outside implementation): the same logits and
LoRA gradients, in train mode with dropout too, under gradient checkpointing; peft's path wherever it is not the
plain case (bf16 weights, autocast, adapters disabled)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from training.config import LoraConfig, ModelConfig
from training.models.loading import load_policy
from training.models.lora_forward import FUSED_ATTR, fuse_lora_forward, lora_layers

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = torch.tensor([[5, 17, 230, 41, 9, 77, 300, 12, 8, 64, 101, 3]])


def _policy(**model):
    pol = load_policy(ModelConfig(name="embedded:qwen2", **model))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # peft's B = 0 would hide the LoRA path
        for name, p in pol.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return pol.model


@contextlib.contextmanager
def peft_forward(model):
    """peft's class forward on every layer for the block (the instance attribute removed, then put back)."""
    saved = {m: m.__dict__.pop("forward") for m in lora_layers(model) if "forward" in m.__dict__}
    try:
        yield
    finally:
        for m, fn in saved.items():
            m.forward = fn


def _logits_and_grads(model, seed: int = 0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the dropout masks
    logits = model(input_ids=IDS).logits
    (logits.float() ** 2).mean().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach(), grads


def _assert_close(a, b, atol=1e-5):
    (la, ga), (lb, gb) = a, b
    torch.testing.assert_close(la, lb, atol=atol, rtol=1e-5)
    assert ga.keys() == gb.keys() and ga
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], atol=atol, rtol=1e-4, msg=n)


@pytest.mark.parametrize("train", [False, True])
def test_fused_forward_equals_peft(train):
    model = _policy(lora=LoraConfig(dropout=0.1))
    assert fuse_lora_forward(model) == len(lora_layers(model)) > 0  # load_policy already fused; idempotent
    model.train(train)
    fused = _logits_and_grads(model)
    with peft_forward(model):
        reference = _logits_and_grads(model)
    _assert_close(fused, reference)
    if train:  # the dropout really drew: another seed gives other logits
        assert not torch.allclose(_logits_and_grads(model, seed=1)[0], fused[0])


def test_fused_forward_under_gradient_checkpointing():
    model = _policy(gradient_checkpointing=True, lora=LoraConfig(dropout=0.0))
    model.train()
    with peft_forward(model):
        reference = _logits_and_grads(model)
    _assert_close(_logits_and_grads(model), reference)


def test_peft_path_where_not_plain():
    model = _policy(lora=LoraConfig(dropout=0.0))
    model.eval()
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(input_ids=IDS).logits
            with peft_forward(model):
                assert torch.equal(auto, model(input_ids=IDS).logits)  # autocast: peft's path, bit for bit
        with model.disable_adapter():
            off = model(input_ids=IDS).logits
        assert not torch.allclose(off, model(input_ids=IDS).logits)  # the adapter matters...
        with model.disable_adapter(), peft_forward(model):
            assert torch.equal(off, model(input_ids=IDS).logits)  # ...and disabling it is peft's base path
    half = load_policy(ModelConfig(name="embedded:qwen2", dtype="bfloat16")).model
    assert fuse_lora_forward(half) == 0
    assert not any(getattr(m, FUSED_ATTR, False) for m in lora_layers(half))
