"""Class likelihoods for evaluation: how likely the model finds each label as the answer after its own analysis.

Completions come from the core's generate helper (`training.rollout.generation`). Class probabilities score each label as
the answer after the model's own analysis, on the trainer's shared-prompt forward (`training.objectives.forward`), so the
number is the model's likelihood, not a parse of its text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from training.data.batch import RolloutBatch, encode_prompts
from training.data.records import load_images
from training.models.chat import render
from training.models.loading import autocast_context
from training.objectives.forward import completion_logprobs

from .prompts import ANSWER_CLOSE, ANSWER_OPEN


def prompt_texts(policy, records: Sequence[dict]) -> list[str]:
    return [render(policy.processor, r["prompt"], add_generation_prompt=True) for r in records]


def answer_prefix(text: str) -> str:
    """The response up to its answer: everything before ``<answer>`` (the whole text when there is none)."""
    cut = text.find(ANSWER_OPEN)
    return (text[:cut] if cut >= 0 else text.rstrip() + "\n") + ANSWER_OPEN


@torch.no_grad()
def class_logprobs(
    policy, records: Sequence[dict], responses: Sequence[str], labels: Sequence[str], batch: int = 8
) -> torch.Tensor:
    """(records, labels): log p(label + '</answer>' | prompt, the response's analysis, '<answer>'), summed over tokens."""
    tok = policy.tokenizer
    label_ids = [tok(f"{lab}{ANSWER_CLOSE}<|im_end|>", add_special_tokens=False).input_ids for lab in labels]
    rows = []
    for i in range(0, len(records), batch):
        chunk = list(records[i : i + batch])
        texts = [p + answer_prefix(r) for p, r in zip(prompt_texts(policy, chunk), responses[i : i + batch])]
        images = [load_images(r.get("images", [])) for r in chunk] if policy.is_vlm else None
        prompts = encode_prompts(policy.processor, texts, images)
        comps = [ids for _ in chunk for ids in label_ids]
        rb = RolloutBatch.from_completions(prompts, comps, int(tok.pad_token_id)).to(policy.device)
        with autocast_context("auto", policy.device):
            lp = completion_logprobs(policy.model, rb, method="grouped").logprobs
        rows.append(lp.float().sum(-1).view(len(chunk), len(labels)).cpu())
    return torch.cat(rows) if rows else torch.zeros(0, len(labels))
