"""RL recipe: GRPO, GRPO++, CRPO and Tree-GRPO are settings of one loop, not separate trainers.

Each section is the config of the component that uses it, passed whole: `rollout:` is the sampler's
`SamplingConfig`, `loss:` the `PolicyLossConfig`, `advantages:` the `AdvantageConfig`, `reference:` the
`ReferenceConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from training.config import check
from training.objectives.advantages import AdvantageConfig, needs_correct
from training.objectives.losses import PolicyLossConfig
from training.objectives.reference import ReferenceConfig
from training.rollout.tree import RolloutConfig, rows_per_prompt
from training.trainers.trainer_config import DataConfig, TrainerConfig


@dataclass
class RLDataConfig(DataConfig):
    """The RL recipe's `data:` section (the fields are `DataConfig`'s): `train` holds `{"prompt": [messages],
    "images": [...], "answer": ..., "meta": {...}}` records; every field but the prompt reaches the rewards as a
    keyword."""

    records: ClassVar[str] = "RL records"


@dataclass
class RLConfig(TrainerConfig):
    """An RL recipe (TRL's `GRPOConfig`): GRPO (Shao et al. 2024, "DeepSeekMath"), GRPO++, CRPO and Tree-GRPO
    are settings of its sections. The sections every recipe has are `TrainerConfig`'s.

    Fields:
        rollout (RolloutConfig): the sampler (`SamplingConfig`: G = num_generations, TRL `num_generations`,
            `temperature`, `max_completion_length`) plus the strategy (group or tree), environment and tree.
        advantages (AdvantageConfig): the advantage estimator, see `AdvantageConfig`.
        loss (PolicyLossConfig): the policy loss, see `PolicyLossConfig`.
        reference (ReferenceConfig, default kind none): the KL anchor and GRPO++'s lagged old policy (TRL
            `ref_model`, `sync_ref_model`, `ref_model_sync_steps`).
        rewards (dict[str, float], default {}): registered reward name (or `module:function`) -> weight; at least
            one, finite weights (TRL `reward_funcs` and `reward_weights`).
        reward_modules (list[str], default []): modules whose import registers the named rewards.
        prompts_per_step (int, default 4): prompts per step over all processes, each sampled G times (TRL's
            generation batch / num_generations); a multiple of the process count.
        grad_accum (int, default 1): micro-batches per update, in [1, prompts_per_step]; groups are never split
            (TRL `gradient_accumulation_steps`).
        num_iterations (int, default 1): policy updates per rollout batch (TRL `num_iterations`, GRPO's mu); > 1
            computes the old policy's log-probs once, before the updates.
        max_generated_tokens (int | None, default None): a sampling budget: the run ends after the step in which
            the tokens it has sampled (every process, every turn; observations are not sampled) reach this many,
            or at `run.max_steps`, whichever comes first; `tokens_generated_total` in metrics.jsonl counts them.
            How samplers are compared at equal cost (Tree-GRPO's trees vs chains); None: no budget.
    """

    trainer: Literal["rl"] = "rl"
    data: RLDataConfig = field(default_factory=RLDataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    advantages: AdvantageConfig = field(default_factory=AdvantageConfig)
    loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    rewards: dict[str, float] = field(default_factory=dict)
    reward_modules: list[str] = field(default_factory=list)
    prompts_per_step: int = 4
    grad_accum: int = 1
    num_iterations: int = 1
    max_generated_tokens: int | None = None

    def validate(self, key: str) -> None:
        super().validate(key)
        check(bool(self.rewards), "rewards", "at least one reward: {name: weight}", self.rewards)
        check(self.prompts_per_step >= 1, "prompts_per_step", "an integer >= 1", self.prompts_per_step)
        check(
            1 <= self.grad_accum <= self.prompts_per_step,
            "grad_accum",
            f"an integer in [1, prompts_per_step={self.prompts_per_step}]",
            self.grad_accum,
        )
        check(self.num_iterations >= 1, "num_iterations", "an integer >= 1", self.num_iterations)
        if self.max_generated_tokens is not None:
            check(
                self.max_generated_tokens > 0,
                "max_generated_tokens",
                "a positive integer or null (no budget)",
                self.max_generated_tokens,
            )
        check(
            self.rollout.temperature > 0,
            "rollout.temperature",
            "a float > 0 (RL samples)",
            self.rollout.temperature,
        )
        check(
            rows_per_prompt(self.rollout) >= 2,
            "rollout.tree (m * kept leaves)"
            if self.rollout.strategy == "tree"
            else "rollout.num_generations",
            f"an integer >= 2 (the '{self.advantages.estimator}' advantage is relative to the other completions "
            "of a group; one completion has nothing to compare with)",
            self.rollout.num_generations,
        )
        if self.advantages.estimator == "tree":
            check(
                self.rollout.multi_turn,
                "rollout.env",
                "an environment (the 'tree' advantage needs each row's "
                "tree: rollout.strategy tree, or group chains, which are trees of one leaf)",
                self.rollout.env,
            )
        if self.loss.beta > 0 or self.reference.as_old_policy:
            check(
                self.reference.kind != "none",
                "reference.kind",
                "base, start or lagged when loss.beta > 0 or reference.as_old_policy",
                self.reference.kind,
            )
        if needs_correct(self.advantages.estimator):
            check(
                self.advantages.correct_reward is not None,
                "advantages.correct_reward",
                f"the name of a reward ({self.advantages.estimator} needs a correctness signal)",
                self.advantages.correct_reward,
            )
        if self.advantages.correct_reward is not None:
            check(
                self.advantages.correct_reward in self.rewards,
                "advantages.correct_reward",
                f"one of the rewards ({', '.join(self.rewards)})",
                self.advantages.correct_reward,
            )
        for name, weight in self.rewards.items():
            check(
                weight == weight and abs(weight) != float("inf"), f"rewards.{name}", "a finite weight", weight
            )
