"""RL recipe: GRPO, GRPO++, CRPO (and later Tree-GRPO) are settings of one loop, not separate trainers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from training.config import ModelConfig, OptimConfig, RunConfig, check


@dataclass
class RLDataConfig:
    train: str = ""  # JSONL of {"prompt": [messages], "images": [...], "answer": ..., "meta": {...}}
    max_records: int | None = None
    shuffle: bool = True

    def validate(self, key: str) -> None:
        check(bool(self.train), f"{key}.train", "a path to a JSONL file of RL records", self.train)


@dataclass
class RolloutConfig:
    num_generations: int = 8  # G
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_strings: list[str] = field(default_factory=list)
    ignore_eos: bool = False  # sample exactly max_new_tokens (benchmarks)

    def validate(self, key: str) -> None:
        check(self.num_generations >= 1, f"{key}.num_generations", "an integer >= 1", self.num_generations)
        check(self.max_new_tokens >= 1, f"{key}.max_new_tokens", "an integer >= 1", self.max_new_tokens)
        check(self.temperature > 0, f"{key}.temperature", "a float > 0 (sampling)", self.temperature)
        check(0 < self.top_p <= 1, f"{key}.top_p", "a float in (0, 1]", self.top_p)
        check(self.top_k >= 0, f"{key}.top_k", "an integer >= 0", self.top_k)


@dataclass
class AdvantageConfig:
    estimator: Literal["grpo", "grpo++"] = "grpo"
    aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = "sum_then_normalize"
    scale: Literal["group", "batch", "none"] = "group"
    eps: float = 1e-4
    correct_reward: str | None = None  # GRPO++: the reward that says a completion is correct
    correct_threshold: float = 1.0

    def validate(self, key: str) -> None:
        check(self.eps > 0, f"{key}.eps", "a float > 0", self.eps)
        if self.estimator == "grpo++":
            check(self.correct_reward is not None, f"{key}.correct_reward",
                   "the name of a reward (grpo++ needs a correctness signal)", self.correct_reward)


@dataclass
class LossConfig:
    epsilon: float = 0.2
    epsilon_high: float | None = None
    dual_clip: float | None = None
    beta: float = 0.0  # KL coefficient; needs a reference
    kl_estimator: Literal["k1", "k3"] = "k3"
    entropy_coef: float = 0.0
    aggregation: Literal["token_mean", "sequence_mean", "constant"] = "token_mean"
    forward: Literal["grouped", "dense", "naive"] = "grouped"  # Prefix-Grouper, its dense-mask form, or naive


@dataclass
class ReferenceConfig:
    kind: Literal["none", "base", "lagged"] = "none"  # base: LoRA disabled (no second model copy)
    sync_every: int = 10  # lagged: re-sync the reference adapter to the policy every K steps
    as_old_policy: bool = False  # GRPO++: the lagged copy is also the ratio's denominator

    def validate(self, key: str) -> None:
        check(self.sync_every >= 1, f"{key}.sync_every", "an integer >= 1", self.sync_every)


@dataclass
class RLConfig:
    trainer: Literal["rl"] = "rl"
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: RLDataConfig = field(default_factory=RLDataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    advantages: AdvantageConfig = field(default_factory=AdvantageConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    rewards: dict[str, float] = field(default_factory=dict)  # registered reward name -> weight
    reward_modules: list[str] = field(default_factory=list)  # modules whose import registers the rewards
    prompts_per_step: int = 4
    grad_accum: int = 1  # micro-batches per update (groups are never split)
    num_iterations: int = 1  # policy updates per rollout batch
    max_nonfinite_in_a_row: int = 3

    def validate(self, key: str) -> None:
        check(bool(self.rewards), "rewards", "at least one reward: {name: weight}", self.rewards)
        check(self.prompts_per_step >= 1, "prompts_per_step", "an integer >= 1", self.prompts_per_step)
        check(1 <= self.grad_accum <= self.prompts_per_step, "grad_accum",
               f"an integer in [1, prompts_per_step={self.prompts_per_step}]", self.grad_accum)
        check(self.num_iterations >= 1, "num_iterations", "an integer >= 1", self.num_iterations)
        if self.loss.beta > 0 or self.reference.as_old_policy:
            check(self.reference.kind != "none", "reference.kind", "base or lagged when loss.beta > 0 or "
                   "reference.as_old_policy", self.reference.kind)
        if self.advantages.correct_reward is not None:
            check(self.advantages.correct_reward in self.rewards, "advantages.correct_reward",
                   f"one of the rewards ({', '.join(self.rewards)})", self.advantages.correct_reward)
