"""Evaluation-style generation: prompts in, n completions each out, on the RL rollout engine.

Evaluators, DPO candidate sampling and the app all ask a policy the same thing: n completions per prompt, greedy
or sampled, decoded in chunks so memory stays bounded, with each completion's token ids and whether it ran into
the token budget. They get it from `training.rollout.engine.generate_rollouts`, the sampler RL trains with (every prompt
of a chunk prefilled once, all prompts x n rows decoded together), so an evaluation reads the policy through the
same decode path, EOS and stop-string rules as its training rollouts. One seeded generator runs through all
chunks: the same records, seed and chunk size give the same completions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training.data.batch import PromptInputs
from training.models.chat import encode_records
from training.models.loading import autocast_context
from training.rollout.engine import SamplingConfig, generate_rollouts


@dataclass
class Completion:
    """One sampled completion."""

    text: str  # decoded without special tokens, cut after the first stop string
    token_ids: list[int]  # up to and including the EOS token or the token that completed a stop string
    truncated: bool  # ran to max_new_tokens without EOS or a stop string

    @property
    def length(self) -> int:
        return len(self.token_ids)


def generate_completions(
    policy,
    prompts: Sequence[dict] | Sequence[PromptInputs],
    max_new_tokens: int,
    n: int = 1,
    temperature: float = 0.0,
    batch: int = 48,
    seed: int = 0,
    stop_strings: Sequence[str] = (),
    precision: str = "auto",
) -> list[list[Completion]]:
    """``n`` completions per prompt, in prompt order (greedy when temperature is 0).

    `prompts`: RL records (``prompt`` messages and ``images``; chat-templated here, their images loaded for a VLM)
    or prompts already encoded (`training.data.batch.encode_prompts`, e.g. a chat with a partial assistant turn).
    `batch` prompts are decoded per call of the sampler; `precision` is the autocast setting (`ModelConfig.precision`:
    auto = bf16 on CUDA); `policy` is a `training.models.loading.Policy`.
    """
    config = SamplingConfig(
        num_generations=n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        stop_strings=list(stop_strings),
    )
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    out: list[list[Completion]] = []
    for i in range(0, len(prompts), batch):
        chunk = list(prompts[i : i + batch])
        encoded = encode_records(policy, chunk) if isinstance(chunk[0], dict) else chunk
        with torch.no_grad(), autocast_context(precision, policy.device):
            rb = generate_rollouts(policy.model, policy.processor, encoded, config, generator)
        lengths = rb.completion_mask.sum(-1).tolist()
        ids = rb.completion_ids.tolist()
        truncated = rb.truncated.tolist()
        rows = [
            Completion(rb.texts[r], ids[r][: int(lengths[r])], bool(truncated[r])) for r in range(len(ids))
        ]
        out += [rows[j * n : (j + 1) * n] for j in range(len(chunk))]
    return out


def generate(
    policy,
    records: Sequence[dict],
    max_new_tokens: int,
    n: int = 1,
    temperature: float = 0.0,
    batch: int = 48,
    seed: int = 0,
    stop_strings: Sequence[str] = (),
) -> list[list[str]]:
    """The texts of `generate_completions`: ``n`` per record."""
    done = generate_completions(policy, records, max_new_tokens, n, temperature, batch, seed, stop_strings)
    return [[c.text for c in row] for row in done]
