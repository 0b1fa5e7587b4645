import functools
import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

from training.config import LoraConfig, ModelConfig
from training.errors import ConfigError
from training.models.embedded import resolve_model_path
from training.models.loading import disable_cpu_bf16_repack, load_policy, quantization_config
from training.run.checkpoint import load_trainable

IDS = torch.tensor([[3, 25, 77, 140, 9, 61, 200, 18]])


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, text_sft_file):
    from app.cli import main

    out = tmp_path_factory.mktemp("runs")
    for quant in ("none", "4bit"):
        assert (
            main(
                [
                    "train",
                    "configs/sft_qwen2_tiny.yaml",
                    f"--data.train={text_sft_file}",
                    f"--run.output_dir={out}",
                    f"--run.name={quant}",
                    "--run.max_steps=3",
                    "--run.save_every=3",
                    f"--model.quantization={quant}",
                    "--optim.lr=1e-2",
                ]
            )
            == 0
        )
    return out


def training_logits(run_dir, quant):
    """Logits of the weights as the trainer holds them: the training load path + the step-3 checkpoint."""
    policy = load_policy(ModelConfig(name="embedded:qwen2", quantization=quant))
    load_trainable(policy.model, run_dir / "checkpoints" / "step-3" / "adapter")
    policy.model.eval()
    with torch.no_grad():
        return policy.model(input_ids=IDS).logits


def plain_reload(exp, quant: str, exact_4bit: bool = False) -> tuple[torch.Tensor, bool]:
    """Logits of the exported adapter loaded the way a user would (plain transformers + PEFT), and whether
    bitsandbytes' avx512-bf16 CPU kernel computed them. `exact_4bit` first turns that kernel off, as
    `training.models.loading.disable_cpu_bf16_repack` does for training."""
    import bitsandbytes as bnb

    cfg = json.loads((exp / "adapter_config.json").read_text())
    kwargs = {}
    if quant == "4bit":
        kwargs = {
            "quantization_config": quantization_config(ModelConfig(quantization="4bit"), torch.float32),
            "device_map": {"": "cpu"},
        }
    base = AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"], dtype=torch.float32, **kwargs)
    model = PeftModel.from_pretrained(base, str(exp)).eval()
    if exact_4bit:
        disable_cpu_bf16_repack(model)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]  # not peft's LoRA wrapper
    assert bool(layers) == (quant == "4bit")
    # bitsandbytes arms its bf16 kernel from the CPU's avx512_bf16 flag when it builds the layer
    armed = any(getattr(m, "support_avx512bf16_for_cpu", False) for m in layers)
    with torch.no_grad():
        logits = model(input_ids=IDS).logits
    # The kernel repacks the weights on its first eval no-grad forward: that it did is the proof of the path.
    repacked = any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    assert repacked == armed, "the bf16 CPU kernel path should run exactly when bitsandbytes arms it"
    return logits, repacked


# bitsandbytes' bf16 CPU kernel rounds activations and dequantised weights to bf16 (8-bit mantissa, relative
# error ~4e-3 per value) through 4 layers: measured max |dlogit| 0.0079 on the tiny Qwen2 before its copy phase,
# 0.058 after it (ENVIRONMENT.md). How far rounding carries depends on the weights, so the bound is the model's own:
# 3x the gap between the same base model in bfloat16 and in float32 on these inputs (0.037 today), at least 2e-2.
# The fp32 path matches training within 1e-5, so a wrong adapter cannot hide in the bound.
BF16_KERNEL_ATOL = 2e-2


@functools.cache
def bf16_noise() -> float:
    """max |logit| gap between the embedded base model in bfloat16 and in float32 on IDS: bf16 rounding alone."""
    path = resolve_model_path("embedded:qwen2")
    with torch.no_grad():
        full = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)(input_ids=IDS).logits
        half = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)(input_ids=IDS).logits.float()
    return (full - half).abs().max().item()


