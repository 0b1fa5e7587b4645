"""Chat records -> model inputs, with labels on the assistant's tokens only.

The chat template renders the conversation; the processor (VLM: expands each image into its visual tokens)
or tokenizer encodes it. Assistant spans are found on the token ids: after `<|im_start|>` + the role header
`assistant\\n`, up to and including the closing `<|im_end|>`. Working on ids (not characters) keeps this
right after image expansion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from training.data.batch import PromptInputs, encode_prompts
from training.data.records import load_images
from training.errors import ConfigError

IGNORE_INDEX = -100  # label of a token no loss reads (prompt, padding): the value torch and HF use
IGNORE = IGNORE_INDEX


def render(processor, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The chat template's text; a tokenizer without one (a base, non-instruct checkpoint) is a one-line error."""
    tok = getattr(processor, "tokenizer", processor)
    if not (getattr(processor, "chat_template", None) or getattr(tok, "chat_template", None)):
        raise ConfigError(
            f"model.name: the tokenizer of '{getattr(tok, 'name_or_path', '?')}' has no chat template: "
            "use an instruct checkpoint, or add a chat_template to its tokenizer_config.json"
        )
    return processor.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def assistant_mask(ids: list[int], tokenizer) -> list[bool]:
    """True on tokens the assistant wrote (its content and its `<|im_end|>`)."""
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    mask = [False] * len(ids)
    i = 0
    while i < len(ids):
        if ids[i] != start:
            i += 1
            continue
        # Decode the header token by token until its newline; the role is what precedes it.
        j, header = i + 1, ""
        while j < len(ids) and "\n" not in header and ids[j] != end:
            header += tokenizer.decode([ids[j]])
            j += 1
        is_assistant = header.split("\n", 1)[0].strip() == "assistant"
        k = j
        while k < len(ids) and ids[k] != end:
            k += 1
        if is_assistant:
            for t in range(j, min(k + 1, len(ids))):
                mask[t] = True
        i = k + 1
    return mask


def encode_conversations(
    policy, records: list[dict], max_length: int, field: str = "messages"
) -> dict[str, Any]:
    """Right-padded batch with `labels` (-100 outside assistant tokens); truncates to `max_length` tokens."""
    texts = [render(policy.processor, r[field]) for r in records]
    tok = policy.tokenizer
    if policy.is_vlm:
        images = [img for r in records for img in load_images(r.get("images", []))]
        enc = policy.processor(
            text=texts, images=images or None, return_tensors="pt", padding=True, padding_side="right"
        )
    else:
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="right")
    ids = enc["input_ids"]
    labels = torch.full_like(ids, IGNORE)
    for b in range(ids.shape[0]):
        row = ids[b].tolist()
        mask = assistant_mask(row, tok)
        for t, m in enumerate(mask):
            if m and enc["attention_mask"][b, t]:
                labels[b, t] = row[t]
    enc = dict(enc)
    enc["labels"] = labels
    if ids.shape[1] > max_length:
        if policy.is_vlm and "image_grid_thw" in enc:
            # Cutting inside an image would break the vision tower's bookkeeping: keep images whole.
            image_id = tok.convert_tokens_to_ids("<|image_pad|>")
            last_image = (ids == image_id).nonzero()
            if len(last_image) and int(last_image[:, 1].max()) >= max_length:
                raise ValueError(f"max_length={max_length} cuts through an image; raise data.max_length")
        for k in ("input_ids", "attention_mask", "labels", "mm_token_type_ids"):
            if k in enc:
                enc[k] = enc[k][:, :max_length]
    return enc


def count_label_tokens(batch: dict) -> int:
    """Tokens that carry loss after the causal shift (label at position t is predicted from t-1)."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def encode_records(policy: Any, records: Sequence[dict]) -> list[PromptInputs]:
    """Chat-templated prompts of RL records (with their images for a VLM), each encoded once."""
    texts = [render(policy.processor, r["prompt"], add_generation_prompt=True) for r in records]
    images = [load_images(r.get("images", [])) for r in records] if policy.is_vlm else None
    return encode_prompts(policy.processor, texts, images)
