"""`medrl plan RECIPE --gpu-gb N`: the peak GPU memory a recipe's stages need, part by part, before a run starts.

A user with a 12 GB card wants to know whether a recipe fits without loading 3B weights to find out. The plan
counts what the trainer will hold, per stage, from the recipe and the model's config alone:

- **weights**: every parameter of the model built on the `meta` device (no memory, no download: a hub id that is
  not on disk uses its published sizes, `training.models.shapes`), each at its stored size: the language model's
  linear weights in 4-bit nf4 with double quantisation (0.5 byte + a uint8 absmax per 64 + an fp32 absmax per
  256 blocks) or 8-bit (1 byte + an fp32 scale per row), the vision tower, embeddings, norms and `lm_head` in the
  model dtype (`training.models.loading.QUANT_SKIP`).
- **trainable**: LoRA's A/B (fp32, peft's default beside a 16-bit base) and `modules_to_save` copies (model dtype),
  each with its gradient and AdamW's two moments; **reference**: one more copy of them for a `start` or `lagged`
  reference (`base` needs none).
- **activations**: what autograd keeps for the backward pass of one micro-batch. Not guessed: a two-layer slice of
  the model at its real widths, with the recipe's LoRA and precision, runs a short forward on the CPU and every
  tensor saved for backward is counted (`probe_activations`); the bytes per token per layer (and per token
  outside the layers) it finds are linear in the tokens, so they scale to the micro-batch: RL's Prefix-Grouper
  forward holds each prompt once and its G completions (`loss.forward: grouped`), SFT `batch_size x max_length`,
  DPO twice that. With gradient checkpointing only each layer's input is kept, plus one layer recomputed in the
  backward. The **head** is the lean head's fp32 chunk of logits (about 64 MB; `loss.head: full` holds every
  scored token's logits).
- **rollout** (RL): the rollout's key/value cache (`training.rollout.kv_cache`: each prompt once, G rows of answer)
  and the sampler's fp32 logits; rollout and the loss forward never hold their buffers at the same time.
- **overhead**: the CUDA context (about 0.5 GiB, outside PyTorch's own count) and 10% allocator slack.

Peak = weights + trainable + reference + max(rollout, activations + head) + overhead. What the plan cannot see is
said in its notes: the prompt length (`--prompt-tokens`, plus 256 image tokens per 448 px image for a VLM), the
vision tower's transient activations, and fragmentation beyond the slack. The CPU checks (tests/training/test_plan.py)
compare each part with the tensors actually allocated on the embedded and a mid-size model; `medrl bench gpu` gives
the measured peak on a GPU.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 2**30
CUDA_CONTEXT = GIB // 2  # the CUDA context and kernels, outside torch.cuda.max_memory_allocated
SLACK = 0.10  # caching-allocator slack over the allocated bytes
HEAD_CHUNK_BYTES = 3 * (1 << 24) * 4  # the lean head: one chunk's fp32 logits, their softmax and gradient
IMAGE_TOKENS_448 = 256  # a 448x448 image after Qwen2.5-VL's 14 px patches and 2x2 merge
NF4_STATE = 4 * (256 + 16 + 1)  # per 4-bit weight: the nested absmax code, the nf4 code and the offset (fp32)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class Arch:
    """A model's sizes and its parameters by how they are stored, read from its config (nothing loaded)."""

    layers: int
    hidden: int
    heads: int
    kv_dim: int  # key/value width of one layer (kv heads x head dim)
    vocab: int
    vlm: bool
    quantizable: int  # language-model linear weights (quantized under 4/8-bit)
    quantizable_rows: int  # their output rows (8-bit keeps an fp32 scale per row)
    quantizable_modules: int
    quantizable_sizes: tuple[int, ...]  # each such weight's parameters (4-bit blocks are per weight)
    dense: int  # everything else of the language model: embeddings, norms, biases, an untied lm_head
    vision: int  # the vision tower and merger (never quantized)
    lora: int  # LoRA A and B parameters for the recipe's targets and rank
    saved: int  # modules_to_save parameters (trained whole)