@pytest.mark.parametrize("quant", ["none", "4bit"])
def test_exported_adapter_reloads_with_plain_peft(cli, trained_runs, tmp_path, quant):
    run = trained_runs / quant
    assert cli("export", run, "--out", tmp_path / "exp") == 0
    exp = tmp_path / "exp"
    expected = training_logits(run, quant)
    plain, bf16_kernel = plain_reload(exp, quant)
    print(
        f"{quant}: bf16 CPU kernel {'on' if bf16_kernel else 'off'}, max |dlogit| "
        f"{(plain - expected).abs().max().item():.2e}"
    )
    atol = max(BF16_KERNEL_ATOL, 3 * bf16_noise()) if bf16_kernel else 1e-5
    torch.testing.assert_close(plain, expected, rtol=0, atol=atol)
    if (
        quant == "4bit"
    ):  # on every CPU, the fp32 path reproduces training exactly: a wrong adapter cannot hide
        exact, bf16_kernel = plain_reload(exp, quant, exact_4bit=True)
        assert not bf16_kernel
        torch.testing.assert_close(exact, expected, rtol=0, atol=1e-5)
    card = (exp / "README.md").read_text()
    assert "For research use only" in card and "embedded:qwen2" in card and "| loss |" in card
    assert (exp / "medrl_config.yaml").is_file()
    task = json.loads((exp / "task.json").read_text())  # how to ask it travels with the adapter
    assert task == json.loads((run / "task.json").read_text())
    assert "## How to ask it" in card and task["prompt"][0]["content"].splitlines()[0] in card


def test_adapter_changed_the_model(trained_runs):
    base = AutoModelForCausalLM.from_pretrained(
        json.loads((trained_runs / "none" / "adapter" / "adapter_config.json").read_text())[
            "base_model_name_or_path"
        ]
    )
    with torch.no_grad():
        before = base(input_ids=IDS).logits
    assert (training_logits(trained_runs / "none", "none") - before).abs().max() > 1e-3


@pytest.mark.parametrize(
    "quant, dtype, tol", [("none", "float32", 1e-4), ("4bit", "float32", 1e-4), ("none", "bfloat16", 0.05)]
)
def test_merge_matches_adapter(cli, trained_runs, tmp_path, quant, dtype, tol):
    """Merged onto a 16/32-bit base (never the 4-bit weights): logits match base+adapter in that dtype."""
    run = trained_runs / quant
    assert cli("export", run, "--out", tmp_path / "m", "--merge", "--dtype", dtype) == 0
    merged_dir = tmp_path / "m" / "merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=getattr(torch, dtype))
    assert all("lora" not in n for n, _ in merged.named_parameters())
    assert not any(type(m).__name__ == "Linear4bit" for m in merged.modules())
    base_path = json.loads((tmp_path / "m" / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype))
    ref = PeftModel.from_pretrained(base, str(tmp_path / "m")).eval()
    with torch.no_grad():
        a = merged(input_ids=IDS).logits.float()
        b = ref(input_ids=IDS).logits.float()
    assert (a - b).abs().max() <= (max(tol, 3 * bf16_noise()) if dtype == "bfloat16" else tol)
    assert "Merged model" in (tmp_path / "m" / "README.md").read_text()


def test_merge_of_lora_on_tied_head(cli, tmp_path, text_sft_file):
    """LoRA on `lm_head` and `embed_tokens` of a model whose head is tied to its embeddings (Qwen2.5-3B's layout, and
    the tiny Clinical-R1 cold start's targets), RMSNorms trained whole: the merge unties the head, so the merged
    model (reloaded plainly) gives the adapter's logits; merging into the shared matrix was off by 38 logits."""
    targets = "[q_proj,v_proj,lm_head,embed_tokens]"
    assert (
        cli(
            "train",
            "configs/sft_qwen2_tiny.yaml",
            f"--data.train={text_sft_file}",
            f"--run.output_dir={tmp_path}",
            "--run.name=t",
            "--run.max_steps=3",
            "--optim.lr=1e-2",
            f"--model.lora.target_modules={targets}",
            "--model.lora.modules_to_save=[norm]",
        )
        == 0
    )
    assert cli("export", tmp_path / "t", "--out", tmp_path / "e", "--merge", "--dtype", "float32") == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "e" / "merged", dtype=torch.float32).eval()
    assert merged.lm_head.weight is not merged.model.embed_tokens.weight
    base = AutoModelForCausalLM.from_pretrained(
        json.loads((tmp_path / "e" / "adapter_config.json").read_text())["base_model_name_or_path"],
        dtype=torch.float32,
    )
    ref = PeftModel.from_pretrained(base, str(tmp_path / "e")).eval()
    with torch.no_grad():
        a, b = merged(input_ids=IDS).logits, ref(input_ids=IDS).logits
        with ref.disable_adapter():
            plain = ref(input_ids=IDS).logits
    assert (b - plain).abs().max() > 1e-3  # the adapter changed the model
    assert (a - b).abs().max() < 1e-4


