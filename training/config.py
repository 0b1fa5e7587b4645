"""Dataclass configs: YAML recipes plus `--key=value` overrides, checked against the dataclass types.

Every mistake (unknown key, wrong type, bad value, malformed YAML) is a `ConfigError` whose one line names
the file and the dotted key, so a user fixes a recipe without reading a traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from training.errors import ConfigError

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- sections
@dataclass
class LoraConfig:
    """The `model.lora:` section: peft LoRA on the language model's linear layers, and on a VLM's vision side when
    asked (`vision`).

    LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") trains W + (alpha / r) B A with
    A (r x in) and B (out x r); QLoRA (Dettmers et al. 2023) does the same over 4-bit weights.

    Fields:
        enabled (bool, default True): train a LoRA adapter; false trains the whole model (full fine-tune).
        r (int, default 16): the adapter's rank (peft `r`).
        alpha (int, default 32): the scale numerator, alpha / r (peft `lora_alpha`).
        dropout (float, default 0.05): dropout on the adapter's input, in [0, 1) (peft `lora_dropout`).
        target_modules (list[str] | str, default "auto"): the linear layers to adapt (peft `target_modules`);
            `auto` is every linear layer of the language model.
        modules_to_save (list[str] | None, default None): whole modules trained and saved with the adapter (peft
            `modules_to_save`; a suffix match, so `norm` is every RMSNorm). A tiny model needs them: LoRA cannot
            change a norm's gain, which bounds how confident its logits get.
        init_weights (bool, default True): peft's initialisation (B = 0, the adapter starts as a no-op; peft
            `init_lora_weights`); tests turn it off to get non-zero gradients everywhere.
        vision (one of none, merger, all; default none): LoRA on a VLM's vision side too, with `target_modules:
            auto`: `merger` adapts the patch merger's two linear layers (the projection of image features into the
            language model), `all` also every vision block's attention (qkv, proj) and MLP (Unsloth's
            `finetune_vision_layers`). The vision tower is never quantized, so its LoRA sits on 16/32-bit weights.
    """

    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "auto"
    modules_to_save: list[str] | None = None
    init_weights: bool = True
    vision: Literal["none", "merger", "all"] = "none"

    def validate(self, key: str) -> None:
        check(self.r > 0, f"{key}.r", "a positive integer", self.r)
        if self.vision != "none":
            check(
                self.target_modules == "auto",
                f"{key}.target_modules",
                f"auto when {key}.vision is {self.vision} (the vision targets are added to auto's)",
                self.target_modules,
            )
        check(self.alpha > 0, f"{key}.alpha", "a positive integer", self.alpha)
        check(0.0 <= self.dropout < 1.0, f"{key}.dropout", "a float in [0, 1)", self.dropout)


@dataclass
class ModelConfig:
    """The `model:` section: which policy to load and how (TRL's `model_init_kwargs` and `peft_config`).

    Fields:
        name (str, default "embedded:qwen2"): a hub id, a local folder, or a shipped tiny model
            (`embedded:qwen25vl`, `embedded:qwen2`).
        quantization (one of none, 4bit, 8bit; default none): bitsandbytes weights; 4bit with LoRA is QLoRA
            (Dettmers et al. 2023) and needs `lora.enabled`.
        dtype (one of auto, float32, bfloat16, float16; default auto): the weights' dtype; auto is bf16 on CUDA,
            fp32 on the CPU.
        device (str, default "auto"): cuda if available, else cpu; or a torch device string.
        attn_implementation (str, default "sdpa"): the transformers attention kernel.
        gradient_checkpointing (bool, default False): recompute activations in backward (TRL's
            `gradient_checkpointing`): less memory, about a third more time.
        lora (LoraConfig): the adapter, see `LoraConfig`.
        adapter (str | None, default None): start from this adapter folder (exported, or a run's adapter/): how
            the stages chain, SFT -> RL -> DPO.
    """

    name: str = "embedded:qwen2"
    quantization: Literal["none", "4bit", "8bit"] = "none"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)
    adapter: str | None = None

    def validate(self, key: str) -> None:
        check(bool(self.name), f"{key}.name", "a hub id, a local folder or embedded:<kind>", self.name)
        if self.adapter is not None:
            check(
                Path(self.adapter, "adapter_config.json").is_file(),
                f"{key}.adapter",
                "an adapter folder (with adapter_config.json), e.g. runs/<name>/adapter",
                self.adapter,
            )
        if self.quantization != "none":
            check(
                self.lora.enabled,
                f"{key}.lora.enabled",
                "true when quantization is on (QLoRA: 4/8-bit weights cannot be trained directly)",
                self.lora.enabled,
            )


@dataclass
class OptimConfig:
    """The `optim:` section: AdamW (Loshchilov & Hutter 2019) with warm-up, then cosine, linear or constant decay,
    and gradient clipping; shared by every trainer (`training.trainers.optim`).

    Fields:
        lr (float, default 1e-4): the peak learning rate (TRL `learning_rate`).
        weight_decay (float, default 0.0): AdamW's decoupled weight decay (TRL `weight_decay`).
        betas (list[float], default [0.9, 0.999]): Adam's moment decays, two floats in [0, 1) (TRL `adam_beta1`,
            `adam_beta2`).
        eps (float, default 1e-8): Adam's denominator epsilon (TRL `adam_epsilon`).
        scheduler (one of cosine, linear, constant; default cosine): the decay after warm-up (TRL
            `lr_scheduler_type`).
        warmup_steps (int, default 0): linear warm-up over this many updates; 0 uses `warmup_ratio` (TRL
            `warmup_steps`).
        warmup_ratio (float, default 0.0): warm-up as a share of all updates, in [0, 1) (TRL `warmup_ratio`).
        min_lr_ratio (float, default 0.0): the decay's floor as a share of `lr`, in [0, 1].
        max_grad_norm (float, default 1.0): clip the global gradient norm to this; <= 0 disables clipping (TRL
            `max_grad_norm`). The logged `grad_norm` is before clipping.
    """

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0

    def validate(self, key: str) -> None:
        check(self.lr > 0, f"{key}.lr", "a positive float", self.lr)
        check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"{key}.betas",
            "two floats in [0, 1)",
            self.betas,
        )
        check(self.warmup_steps >= 0, f"{key}.warmup_steps", "an integer >= 0", self.warmup_steps)
        check(0.0 <= self.warmup_ratio < 1.0, f"{key}.warmup_ratio", "a float in [0, 1)", self.warmup_ratio)
        check(0.0 <= self.min_lr_ratio <= 1.0, f"{key}.min_lr_ratio", "a float in [0, 1]", self.min_lr_ratio)


@dataclass
class RunConfig:
    """The `run:` section: where a run writes (runs/<name>/, see `training.run.rundir.RunDir`) and how often it logs
    and checkpoints.

    Fields:
        name (str, default "run"): the run's folder name, without '/' (TRL `run_name`).
        output_dir (str, default "runs"): the folder that holds the runs (TRL `output_dir` is one run's).
        seed (int, default 0): seeds Python, NumPy and torch, and the data order (TRL `seed`).
        max_steps (int, default 10): optimizer steps to train; an RL step is one rollout batch (TRL `max_steps`).
        log_every (int, default 1): write a metrics row every N steps, and at the last (TRL `logging_steps`).
        save_every (int, default 0): checkpoint every N steps; 0 only at the end (TRL `save_steps`).
        keep_checkpoints (int, default 2): keep the newest N checkpoints; 0 keeps all (TRL `save_total_limit`).
        precision (one of auto, fp32, bf16; default auto): the autocast dtype; auto is bf16 on CUDA, fp32 on the
            CPU (TRL `bf16`).
        tensorboard (bool, default True): also write TensorBoard events (TRL `report_to`).
        progress (bool, default True): show a progress bar (also off with MEDRL_PROGRESS=0; TRL
            `disable_tqdm`, negated).
        log_rollouts (int, default 2): RL: the first N groups of each step (all G completions of each), with their
            reward parts and advantages, written to RUN/rollouts/step-N.jsonl for people to read (see
            `training.trainers.rollout_records`); 0 writes none.
        keep_best (str | None, default None): a metric of the evaluations during training (`eval:`); the adapter
            of the best evaluation so far is kept in RUN/best/ (best.json: step, value), so a run whose training
            reward rises while its held-out metric falls keeps its best point (TRL `metric_for_best_model` with
            `load_best_model_at_end`). Needs `eval.every` > 0.
        keep_best_mode (one of max, min; default max): whether a larger or a smaller value of `keep_best` is better
            (TRL `greater_is_better`).
    """

    name: str = "run"
    output_dir: str = "runs"
    seed: int = 0
    max_steps: int = 10
    log_every: int = 1
    save_every: int = 0
    keep_checkpoints: int = 2
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    tensorboard: bool = True
    progress: bool = True
    log_rollouts: int = 2
    keep_best: str | None = None
    keep_best_mode: Literal["max", "min"] = "max"

    def validate(self, key: str) -> None:
        check(bool(self.name) and "/" not in self.name, f"{key}.name", "a folder name without '/'", self.name)
        check(self.max_steps > 0, f"{key}.max_steps", "a positive integer", self.max_steps)
        check(self.log_every > 0, f"{key}.log_every", "a positive integer", self.log_every)
        check(self.save_every >= 0, f"{key}.save_every", "an integer >= 0", self.save_every)
        check(self.keep_checkpoints >= 0, f"{key}.keep_checkpoints", "an integer >= 0", self.keep_checkpoints)
        check(self.log_rollouts >= 0, f"{key}.log_rollouts", "an integer >= 0 (0: none)", self.log_rollouts)

    @property
    def dir(self) -> Path:
        return Path(self.output_dir) / self.name


# ---------------------------------------------------------------------------------------------- machinery
def check(ok: bool, key: str, expected: str, got: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {got!r}")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting only where lossless (int -> float)."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, key)
    if origin in (Union, types.UnionType):
        errors = []
        for arm in get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arm, key)
            except ConfigError as e:
                errors.append(e)
        expected = " or ".join("null" if a is type(None) else _type_name(a) for a in get_args(tp))
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (arm, *_) = get_args(tp) or (Any,)
        return [_coerce(v, arm, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        ktp, vtp = get_args(tp) or (Any, Any)
        return {_coerce(k, ktp, key): _coerce(v, vtp, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config type {tp!r} at {key} is not supported")  # a bug in a config class


def from_dict(cls: type[T], data: dict, key: str = "") -> T:
    """Build dataclass `cls` from a mapping: unknown keys and wrong types are `ConfigError`s naming the key."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for k, v in data.items():
        full = f"{key}.{k}" if key else str(k)
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"
            raise ConfigError(f"unknown key '{full}'{hint}")
        kwargs[k] = _coerce(v, hints[k], full)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(key or cls.__name__)
    return obj


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def parse_overrides(overrides: list[str]) -> dict:
    """`--a.b=1 --c=x` -> {"a": {"b": 1}, "c": "x"}; values are parsed as YAML scalars/lists."""
    tree: dict = {}
    for item in overrides:
        if not item.startswith("--") or "=" not in item:
            raise ConfigError(
                f"override '{item}': expected --key=value (nested keys with dots, e.g. --optim.lr=1e-4)"
            )
        dotted, raw = item[2:].split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{p}' is set to a value and used as a section")
        node[parts[-1]] = value
    return tree


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """'0,1' -> [0, 1]: the ablation commands' seed lists; anything else is a one-line error naming the flag."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ConfigError(f"{flag}: expected at least one seed, got {text!r}")
    return seeds


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Recipe file + overrides -> validated `cls`; errors name the file."""
    data = read_yaml(path) if path is not None else {}
    data = merge(data, parse_overrides(overrides or []))
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def save_config(cfg: Any, path: str | Path) -> None:
    from training.atomic import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


__all__ = [
    "LoraConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "from_dict",
    "to_dict",
    "load_config",
    "parse_overrides",
    "merge",
    "read_yaml",
    "save_config",
]
