"""DPO recipe: preference pairs {prompt, chosen, rejected, images}, a frozen reference, the DPO loss family.

Each section is the config of the piece that uses it: `dpo:` the loss (`training.losses.dpo_loss`), `reference:`
the `ReferenceConfig` (default `start`: the adapter the run started from, e.g. the SFT adapter via
`model.adapter`), `loss:` which forward and output head compute the sequence log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from training.config import ModelConfig, OptimConfig, RunConfig, check
from training.losses import DPO_LOSS_TYPES, FORWARDS, HEADS
from training.reference import ReferenceConfig
from training.task_card import TaskConfig


@dataclass
class DPODataConfig:
    train: str = ""  # JSONL of {"prompt": [messages], "chosen": [messages], "rejected": [messages], "images": [...]}
    max_length: int = 1024  # prompt + completion tokens; completions are cut to fit, the prompt never is
    max_records: int | None = None
    shuffle: bool = True

    def validate(self, key: str) -> None:
        check(bool(self.train), f"{key}.train", "a path to a JSONL file of DPO pairs", self.train)
        check(self.max_length > 8, f"{key}.max_length", "an integer > 8", self.max_length)
        if self.max_records is not None:
            check(self.max_records > 0, f"{key}.max_records", "a positive integer or null", self.max_records)


@dataclass
class DPOLossSettings:
    """The `dpo:` section: what `dpo_loss` is given. beta scales the implicit reward beta * log(pi / ref)."""

    beta: float = 0.1
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    label_smoothing: float = 0.0  # cDPO: the share of pairs assumed mislabelled (sigmoid only)

    def validate(self, key: str = "dpo") -> None:
        check(self.beta > 0, f"{key}.beta", "a float > 0", self.beta)
        check(self.loss_type in DPO_LOSS_TYPES, f"{key}.loss_type", f"one of {list(DPO_LOSS_TYPES)}",
              self.loss_type)
        check(0.0 <= self.label_smoothing < 0.5, f"{key}.label_smoothing", "a float in [0, 0.5)",
              self.label_smoothing)
        if self.label_smoothing:
            check(self.loss_type == "sigmoid", f"{key}.loss_type", "sigmoid when label_smoothing > 0",
                  self.loss_type)


@dataclass
class DPOForwardConfig:
    """The `loss:` section: `grouped` encodes each prompt (and image) once for its chosen and rejected."""

    forward: Literal["grouped", "dense", "naive"] = "grouped"
    head: Literal["auto", "chunked", "full"] = "auto"

    def validate(self, key: str = "loss") -> None:
        check(self.forward in FORWARDS, f"{key}.forward", f"one of {list(FORWARDS)}", self.forward)
        check(self.head in HEADS, f"{key}.head", f"one of {list(HEADS)}", self.head)


@dataclass
class DPOConfig:
    trainer: Literal["dpo"] = "dpo"
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DPODataConfig = field(default_factory=DPODataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)  # how the trained model is asked: RUN/task.json
    optim: OptimConfig = field(default_factory=OptimConfig)
    dpo: DPOLossSettings = field(default_factory=DPOLossSettings)
    reference: ReferenceConfig = field(default_factory=lambda: ReferenceConfig(kind="start"))
    loss: DPOForwardConfig = field(default_factory=DPOForwardConfig)
    batch_size: int = 2  # pairs per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step

    def validate(self, key: str) -> None:
        check(self.batch_size > 0, "batch_size", "a positive integer (pairs per micro-batch)", self.batch_size)
        check(self.grad_accum > 0, "grad_accum", "a positive integer", self.grad_accum)
        check(self.reference.kind != "none", "reference.kind",
              "start, base or lagged (DPO's loss is relative to a reference policy)", self.reference.kind)
        check(not self.reference.as_old_policy, "reference.as_old_policy", "false (DPO has no ratio to clip)",
              self.reference.as_old_policy)
        if self.reference.kind == "base":
            # `base` switches the adapter off; a full fine-tune has none to switch off.
            check(self.model.adapter is not None or self.model.lora.enabled, "reference.kind",
                  "start or lagged when the model has no adapter (model.lora.enabled is false)", self.reference.kind)