def test_vlm_export_merge_with_vision_lora(cli, tmp_path, vlm_sft_file):
    """QLoRA with `lora.vision: all`: LoRA on the vision blocks and merger (over unquantized weights) learns through
    the image (its B starts at 0), exports, reloads in plain PEFT and merges into the vision weights."""
    from safetensors.torch import load_file

    assert (
        cli(
            "train",
            "configs/sft_qwen25vl_tiny.yaml",
            f"--data.train={vlm_sft_file}",
            f"--run.output_dir={tmp_path}",
            "--run.name=v",
            "--run.max_steps=2",
            "--optim.lr=1e-2",
            "--model.quantization=4bit",
            "--model.lora.vision=all",
        )
        == 0
    )
    assert cli("export", tmp_path / "v", "--out", tmp_path / "e", "--merge", "--dtype", "float32") == 0
    weights = load_file(tmp_path / "e" / "adapter_model.safetensors")
    vision_b = {k: v for k, v in weights.items() if ".visual." in k and "lora_B" in k}
    assert any(".merger.mlp.0." in k for k in vision_b) and any(".blocks.0.attn.qkv." in k for k in vision_b)
    assert all(v.abs().max() > 0 for v in vision_b.values())  # every vision LoRA learned from the image
    base = AutoModelForImageTextToText.from_pretrained(resolve_model_path("embedded:qwen25vl"))
    reloaded = PeftModel.from_pretrained(base, tmp_path / "e")
    assert any("visual.blocks.0.attn.qkv.lora_A" in n for n, _ in reloaded.named_parameters())
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "e" / "merged")
    assert merged.config.model_type == "qwen2_5_vl"
    assert (tmp_path / "e" / "merged" / "processor_config.json").is_file()
    plain = AutoModelForImageTextToText.from_pretrained(resolve_model_path("embedded:qwen25vl"))
    key = "model.visual.blocks.0.attn.qkv.weight"
    assert (
        merged.state_dict()[key] - plain.state_dict()[key]
    ).abs().max() > 0  # the vision LoRA is in the merge


def test_vision_lora_targets_and_refusals(tmp_path):
    for vision, blocks in (("none", False), ("merger", False), ("all", True)):
        policy = load_policy(ModelConfig(name="embedded:qwen25vl", lora=LoraConfig(vision=vision)))
        names = [n for n, p in policy.model.named_parameters() if p.requires_grad]
        assert all("lora_" in n for n in names)
        assert any(".merger.mlp.2.lora_A" in n for n in names) == (vision != "none"), vision
        assert any(".visual.blocks." in n for n in names) == blocks, vision
        assert sum(".language_model." in n for n in names) == 4 * 7 * 2  # the language model's LoRA unchanged
    with pytest.raises(ConfigError, match="needs a vision-language model"):
        load_policy(ModelConfig(name="embedded:qwen2", lora=LoraConfig(vision="merger")))
    with pytest.raises(ConfigError, match="target_modules"):
        from training.config import from_dict

        from_dict(ModelConfig, {"lora": {"vision": "all", "target_modules": ["q_proj"]}}, "model")


def test_export_errors(cli, tmp_path):
    assert cli("export", tmp_path / "missing", "--out", tmp_path / "o") == 2
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("model: {name: embedded:qwen2}\n")
    assert cli("export", tmp_path / "r", "--out", tmp_path / "o") == 2