def model_config(name: str):
    """The model's transformers config: a local folder or embedded model, a published shape known here, or the
    hub cache; never a download."""
    from transformers import AutoConfig

    from training.errors import ConfigError
    from training.models.embedded import EMBEDDED_PREFIX, resolve_model_path
    from training.models.shapes import known_config

    if name.startswith(EMBEDDED_PREFIX) or Path(name).is_dir():
        return AutoConfig.from_pretrained(resolve_model_path(name))
    known = known_config(name)
    if known is not None:
        return known
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # not a valid repo id
        cached = None
    if isinstance(cached, str):
        return AutoConfig.from_pretrained(Path(cached).parent)
    raise ConfigError(
        f"model.name: no config.json for '{name}' on disk or in the hub cache; fetch it once "
        f"(`huggingface-cli download {name} config.json`) or give a local folder"
    )


def meta_model(config):
    """The model built on the meta device: real module tree and shapes, no memory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    auto = (
        AutoModelForImageTextToText
        if getattr(config, "vision_config", None) is not None
        else AutoModelForCausalLM
    )
    with torch.device("meta"):
        return auto.from_config(config)


def arch_of(model_cfg, config=None) -> Arch:
    """Count the parameters of ``model_cfg``'s model by storage class, with its LoRA settings applied as peft
    would (the same target matching)."""
    import torch
    from peft.tuners.tuners_utils import check_target_module_exists

    from training.models.loading import QUANT_SKIP, peft_lora_config

    config = config if config is not None else model_config(model_cfg.name)
    text = config.get_text_config()
    model = meta_model(config)
    lora_cfg = peft_lora_config(model_cfg.lora) if model_cfg.lora.enabled else None
    saved_names = list(model_cfg.lora.modules_to_save or []) if model_cfg.lora.enabled else []
    q = rows = qmods = dense = vision = lora = saved = 0
    sizes = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        n = sum(p.numel() for p in own)
        in_vision = "visual" in name.split(".")
        if in_vision:
            vision += n
        elif isinstance(module, torch.nn.Linear) and not any(k in name for k in QUANT_SKIP):
            q += module.weight.numel()
            sizes.append(module.weight.numel())
            rows += module.out_features
            qmods += 1
            dense += n - module.weight.numel()  # the bias stays 16-bit
        else:
            dense += n
        if lora_cfg is not None and check_target_module_exists(lora_cfg, name):
            if isinstance(module, torch.nn.Linear):
                lora += model_cfg.lora.r * (module.in_features + module.out_features)
            elif isinstance(module, torch.nn.Embedding):
                lora += model_cfg.lora.r * (module.num_embeddings + module.embedding_dim)
        if saved_names and any(name.endswith(s) for s in saved_names):  # peft: a suffix match
            saved += n
    # a tied lm_head is the embedding itself; named_modules saw its weight twice
    if getattr(text, "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False):
        out = model.get_output_embeddings()
        if out is not None and out.weight is model.get_input_embeddings().weight:
            dense -= out.weight.numel()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return Arch(
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        heads=text.num_attention_heads,
        kv_dim=text.num_key_value_heads * head_dim,
        vocab=text.vocab_size,
        vlm=getattr(config, "vision_config", None) is not None,
        quantizable=q,
        quantizable_rows=rows,
        quantizable_modules=qmods,
        quantizable_sizes=tuple(sizes),
        dense=dense,
        vision=vision,
        lora=lora,
        saved=saved,
    )


def weight_bytes(arch: Arch, quantization: str, dtype_bytes: int) -> int:
    """The model's stored bytes: quantized linear weights plus everything kept in the model dtype."""
    if quantization == "4bit":  # packed nf4, uint8 absmax per 64, fp32 absmax per 256 blocks, the fp32 codes
        q = sum(
            n // 2 + _blocks(n) + 4 * math.ceil(_blocks(n) / 256) + NF4_STATE for n in arch.quantizable_sizes
        )
    elif quantization == "8bit":
        q = arch.quantizable + 4 * arch.quantizable_rows
    else:
        q = arch.quantizable * dtype_bytes
    return q + (arch.dense + arch.vision) * dtype_bytes


def _blocks(n: int) -> int:
    return math.ceil(n / 64)


