import bitsandbytes as bnb
import pytest
import torch

from training.config import LoraConfig, ModelConfig
from training.errors import ConfigError
from training.models.loading import load_policy


def lora_grads(policy, ids):
    policy.model.train()
    policy.model.zero_grad(set_to_none=True)
    out = policy.model(input_ids=ids, labels=ids)
    out.loss.backward()
    return {n: p.grad.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name", ["embedded:qwen2", "embedded:qwen25vl"])
def test_lora_targets_language_model_only(name):
    policy = load_policy(ModelConfig(name=name))
    lora = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n for n in lora)
    assert not any("visual" in n for n in lora)
    assert {n.split(".")[-4] for n in lora} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }


def test_4bit_quantizes_language_model_but_not_vision_or_head():
    policy = load_policy(ModelConfig(name="embedded:qwen25vl", quantization="4bit"))
    kinds = {n: type(m) for n, m in policy.model.named_modules()}
    lm_linear = [n for n, t in kinds.items() if "language_model" in n and n.endswith("q_proj.base_layer")]
    assert lm_linear and all(issubclass(kinds[n], bnb.nn.Linear4bit) for n in lm_linear)
    assert not any(
        issubclass(t, bnb.nn.Linear4bit) for n, t in kinds.items() if "visual" in n or "lm_head" in n
    )
    weight = policy.model.get_base_model().model.language_model.layers[0].self_attn.q_proj.base_layer.weight
    assert weight.quant_type == "nf4" and weight.quant_state.nested  # double quant


def test_4bit_lora_gradients_after_generate_equal_fresh_load():
    """bitsandbytes' CPU bf16 repack must not break training after an eval-mode generate (ENVIRONMENT.md)."""
    cfg = ModelConfig(
        name="embedded:qwen2", quantization="4bit", lora=LoraConfig(init_weights=False, dropout=0.0)
    )
    ids = torch.tensor([[5, 17, 33, 2, 90, 41, 7, 12]])
    torch.manual_seed(0)
    fresh = lora_grads(load_policy(cfg), ids)
    torch.manual_seed(0)
    used = load_policy(cfg)
    used.model.eval()
    with torch.no_grad():
        used.model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    after = lora_grads(used, ids)
    assert fresh.keys() == after.keys()
    for n in fresh:
        assert fresh[n].abs().sum() > 0, n
        torch.testing.assert_close(after[n], fresh[n], rtol=1e-5, atol=1e-7, msg=n)


def test_missing_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is not a local folder or a hub id"):
        load_policy(ModelConfig(name=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no readable config.json"):
        load_policy(ModelConfig(name=str(tmp_path / "empty")))
    with pytest.raises(ConfigError, match="unknown embedded model 'embedded:gpt5'"):
        load_policy(ModelConfig(name="embedded:gpt5"))


def test_modules_to_save_train_and_reload(tmp_path):
    """`lora.modules_to_save: [norm]` trains every RMSNorm whole beside LoRA (and on lm_head when targeted); the saved
    adapter carries them, so a policy loaded from it gives the trained model's logits."""
    from training.run.checkpoint import save_trainable

    lora = LoraConfig(
        r=8,
        alpha=8,
        dropout=0.0,
        modules_to_save=["norm"],
        target_modules=["q_proj", "v_proj", "down_proj", "lm_head"],
    )
    policy = load_policy(ModelConfig(name="embedded:qwen2", lora=lora))
    names = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert any(n.endswith("model.norm.modules_to_save.default.weight") for n in names)
    assert any("input_layernorm.modules_to_save" in n for n in names)
    assert any("lm_head.lora_A" in n for n in names)
    ids = torch.arange(3, 40)[None]
    opt = torch.optim.SGD([p for p in policy.model.parameters() if p.requires_grad], lr=0.5)
    before = {
        n: p.detach().clone() for n, p in policy.model.named_parameters() if "model.norm.modules_to_save" in n
    }
    for _ in range(2):
        lora_grads(policy, ids)
        opt.step()
    after = dict(policy.model.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in before)
    policy.model.eval()
    with torch.no_grad():
        want = policy.model(input_ids=ids).logits
    save_trainable(policy.model, tmp_path / "adapter")
    again = load_policy(ModelConfig(name="embedded:qwen2", adapter=str(tmp_path / "adapter")))
    again.model.eval()
    with torch.no_grad():
        got = again.model(input_ids=ids).logits
    assert (got - want).abs().max().item() < 1e-5
