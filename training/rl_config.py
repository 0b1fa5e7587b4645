"""RL recipe: GRPO, GRPO++, CRPO and Tree-GRPO are settings of one loop, not separate trainers.

Each section is the config of the component that uses it, passed whole: `rollout:` is the sampler's
`SamplingConfig`, `loss:` the `PolicyLossConfig`, `advantages:` the `AdvantageConfig`, `reference:` the
`ReferenceConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from training.advantages import NEEDS_CORRECT, AdvantageConfig
from training.config import ModelConfig, OptimConfig, RunConfig, check
from training.losses import PolicyLossConfig
from training.reference import ReferenceConfig
from training.task_card import TaskConfig
from training.tree import RolloutConfig, rows_per_prompt


@dataclass
class RLDataConfig:
    train: str = ""  # JSONL of {"prompt": [messages], "images": [...], "answer": ..., "meta": {...}}
    max_records: int | None = None
    shuffle: bool = True

    def validate(self, key: str) -> None:
        check(bool(self.train), f"{key}.train", "a path to a JSONL file of RL records", self.train)


@dataclass
class RLConfig:
    trainer: Literal["rl"] = "rl"
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: RLDataConfig = field(default_factory=RLDataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)  # how the trained model is asked: RUN/task.json
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # SamplingConfig + strategy, env, tree
    advantages: AdvantageConfig = field(default_factory=AdvantageConfig)
    loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
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
        check(self.max_nonfinite_in_a_row >= 0, "max_nonfinite_in_a_row", "an integer >= 0 (0: stop at the first)",
              self.max_nonfinite_in_a_row)
        check(self.rollout.temperature > 0, "rollout.temperature", "a float > 0 (RL samples)",
              self.rollout.temperature)
        check(rows_per_prompt(self.rollout) >= 2,
              "rollout.tree (m * kept leaves)" if self.rollout.strategy == "tree" else "rollout.num_generations",
              f"an integer >= 2 (the '{self.advantages.estimator}' advantage is relative to the other completions "
              "of a group; one completion has nothing to compare with)", self.rollout.num_generations)
        if self.advantages.estimator == "tree":
            check(self.rollout.multi_turn, "rollout.env", "an environment (the 'tree' advantage needs each row's "
                  "tree: rollout.strategy tree, or group chains, which are trees of one leaf)", self.rollout.env)
        if self.loss.beta > 0 or self.reference.as_old_policy:
            check(self.reference.kind != "none", "reference.kind", "base, start or lagged when loss.beta > 0 or "
                  "reference.as_old_policy", self.reference.kind)
        if self.advantages.estimator in NEEDS_CORRECT:
            check(self.advantages.correct_reward is not None, "advantages.correct_reward",
                  f"the name of a reward ({self.advantages.estimator} needs a correctness signal)",
                  self.advantages.correct_reward)
        if self.advantages.correct_reward is not None:
            check(self.advantages.correct_reward in self.rewards, "advantages.correct_reward",
                  f"one of the rewards ({', '.join(self.rewards)})", self.advantages.correct_reward)
        for name, weight in self.rewards.items():
            check(weight == weight and abs(weight) != float("inf"), f"rewards.{name}", "a finite weight", weight)
