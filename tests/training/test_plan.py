"""`medrl plan`: each part of the planned memory against the tensors actually allocated on the CPU (the embedded
models and a mid-size shape): the stored weights (16/32-bit and 4-bit), LoRA with its
gradient and AdamW state, the tensors autograd keeps for backward, the rollout's key/value cache. Then the plan of the
shipped 3B recipes at 12 GB through the command."""

from __future__ import annotations

import json

import pytest
import torch

from training.config import LoraConfig, ModelConfig
from training.models.loading import load_policy
from training.plan import (
    arch_of,
    kv_cache_bytes,
    model_config,
    probe_activations,
    trainable_bytes,
    weight_bytes,
)


def _storage_bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _base_bytes(model) -> int:
    """Every frozen stored tensor: parameters (4-bit packed) and the 4-bit quantisation states."""
    tensors = [p for p in model.parameters() if not p.requires_grad]
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            tensors += [qs.absmax, qs.code, qs.offset, qs.state2.absmax, qs.state2.code]
    return _storage_bytes(t for t in tensors if t is not None)


LORAS = {
    "projections": LoraConfig(r=16, alpha=32, dropout=0.0),
    # Clinical-R1's cold start: head and embeddings adapted, every RMSNorm trained whole
    "clinical cold start": LoraConfig(
        r=8,
        alpha=8,
        dropout=0.0,
        target_modules=["q_proj", "v_proj", "lm_head", "embed_tokens"],
        modules_to_save=["norm"],
    ),
}


@pytest.mark.parametrize("kind", ["qwen2", "qwen25vl"])
@pytest.mark.parametrize("lora", list(LORAS))
def test_weights_and_trainable_state_equal_the_loaded_model(kind, lora):
    cfg = ModelConfig(name=f"embedded:{kind}", lora=LORAS[lora])
    model = load_policy(cfg).model
    arch = arch_of(cfg)
    assert _base_bytes(model) == weight_bytes(arch, "none", 4)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    state = [t for s in opt.state.values() for t in s.values() if t.dim() > 0]
    assert _storage_bytes(params) + _storage_bytes(p.grad for p in params) + _storage_bytes(state) == (
        trainable_bytes(arch, 4)
    )


def test_4bit_weights_equal_the_quantized_model():
    cfg = ModelConfig(name="embedded:qwen2", quantization="4bit", lora=LORAS["projections"])
    model = load_policy(cfg).model
    assert _base_bytes(model) == weight_bytes(arch_of(cfg), "4bit", 4)


def _saved_bytes(model, fn) -> int:
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@pytest.fixture(scope="module")
def mid_size(tmp_path_factory):
    """A mid-size Qwen2 (8 layers of 512, 8 heads, 2 key/value heads), random weights, a normal HF folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from training.models.embedded import ensure_embedded

    c = AutoConfig.from_pretrained(ensure_embedded("qwen2"))
    c.hidden_size, c.intermediate_size, c.num_hidden_layers = 512, 1408, 8
    c.num_attention_heads, c.num_key_value_heads, c.head_dim = 8, 2, 64
    c.layer_types = ["full_attention"] * 8
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("mid")
    AutoModelForCausalLM.from_config(c).save_pretrained(out)
    AutoTokenizer.from_pretrained(ensure_embedded("qwen2")).save_pretrained(out)
    return str(out)


@pytest.mark.parametrize("shape", ["embedded", "mid"])
@pytest.mark.parametrize("bf16", [False, True])
def test_activations_equal_what_autograd_keeps(shape, bf16, request):
    name = "embedded:qwen2" if shape == "embedded" else request.getfixturevalue("mid_size")
    lora = LoraConfig(r=16, alpha=32, dropout=0.1)
    cfg = ModelConfig(name=name, lora=lora, dtype="bfloat16" if bf16 else "float32")
    model = load_policy(cfg).model
    model.train()  # the loss forward's mode (LoRA dropout on)
    config = model_config(name)
    probe = probe_activations(config, lora, bf16)
    tokens = 96
    ids = torch.randint(0, 1000, (1, tokens))
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with ctx:
        measured = _saved_bytes(model, lambda: model(input_ids=ids, logits_to_keep=1))
    planned = probe.bytes(config.num_hidden_layers, tokens)
    assert abs(measured - planned) <= 0.02 * measured, (measured, planned)


def test_kv_cache_equals_the_rollouts(monkeypatch):
    from training.data.batch import encode_prompts
    from training.rollout import engine
    from training.rollout.engine import SamplingConfig, generate_rollouts

    cfg = ModelConfig(name="embedded:qwen2", lora=LORAS["projections"])
    policy = load_policy(cfg, trainable=False)
    caches = []
    real = engine._cache_for

    def keep(*args, **kwargs):
        caches.append(real(*args, **kwargs))
        return caches[-1]

    monkeypatch.setattr(engine, "_cache_for", keep)
    texts = ["a " * 40, "b " * 40]
    prompts = encode_prompts(policy.tokenizer, texts, None)
    width = max(int(p.input_ids.shape[-1]) for p in prompts)
    # every row runs to the end (no group finishes early and is dropped from the cache): the planned worst case
    sampling = SamplingConfig(num_generations=3, max_new_tokens=12, temperature=1.0, seed=0, ignore_eos=True)
    generate_rollouts(policy.model, policy.tokenizer, prompts, sampling, torch.Generator().manual_seed(0))
    layers = caches[0].layers
    allocated = sum(
        t.numel() * t.element_size()
        for layer in layers
        for t in (layer.prompt_keys, layer.prompt_values, layer.keys, layer.values)
    )
    # the cache holds P - 1 prompt columns (the last prompt token is the first decode step's input)
    assert allocated == kv_cache_bytes(arch_of(cfg), 4, 2, width - 1, 3, 12)


@pytest.mark.slow
def test_plan_the_3b_recipes_at_12_gb(cli, capsys):
    assert cli("plan", "dermiq_pipeline_qwen25vl_3b", "--gpu-gb", "12") == 0
    out = capsys.readouterr().out
    assert "planned peak GPU memory at 12 GiB" in out and "grpo++" in out and "NO" not in out
    assert (
        cli("plan", "clinical_r1_qwen25_3b", "--gpu-gb", "6", "--json") == 1
    )  # CRPO's 8 x G=5 x 1024 does not fit 6
    result = json.loads(capsys.readouterr().out)
    crpo = result["stages"]["crpo"]
    assert not result["fits"] and not crpo["fits"] and result["stages"]["sft"]["fits"]
    parts = crpo["parts"]
    # Qwen2.5-3B in 4-bit: about 2 GB of weights; LoRA r=16 on 7 projections x 36 layers: 29.9M fp32 parameters
    assert 1.8e9 < parts["weights"] < 2.2e9 and parts["trainable"] == 16 * crpo["lora_params"]
    assert crpo["lora_params"] == 36 * 16 * (2 * 4096 + 2 * 2304 + 3 * 13056)
    assert crpo["peak"] == sum(parts.values()) - min(parts["rollout"], parts["activations"] + parts["head"])