def kv_cache_bytes(arch: Arch, dtype_bytes: int, prompts: int, prompt_len: int, g: int, answer: int) -> int:
    """The rollout cache (`training.rollout.kv_cache`): per layer, keys and values of each prompt once (its longest
    prompt's width) and of G answer rows per prompt. The sampler's logits are added by the caller."""
    return arch.layers * 2 * arch.kv_dim * dtype_bytes * prompts * (prompt_len + g * answer)


def trainable_bytes(arch: Arch, dtype_bytes: int) -> int:
    """LoRA (fp32) and modules_to_save (model dtype): parameter, gradient and AdamW's two moments each."""
    return 4 * 4 * arch.lora + 4 * dtype_bytes * arch.saved


@dataclass(frozen=True)
class Activations:
    """Bytes autograd keeps for backward: per layer, ``per_token`` x tokens + ``per_layer``; outside the layers,
    ``outside_per_token`` x tokens + ``outside``."""

    per_token: float
    per_layer: float
    outside_per_token: float
    outside: float

    def bytes(self, layers: int, tokens: int) -> float:
        return (
            layers * (self.per_token * tokens + self.per_layer)
            + self.outside_per_token * tokens
            + self.outside
        )

    def one_layer(self, tokens: int) -> float:
        return self.per_token * tokens + self.per_layer


def probe_activations(config, lora, precision_bf16: bool, tokens: int = 32) -> Activations:
    """What autograd keeps for backward, counted on one- and two-layer slices of the model at its real widths, at
    ``tokens`` and twice that (uninitialised weights, CPU, the recipe's LoRA and precision): storages counted once,
    parameters not at all, so the four counts give the per-token and per-layer terms exactly. With gradient
    checkpointing the caller keeps each layer's input and one recomputed layer. Cached per widths, LoRA, precision."""
    text = config.get_text_config()
    widths = (text.hidden_size, text.intermediate_size, text.num_attention_heads, text.num_key_value_heads)
    targets = lora.target_modules if isinstance(lora.target_modules, str) else tuple(lora.target_modules)
    key = (lora.enabled, lora.r, lora.alpha, targets, lora.dropout) if lora.enabled else (False,)
    return _probe(widths, key, precision_bf16, tokens)


@functools.lru_cache(maxsize=16)
def _probe(widths: tuple, lora_key: tuple, precision_bf16: bool, tokens: int) -> Activations:
    import torch
    from peft import get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from training.config import LoraConfig
    from training.models.loading import peft_lora_config
    from training.models.lora_forward import fuse_lora_forward

    hidden, inter, heads, kv_heads = widths
    dtype = torch.bfloat16 if precision_bf16 else torch.float32
    lora = (
        LoraConfig(
            r=lora_key[1],
            alpha=lora_key[2],
            dropout=lora_key[4],  # active: the slice is in train mode, as the loss forward is
            target_modules=list(lora_key[3]) if isinstance(lora_key[3], tuple) else lora_key[3],
        )
        if lora_key[0]
        else None
    )

    def saved(layers: int, tokens: int) -> int:
        c = Qwen2Config(
            hidden_size=hidden,
            intermediate_size=inter,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            num_hidden_layers=layers,
            vocab_size=64,
            tie_word_embeddings=True,
        )
        with torch.device("meta"):  # sizes are all that matter: no initialisation, uninitialised memory
            model = Qwen2ForCausalLM(c).to(dtype)
        model = model.to_empty(device="cpu")
        for p in model.parameters():
            p.requires_grad_(False)
        if lora is not None:  # modules_to_save copies are trained state, not activations: not in the slice
            model = get_peft_model(model, peft_lora_config(lora))
            fuse_lora_forward(model)  # the training forward load_policy gives
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen: dict[int, int] = {}

        def pack(t):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in params:
                seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
            return t

        ids = torch.randint(0, 64, (1, tokens))
        ctx = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if precision_bf16
            else torch.autocast("cpu", enabled=False)
        )
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx:
            model(input_ids=ids, logits_to_keep=1)
        return sum(seen.values())

    # saved(L, T) = L * (a T + c) + b T + d: per layer, a per token and c once (the LoRA weights autocast copies to
    # bf16 for the backward); outside the layers, b per token (rotary tables, the final norm) and d once
    t1, t2 = tokens, 2 * tokens
    s11, s21, s12, s22 = saved(1, t1), saved(2, t1), saved(1, t2), saved(2, t2)
    layer_t1, layer_t2 = s21 - s11, s22 - s12
    a = (layer_t2 - layer_t1) / (t2 - t1)
    c = layer_t1 - a * t1
    b = ((s12 - layer_t2) - (s11 - layer_t1)) / (t2 - t1)
    d = (s11 - layer_t1) - b * t1
    return Activations(a, c, b, d)


