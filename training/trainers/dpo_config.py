"""DPO recipe: preference pairs {prompt, chosen, rejected, images}, a frozen reference, the DPO loss family.

Each section is the config of the piece that uses it: `dpo:` the loss (`training.objectives.losses.dpo_loss`), `reference:`
the `ReferenceConfig` (default `start`: the adapter the run started from, e.g. the SFT adapter via
`model.adapter`), `loss:` which forward and output head compute the sequence log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from training.config import check
from training.objectives.losses import DPO_LOSS_TYPES, FORWARDS, HEADS
from training.objectives.reference import ReferenceConfig
from training.trainers.trainer_config import TokenizedDataConfig, TrainerConfig


@dataclass
class DPODataConfig(TokenizedDataConfig):
    """The DPO recipe's `data:` section (the fields are `TokenizedDataConfig`'s): `train` holds `{"prompt":
    [messages], "chosen": [messages], "rejected": [messages], "images": [...]}` pairs (TRL's conversational
    preference format); `max_length` bounds prompt + completion: completions are cut to fit, the prompt never is
    (images)."""

    records: ClassVar[str] = "DPO pairs"


@dataclass
class DPOLossSettings:
    """The `dpo:` section: what `training.objectives.losses.dpo_loss` is given.

    Fields:
        beta (float, default 0.1): scales the implicit reward beta * log(pi / ref), > 0 (DPO's beta, Rafailov et
            al. 2023, "Direct Preference Optimization"; TRL `beta`).
        loss_type (one of sigmoid, ipo, hinge; default sigmoid): sigmoid is DPO; ipo is IPO (Azar et al. 2023, "A
            General Theoretical Paradigm to Understand Learning from Human Preferences"); hinge is SLiC (Zhao et
            al. 2023) (TRL `loss_type`).
        label_smoothing (float, default 0.0): the share of pairs assumed mislabelled, in [0, 0.5); > 0 is cDPO
            (Mitchell 2023) and needs loss_type sigmoid (TRL `label_smoothing`).
    """

    beta: float = 0.1
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    label_smoothing: float = 0.0

    def validate(self, key: str = "dpo") -> None:
        check(self.beta > 0, f"{key}.beta", "a float > 0", self.beta)
        check(
            self.loss_type in DPO_LOSS_TYPES,
            f"{key}.loss_type",
            f"one of {list(DPO_LOSS_TYPES)}",
            self.loss_type,
        )
        check(
            0.0 <= self.label_smoothing < 0.5,
            f"{key}.label_smoothing",
            "a float in [0, 0.5)",
            self.label_smoothing,
        )
        if self.label_smoothing:
            check(
                self.loss_type == "sigmoid",
                f"{key}.loss_type",
                "sigmoid when label_smoothing > 0",
                self.loss_type,
            )


@dataclass
class DPOForwardConfig:
    """The DPO recipe's `loss:` section: which forward and output head compute the sequence log-probs.

    Fields:
        forward (one of grouped, dense, naive; default grouped): grouped encodes each prompt (and image) once
            for its chosen and rejected (Prefix Grouper, Liu et al. 2025); dense is its dense-mask form; naive
            encodes every row whole (TRL's concatenated forward).
        head (one of auto, chunked, full; default auto): auto = chunked: the output head only sees completion
            positions, in chunks; full is one lm_head call, for comparison.
    """

    forward: Literal["grouped", "dense", "naive"] = "grouped"
    head: Literal["auto", "chunked", "full"] = "auto"

    def validate(self, key: str = "loss") -> None:
        check(self.forward in FORWARDS, f"{key}.forward", f"one of {list(FORWARDS)}", self.forward)
        check(self.head in HEADS, f"{key}.head", f"one of {list(HEADS)}", self.head)


@dataclass
class DPOConfig(TrainerConfig):
    """A DPO recipe (TRL's `DPOConfig`): preference pairs against a reference policy. The sections every recipe
    has are `TrainerConfig`'s.

    Fields:
        dpo (DPOLossSettings): the loss, see `DPOLossSettings`.
        reference (ReferenceConfig, default kind start): the reference policy; start, base or lagged (DPO's loss
            is relative to one), never as_old_policy (TRL `ref_model`, `sync_ref_model`).
        loss (DPOForwardConfig): the forward and output head, see `DPOForwardConfig`.
        batch_size (int, default 2): pairs per micro-batch, per process (TRL `per_device_train_batch_size`).
        grad_accum (int, default 1): micro-batches per optimizer step (TRL `gradient_accumulation_steps`).
    """

    trainer: Literal["dpo"] = "dpo"
    data: DPODataConfig = field(default_factory=DPODataConfig)
    dpo: DPOLossSettings = field(default_factory=DPOLossSettings)
    reference: ReferenceConfig = field(default_factory=lambda: ReferenceConfig(kind="start"))
    loss: DPOForwardConfig = field(default_factory=DPOForwardConfig)
    batch_size: int = 2
    grad_accum: int = 1

    def validate(self, key: str) -> None:
        super().validate(key)
        check(
            self.batch_size > 0, "batch_size", "a positive integer (pairs per micro-batch)", self.batch_size
        )
        check(self.grad_accum > 0, "grad_accum", "a positive integer", self.grad_accum)
        check(
            self.reference.kind != "none",
            "reference.kind",
            "start, base or lagged (DPO's loss is relative to a reference policy)",
            self.reference.kind,
        )
        check(
            not self.reference.as_old_policy,
            "reference.as_old_policy",
            "false (DPO has no ratio to clip)",
            self.reference.as_old_policy,
        )
        if self.reference.kind == "base":
            # `base` switches the adapter off; a full fine-tune has none to switch off.
            check(
                self.model.adapter is not None or self.model.lora.enabled,
                "reference.kind",
                "start or lagged when the model has no adapter (model.lora.enabled is false)",
                self.reference.kind,
            )
