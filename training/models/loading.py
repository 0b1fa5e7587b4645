"""Load a policy: hub id, local folder or embedded default -> (Q)LoRA model + its processor or tokenizer.

One path for every source: `embedded:*` resolves to a cached folder and then goes through the same
`from_pretrained` calls as a real checkpoint. With `quantization: 4bit` the language model's linear layers are
bitsandbytes nf4 (double quant, bf16 compute); the vision tower and `lm_head` stay in 16/32-bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.config import LoraConfig, ModelConfig
from training.errors import ConfigError
from training.models.embedded import resolve_model_path
from training.models.lora_forward import fuse_lora_forward

# Language-model projections of Qwen2 / Qwen2.5-VL; the regex keeps LoRA off the vision tower (whose MLP
# reuses the names gate_proj/up_proj/down_proj).
LM_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_LM_TARGETS = r"(?!.*\bvisual\b).*\.(" + "|".join(LM_PROJECTIONS) + ")"
AUTO_TARGETS = f"^{_LM_TARGETS}$"
# `lora.vision`: Qwen2.5-VL's patch merger (mlp.0, mlp.2) and, for `all`, every vision block's attention and MLP.
VISION_TARGETS = {
    "merger": r".*\bvisual\.merger\.mlp\.[02]",
    "all": r".*\bvisual\.(merger\.mlp\.[02]|blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate_proj|up_proj|down_proj)))",
}
# Matched from the start of module names by transformers' bnb integration (ENVIRONMENT.md).
QUANT_SKIP = ["model.visual", "visual", "lm_head"]


@dataclass
class Policy:
    """A loaded policy and what callers need beside it."""

    model: Any  # peft.PeftModel when LoRA is on, else the transformers model
    processor: Any  # AutoProcessor for VLMs, the tokenizer for text models
    tokenizer: Any
    is_vlm: bool
    device: torch.device
    dtype: torch.dtype
    base_path: str  # what from_pretrained was given (the resolved embedded folder, a hub id, a local dir)
    config: ModelConfig


def pick_device(name: str = "auto") -> torch.device:
    if (
        name == "auto"
    ):  # under torchrun, `training.run.distributed.setup` made this rank's GPU the current one
        return (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"model.device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"model.device: '{name}' requested but no CUDA device is available")
    return dev


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _load_config(path: str):
    from transformers import AutoConfig

    local = Path(path)
    if not local.exists() and (path.startswith((".", "/", "~")) or path.count("/") != 1):
        raise ConfigError(f"model.name: '{path}' is not a local folder or a hub id (org/name)")
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        where = (
            "folder has no readable config.json" if local.exists() else "could not be fetched from the hub"
        )
        raise ConfigError(f"model.name: '{path}' {where} ({str(e).splitlines()[0][:160]})") from None


def is_vlm_config(config) -> bool:
    return getattr(config, "vision_config", None) is not None


def quantization_config(cfg: ModelConfig, compute_dtype: torch.dtype):
    from transformers import BitsAndBytesConfig

    if cfg.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if compute_dtype != torch.float32 else torch.float32,
            llm_int8_skip_modules=QUANT_SKIP,
        )
    if cfg.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=QUANT_SKIP)
    return None


def disable_cpu_bf16_repack(model) -> int:
    """Stop bitsandbytes' one-way avx512-bf16 weight repack on CPU, which breaks LoRA gradients after an
    eval-mode forward (ENVIRONMENT.md). Returns how many layers were touched."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load_base(cfg: ModelConfig):
    """The base model (optionally quantized) and its processor/tokenizer, with no adapter."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    path = resolve_model_path(cfg.name)
    hf_config = _load_config(path)
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    vlm = is_vlm_config(hf_config)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": cfg.attn_implementation}
    qcfg = quantization_config(cfg, dtype)
    if qcfg is not None:
        kwargs["quantization_config"] = qcfg
        kwargs["device_map"] = {"": str(device) if device.type == "cpu" else device.index or 0}
    auto = AutoModelForImageTextToText if vlm else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(path, **kwargs)
        processor = (AutoProcessor if vlm else AutoTokenizer).from_pretrained(path)
    except OSError as e:
        raise ConfigError(f"model.name: could not load '{path}': {str(e).splitlines()[0][:200]}") from None
    if qcfg is None:
        model.to(device)
    else:
        disable_cpu_bf16_repack(model)
    tokenizer = processor.tokenizer if vlm else processor
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, processor, tokenizer, vlm, device, dtype, path


def lora_targets(lora: LoraConfig) -> str | list[str]:
    """peft's `target_modules`: the language model's projections (`auto`), plus the vision side `lora.vision` asks
    for, as one regex; or the recipe's own list."""
    if lora.target_modules != "auto":
        return lora.target_modules
    if lora.vision == "none":
        return AUTO_TARGETS
    return f"^(?:{_LM_TARGETS}|{VISION_TARGETS[lora.vision]})$"


