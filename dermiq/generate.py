"""Batched generation and class likelihoods for evaluation and DPO sampling (many prompts at once, left-padded).

The RL sampler (`training.rollout`) decodes one prompt's group at a time, which is right for training; evaluating a
held-out split or sampling DPO candidates wants every prompt in one batch. Class probabilities score each label as
the answer after the model's own analysis, on the trainer's shared-prompt forward (`training.forward`), so the
number is the model's likelihood, not a parse of its text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from training.batch import RolloutBatch, encode_prompts
from training.chat import render
from training.data import load_images
from training.forward import completion_logprobs
from training.models import autocast_context

from .prompts import ANSWER_CLOSE, ANSWER_OPEN


def prompt_texts(policy, records: Sequence[dict]) -> list[str]:
    return [render(policy.processor, r["prompt"], add_generation_prompt=True) for r in records]


@torch.no_grad()
def generate(policy, records: Sequence[dict], max_new_tokens: int, n: int = 1, temperature: float = 0.0,
             batch: int = 48, seed: int = 0) -> list[list[str]]:
    """``n`` completions per record (greedy when temperature is 0), decoded without special tokens."""
    model, proc = policy.model, policy.processor
    tok = policy.tokenizer
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    torch.manual_seed(seed)
    was = model.training
    model.eval()
    out: list[list[str]] = []
    try:
        for i in range(0, len(records), batch):
            chunk = list(records[i: i + batch])
            texts = prompt_texts(policy, chunk)
            kw = {"padding": True, "padding_side": "left", "return_tensors": "pt"}
            if policy.is_vlm:
                imgs = [img for r in chunk for img in load_images(r.get("images", []))]
                enc = proc(text=texts, images=imgs or None, **kw)
            else:
                enc = tok(texts, **kw)
            enc = {k: v.to(policy.device) for k, v in enc.items()}
            how = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature > 0 else {
                "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
            with autocast_context("auto", policy.device):
                ids = model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=n, eos_token_id=eos,
                                     pad_token_id=eos[1], **how)
            new = ids[:, enc["input_ids"].shape[1]:]
            dec = tok.batch_decode(new, skip_special_tokens=True)
            out += [dec[j * n:(j + 1) * n] for j in range(len(chunk))]
    finally:
        model.train(was)
    return out


def answer_prefix(text: str) -> str:
    """The response up to its answer: everything before ``<answer>`` (the whole text when there is none)."""
    cut = text.find(ANSWER_OPEN)
    return (text[:cut] if cut >= 0 else text.rstrip() + "\n") + ANSWER_OPEN


@torch.no_grad()
def class_logprobs(policy, records: Sequence[dict], responses: Sequence[str], labels: Sequence[str],
                   batch: int = 8) -> torch.Tensor:
    """(records, labels): log p(label + '</answer>' | prompt, the response's analysis, '<answer>'), summed over tokens."""
    tok = policy.tokenizer
    label_ids = [tok(f"{lab}{ANSWER_CLOSE}<|im_end|>", add_special_tokens=False).input_ids for lab in labels]
    rows = []
    for i in range(0, len(records), batch):
        chunk = list(records[i: i + batch])
        texts = [p + answer_prefix(r) for p, r in zip(prompt_texts(policy, chunk), responses[i: i + batch])]
        images = [load_images(r.get("images", [])) for r in chunk] if policy.is_vlm else None
        prompts = encode_prompts(policy.processor, texts, images)
        comps = [ids for _ in chunk for ids in label_ids]
        rb = RolloutBatch.from_completions(prompts, comps, int(tok.pad_token_id)).to(policy.device)
        with autocast_context("auto", policy.device):
            lp = completion_logprobs(policy.model, rb, method="grouped").logprobs
        rows.append(lp.float().sum(-1).view(len(chunk), len(labels)).cpu())
    return torch.cat(rows) if rows else torch.zeros(0, len(labels))
