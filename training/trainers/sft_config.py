"""SFT recipe: conversational records (with images for VLMs), loss on the assistant's tokens only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from training.config import check
from training.trainers.trainer_config import TokenizedDataConfig, TrainerConfig


@dataclass
class SFTDataConfig(TokenizedDataConfig):
    """The SFT recipe's `data:` section (the fields are `TokenizedDataConfig`'s): `train` holds `{"messages":
    [...], "images": [...]}` records (TRL's conversational format); a record longer than `max_length` is cut."""

    records: ClassVar[str] = "chat records"


@dataclass
class SFTConfig(TrainerConfig):
    """A supervised fine-tuning recipe (TRL's `SFTConfig` with `assistant_only_loss=True`): the loss is the token
    mean of the cross-entropy over the assistant's tokens of a whole step. The sections every recipe has are
    `TrainerConfig`'s.

    Fields:
        batch_size (int, default 2): records per micro-batch, per process (TRL `per_device_train_batch_size`).
        grad_accum (int, default 1): micro-batches per optimizer step (TRL `gradient_accumulation_steps`).
    """

    trainer: Literal["sft"] = "sft"
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    batch_size: int = 2
    grad_accum: int = 1

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.batch_size > 0, "batch_size", "a positive integer", self.batch_size)
        check(self.grad_accum > 0, "grad_accum", "a positive integer", self.grad_accum)
