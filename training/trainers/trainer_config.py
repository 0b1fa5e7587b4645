"""What every trainer's recipe holds: the sections the shared step loop reads (`training.trainers.step_loop`).

`SFTConfig`, `DPOConfig` and `RLConfig` extend `TrainerConfig` with their own `data:` section (a `DataConfig`)
and their own settings, so a field the loop reads is declared, documented and checked once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from training.config import ModelConfig, OptimConfig, RunConfig, check
from training.run.task_card import TaskConfig


@dataclass
class DataConfig:
    """The `data:` section every trainer reads records through (`training.data.records.read_jsonl`).

    Fields:
        train (str, default ""): the JSONL file of records, in the trainer's format (see its data section);
            required.
        max_records (int | None, default None): read at most this many records, > 0; None reads all.
        shuffle (bool, default True): a seeded permutation per epoch (the run's seed); false keeps file order.
    """

    records: ClassVar[str] = "records"  # what `train` holds, for the error message

    train: str = ""
    max_records: int | None = None
    shuffle: bool = True

    def validate(self, key: str) -> None:
        check(bool(self.train), f"{key}.train", f"a path to a JSONL file of {self.records}", self.train)
        if self.max_records is not None:
            check(self.max_records > 0, f"{key}.max_records", "a positive integer or null", self.max_records)


@dataclass
class TokenizedDataConfig(DataConfig):
    """A `data:` section whose records are encoded whole, prompt and answer together (SFT, DPO).

    Fields:
        max_length (int, default 1024): tokens per record, > 8; what is cut to fit is the trainer's rule (see
            its data section) (TRL `max_length`).
    """

    max_length: int = 1024

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.max_length > 8, f"{key}.max_length", "an integer > 8", self.max_length)


@dataclass
class EvalConfig:
    """The `eval:` section: held-out evaluation during training, by the domain's own evaluator (the metrics its
    `eval` command reports, not the training reward), logged as `eval/<metric>` beside the training metrics.

    Fields:
        every (int, default 0): evaluate every N optimizer steps and after the last; 0 never (TRL `eval_steps`).
        data (str, default ""): the held-out records (the RL record format: prompt, answer, images), required
            when `every` > 0 (TRL `eval_dataset`).
        evaluator (str, default ""): a registered evaluator (`training.trainers.evaluation.EVALUATORS`): dermiq,
            clinical; required when `every` > 0.
        modules (list[str], default []): modules imported first so their evaluators register (dermiq.evaluate).
        metric (str, default ""): the headline metric, which the app plots right after the reward. Every numeric
            metric the evaluator returns is logged (`eval/<metric>`) whatever this says.
        limit (int | None, default None): evaluate the first N records; None all.
        max_new_tokens (int | None, default None): the answer length; None the run's task card's.
    """

    every: int = 0
    data: str = ""
    evaluator: str = ""
    modules: list[str] = field(default_factory=list)
    metric: str = ""
    limit: int | None = None
    max_new_tokens: int | None = None

    def validate(self, key: str) -> None:
        check(self.every >= 0, f"{key}.every", "an integer >= 0 (0: no evaluation)", self.every)
        if self.every:
            check(bool(self.data), f"{key}.data", "held-out records (a JSONL file) when every > 0", self.data)
            check(
                bool(self.evaluator),
                f"{key}.evaluator",
                "a registered evaluator when every > 0",
                self.evaluator,
            )
        if self.limit is not None:
            check(self.limit > 0, f"{key}.limit", "a positive integer or null", self.limit)


@dataclass
class TrainerConfig:
    """The sections every recipe has; each trainer's recipe class fixes `trainer` and its `data` type.

    Fields:
        trainer (str): which trainer runs the recipe: sft, dpo or rl.
        run (RunConfig): where the run writes and how often it logs and checkpoints, see `RunConfig`.
        model (ModelConfig): the policy and its adapter, see `ModelConfig`.
        data (DataConfig): the records, the trainer's own subclass of `DataConfig`.
        task (TaskConfig): how the trained model is asked, written to RUN/task.json.
        optim (OptimConfig): AdamW, its schedule and gradient clipping, see `OptimConfig`.
        eval (EvalConfig): held-out evaluation during training, see `EvalConfig`.
        max_nonfinite_in_a_row (int, default 3): an update whose loss or gradient is not finite is skipped and
            counted (`skipped_nonfinite`); more than this many in a row stop the run, >= 0 (0: the first one does).
    """

    trainer: str = ""
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    max_nonfinite_in_a_row: int = 3

    def validate(self, key: str) -> None:
        if self.run.keep_best:
            check(
                self.eval.every > 0,
                "run.keep_best",
                "eval.every > 0 (it keeps the best evaluation)",
                self.eval.every,
            )
        check(
            self.max_nonfinite_in_a_row >= 0,
            "max_nonfinite_in_a_row",
            "an integer >= 0 (0: stop at the first)",
            self.max_nonfinite_in_a_row,
        )
