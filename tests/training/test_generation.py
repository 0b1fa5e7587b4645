"""The evaluation generate helper: n completions per record on the rollout engine, chunked, reproducible."""

from __future__ import annotations

import pytest
import torch

from training.models.chat import encode_records
from training.rollout.engine import SamplingConfig, generate_rollouts
from training.rollout.generation import generate, generate_completions

RECORDS = [
    {"prompt": [{"role": "user", "content": text}]}
    for text in (
        "A patient has fever and cough. Diagnosis?",
        "Itchy rash on the forearm for two days.",
        "Why?",
    )
]


@pytest.fixture(scope="module")
def policy(one_thread):
    from training.config import ModelConfig
    from training.models.loading import load_policy

    return load_policy(ModelConfig(name="embedded:qwen2"))


def test_greedy_completions_are_the_samplers_rows(policy):
    got = generate_completions(policy, RECORDS, 6, batch=2)
    with torch.no_grad():
        rb = generate_rollouts(
            policy.model,
            policy.processor,
            encode_records(policy, RECORDS),
            SamplingConfig(num_generations=1, max_new_tokens=6, temperature=0),
        )
    assert [len(row) for row in got] == [1, 1, 1]
    lengths = rb.completion_mask.sum(-1).tolist()
    for r, (c,) in enumerate(got):
        assert c.text == rb.texts[r] and c.length == lengths[r] == len(c.token_ids)
        assert c.token_ids == rb.completion_ids[r, : lengths[r]].tolist()
        assert c.truncated == bool(rb.truncated[r]) and c.truncated == (c.length == 6)


def test_sampled_texts_are_reproducible_and_encoded_prompts_work(policy):
    a = generate(policy, RECORDS, 5, n=2, temperature=1.0, batch=2, seed=3)
    assert a == generate(policy, RECORDS, 5, n=2, temperature=1.0, batch=2, seed=3)
    assert [len(row) for row in a] == [2, 2, 2]
    encoded = encode_records(policy, RECORDS)
    assert [
        [c.text for c in row]
        for row in generate_completions(policy, encoded, 5, n=2, temperature=1.0, batch=2, seed=3)
    ] == a
    assert generate(policy, [], 5) == []
