"""Sampling on merged LoRA weights: the same samples and log-probs as the unmerged layers, base weights restored
bit for bit, and only where a merge is exact (fp32, plain LoRA, CPU under `auto`)."""

from __future__ import annotations

import pytest
import torch

from training.config import ModelConfig
from training.data.batch import encode_prompts
from training.models.loading import load_policy
from training.models.lora_forward import lora_layers
from training.rollout.engine import SamplingConfig, generate_rollouts
from training.rollout.merged_lora import merged_lora

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def policy():
    pol = load_policy(ModelConfig(name="embedded:qwen2"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # peft's B = 0 would make the merge a no-op
        for name, p in pol.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return pol


def _base_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def test_merged_sampling_equals_the_lora_layers_and_restores_the_weights(policy):
    model, tok = policy.model, policy.processor
    prompts = encode_prompts(tok, ["A rash on the left forearm for two days.", "Fever and a cough."])
    before = _base_weights(model)
    got = {}
    for mode in ("off", "on"):
        cfg = SamplingConfig(num_generations=3, max_new_tokens=12, ignore_eos=True, merge_lora=mode)
        got[mode] = generate_rollouts(model, tok, prompts, cfg, torch.Generator().manual_seed(7))
    assert torch.equal(got["on"].completion_ids, got["off"].completion_ids)
    diff = (got["on"].sampling_logprobs - got["off"].sampling_logprobs).abs().max()
    assert float(diff) < 1e-4
    after = _base_weights(model)
    assert all(torch.equal(before[n], after[n]) for n in before)  # exact: restored from a copy
    assert all(not layer.merged for layer in lora_layers(model))
    with torch.no_grad(), merged_lora(model, "on") as merged:  # the merge itself changed the weights
        assert merged
        changed = _base_weights(model)
    assert any(not torch.equal(before[n], changed[n]) for n in before)
    assert all(torch.equal(before[n], p) for n, p in _base_weights(model).items())


def test_auto_merges_on_cpu_fp32_only_and_modes_are_checked(policy):
    with merged_lora(policy.model, "auto") as merged:
        assert merged  # fp32 on the CPU
    with merged_lora(policy.model, "off") as merged:
        assert not merged
    with pytest.raises(ValueError, match="rollout.merge_lora"):
        with merged_lora(policy.model, "sometimes"):
            pass
    half = load_policy(ModelConfig(name="embedded:qwen2", dtype="bfloat16"))
    with merged_lora(half.model, "on") as merged:
        assert not merged  # a bf16 weight would round the delta away: sampled unmerged
    with pytest.raises(Exception, match="merge_lora"):
        SamplingConfig(merge_lora="yes").validate()