@dataclass
class Shape:
    """What the plan assumes about the data (the recipe does not say it)."""

    prompt_tokens: int = 512  # text tokens of a prompt (RL) ; SFT/DPO use data.max_length
    images: int = 1  # images per prompt for a VLM
    image_px: int = 448  # their side (Qwen2.5-VL: 28 px per merged token)
    processes: int = 1  # torchrun processes sharing the step (prompts are dealt out)


def image_tokens(shape: Shape, vlm: bool) -> int:
    return shape.images * (shape.image_px // 28) ** 2 if vlm else 0


def plan_stage(cfg, shape: Shape = Shape(), config=None, device_dtype: str = "bfloat16") -> dict[str, Any]:
    """The parts (bytes) of one trainer config's peak on a GPU, and what they assume."""
    from training.rollout.tree import rows_per_prompt

    config = config if config is not None else model_config(cfg.model.name)
    arch = arch_of(cfg.model, config)
    dtype_name = cfg.model.dtype if cfg.model.dtype != "auto" else device_dtype
    a = DTYPE_BYTES[dtype_name]
    bf16 = cfg.run.precision in ("bf16", "auto") and a == 2
    probe = probe_activations(config, cfg.model.lora, bf16)
    prompt = shape.prompt_tokens + image_tokens(shape, arch.vlm)
    notes = []
    if cfg.trainer == "rl":
        g = rows_per_prompt(cfg.rollout)
        answer = cfg.rollout.max_new_tokens * (cfg.rollout.max_turns if cfg.rollout.env else 1)
        prompts = math.ceil(cfg.prompts_per_step / shape.processes)
        per_micro = math.ceil(prompts / cfg.grad_accum)
        grouped = cfg.loss.forward in ("grouped", "tree", "auto")
        tokens = per_micro * ((prompt + g * answer) if grouped else g * (prompt + answer))
        scored = per_micro * g * answer
        rollout = kv_cache_bytes(arch, a, prompts, prompt, g, answer) + prompts * g * arch.vocab * 4 * 2
        notes.append(
            f"RL: {prompts} prompt(s) of {prompt} tokens, G={g}, {answer} answer tokens; a micro-batch holds "
            f"{per_micro} group(s): {tokens} tokens through the model"
        )
    else:
        rows = cfg.batch_size * (2 if cfg.trainer == "dpo" else 1)
        tokens = rows * cfg.data.max_length
        scored = tokens
        rollout = 0
        notes.append(
            f"{cfg.trainer.upper()}: {rows} sequence(s) of {cfg.data.max_length} tokens a micro-batch"
        )
    if cfg.model.gradient_checkpointing:  # each layer's input kept, one layer recomputed in the backward
        acts = arch.layers * tokens * arch.hidden * a + probe.bytes(0, tokens) + probe.one_layer(tokens)
    else:
        acts = probe.bytes(arch.layers, tokens)
    lean = getattr(getattr(cfg, "loss", None), "head", "auto") != "full"  # SFT's head is always chunked
    head = HEAD_CHUNK_BYTES if lean else 3 * scored * arch.vocab * 4
    reference = 0
    ref = getattr(cfg, "reference", None)
    if ref is not None and ref.kind in ("start", "lagged"):
        reference = 4 * arch.lora + a * arch.saved
    parts = {
        "weights": weight_bytes(arch, cfg.model.quantization, a),
        "trainable": trainable_bytes(arch, a),
        "reference": reference,
        "activations": int(acts),
        "head": int(head),
        "rollout": int(rollout),
    }
    allocated = (
        parts["weights"]
        + parts["trainable"]
        + reference
        + max(parts["rollout"], parts["activations"] + parts["head"])
    )
    parts["overhead"] = CUDA_CONTEXT + int(SLACK * allocated)
    if arch.vlm:
        notes.append("the vision tower's transient activations (no gradient) are not counted")
    return {
        "model": cfg.model.name,
        "quantization": cfg.model.quantization,
        "dtype": dtype_name,
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "lora_params": arch.lora + arch.saved,
        "activation_bytes_per_token_per_layer": probe.per_token,
        "parts": parts,
        "peak": allocated + parts["overhead"],
        "notes": notes,
    }


def stage_configs(recipe: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """{stage name: trainer config} of a recipe: a single-stage recipe (its run name) or every stage section of a
    pipeline recipe; a section without data gets a placeholder (the plan reads no data)."""
    from training.config import from_dict, merge, parse_overrides, read_yaml
    from training.errors import ConfigError
    from training.recipes import resolve
    from training.trainers.trainer_kinds import config_class

    path = resolve(recipe)
    raw = merge(read_yaml(path), parse_overrides(overrides or []))
    sections = (
        {
            k: v
            for k, v in raw.items()
            if isinstance(v, dict) and "trainer" in v and not str(k).startswith("_")
        }
        if isinstance(raw.get("pipeline"), dict)
        else {str((raw.get("run") or {}).get("name", Path(path).stem)): raw}
    )
    if not sections:
        raise ConfigError(
            f"{path}: no trainer section to plan (a recipe has a `trainer:` key or stage sections)"
        )
    out = {}
    for name, section in sections.items():
        section = merge(section, {"data": {"train": (section.get("data") or {}).get("train") or "plan"}})
        try:
            out[name] = from_dict(config_class(section["trainer"]), section)
        except ConfigError as e:
            raise ConfigError(f"{path}: {name}: {e}") from None
    return out


def plan_recipe(
    recipe: str, gpu_gb: float, shape: Shape = Shape(), overrides: list[str] | None = None
) -> dict:
    """Every stage's plan and whether its peak fits in ``gpu_gb`` GiB."""
    stages = {}
    configs: dict[str, Any] = {}
    for name, cfg in stage_configs(recipe, overrides).items():
        if cfg.model.name not in configs:
            configs[cfg.model.name] = model_config(cfg.model.name)
        plan = plan_stage(cfg, shape, configs[cfg.model.name])
        plan["fits"] = plan["peak"] <= gpu_gb * GIB
        stages[name] = plan
    return {
        "recipe": recipe,
        "gpu_gb": gpu_gb,
        "shape": shape.__dict__,
        "stages": stages,
        "fits": all(s["fits"] for s in stages.values()),
    }


def table(result: dict) -> str:
    """One column per stage, one row per part (GiB), then the peak and whether it fits."""
    names = list(result["stages"])
    parts = ["weights", "trainable", "reference", "activations", "head", "rollout", "overhead"]
    width = max(12, *(len(n) for n in names))
    head = f"{'part (GiB)':<14}" + "".join(f"{n:>{width + 2}}" for n in names)
    lines = [f"{result['recipe']}: planned peak GPU memory at {result['gpu_gb']:g} GiB", head]
    for part in parts:
        lines.append(
            f"{part:<14}"
            + "".join(f"{result['stages'][n]['parts'][part] / GIB:>{width + 2}.2f}" for n in names)
        )
    lines.append(
        f"{'peak':<14}" + "".join(f"{result['stages'][n]['peak'] / GIB:>{width + 2}.2f}" for n in names)
    )
    lines.append(
        f"{'fits':<14}"
        + "".join(f"{'yes' if result['stages'][n]['fits'] else 'NO':>{width + 2}}" for n in names)
    )
    for n in names:
        s = result["stages"][n]
        lines.append(
            f"{n}: {s['model']}, {s['quantization']}, {s['dtype']}, checkpointing {s['gradient_checkpointing']}; "
            + "; ".join(s["notes"])
        )
    lines.append(
        "rollout and the loss forward never overlap: peak = weights + trainable + reference + max(rollout, "
        "activations + head) + overhead (docs/training.md: Will it fit?)"
    )
    return "\n".join(lines)