def peft_lora_config(lora: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias="none",
        target_modules=lora_targets(lora),
        init_lora_weights=lora.init_weights,
        modules_to_save=lora.modules_to_save,
        task_type="CAUSAL_LM",
    )


def check_adapter(adapter: str | Path, key: str = "model.adapter") -> Path:
    """An adapter folder (an exported adapter or a run's `adapter/`), or a one-line error naming it."""
    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise ConfigError(f"{key}: '{adapter}' is not an adapter folder (no adapter_config.json)")
    return path


def load_policy(cfg: ModelConfig, adapter: str | Path | None = None, trainable: bool = True) -> Policy:
    """Base + LoRA (fresh, or loaded from `adapter` / `cfg.adapter`: stages chain), frozen base weights,
    optional gradient checkpointing. A loaded adapter keeps its own LoRA settings; `cfg.lora` is then unused."""
    from peft import PeftModel, get_peft_model

    adapter = adapter if adapter is not None else cfg.adapter
    if adapter is not None:
        check_adapter(adapter)
    model, processor, tokenizer, vlm, device, dtype, path = load_base(cfg)
    if cfg.lora.enabled and cfg.lora.vision != "none" and adapter is None and not vlm:
        raise ConfigError(
            f"model.lora.vision: {cfg.lora.vision} needs a vision-language model; {cfg.name} is text only"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if adapter is not None:
        _warn_if_other_base(adapter, path)
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    elif cfg.lora.enabled:
        model = get_peft_model(model, peft_lora_config(cfg.lora))
    elif trainable:
        for p in model.parameters():
            p.requires_grad_(True)
    if cfg.quantization != "none":
        disable_cpu_bf16_repack(model)  # LoRA wrapping keeps the bnb layers; set again to be sure
    fuse_lora_forward(model)  # fp32 plain LoRA: one addmm per layer (training.models.lora_forward)
    return Policy(
        model=model,
        processor=processor,
        tokenizer=tokenizer,
        is_vlm=vlm,
        device=device,
        dtype=dtype,
        base_path=path,
        config=cfg,
    )


def autocast_context(precision: str, device: torch.device):
    """bf16 autocast where the run asks for it (`auto`: on CUDA); a no-op context otherwise."""
    from contextlib import nullcontext

    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()


def _warn_if_other_base(adapter: str | Path, base_path: str) -> None:
    recorded = read_adapter_base(adapter)
    if (
        recorded
        and Path(recorded).exists()
        and Path(base_path).exists()
        and Path(recorded).resolve() != Path(base_path).resolve()
    ):
        print(f"medrl: warning: {adapter} was trained on {recorded}, now loaded onto {base_path}")


def trainable_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def describe(policy: Policy) -> dict:
    """Counts for logs and model cards."""
    total = sum(p.numel() for p in policy.model.parameters())
    trainable = sum(p.numel() for _, p in trainable_parameters(policy.model))
    return {
        "base": policy.config.name,
        "path": policy.base_path,
        "vlm": policy.is_vlm,
        "quantization": policy.config.quantization,
        "dtype": str(policy.dtype).replace("torch.", ""),
        "device": str(policy.device),
        "params_total": total,
        "params_trainable": trainable,
    }


def read_adapter_base(adapter_dir: str | Path) -> str:
    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    return cfg.get("base_model_name_or_path", "")
