"""SFT recipe: conversational records (with images for VLMs), loss on the assistant's tokens only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from training.config import ModelConfig, OptimConfig, RunConfig, check
from training.task_card import TaskConfig


@dataclass
class SFTDataConfig:
    train: str = ""  # JSONL of {"messages": [...], "images": [...]}
    max_length: int = 1024
    max_records: int | None = None
    shuffle: bool = True

    def validate(self, key: str) -> None:
        check(bool(self.train), f"{key}.train", "a path to a JSONL file", self.train)
        check(self.max_length > 8, f"{key}.max_length", "an integer > 8", self.max_length)


@dataclass
class SFTConfig:
    trainer: Literal["sft"] = "sft"
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)  # how the trained model is asked: RUN/task.json
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 2
    grad_accum: int = 1

    def validate(self, key: str) -> None:
        check(self.batch_size > 0, "batch_size", "a positive integer", self.batch_size)
        check(self.grad_accum > 0, "grad_accum", "a positive integer", self.grad_accum)
