"""What flows between rollout, rewards and the loss: encoded prompts, `RolloutBatch`, and rotary positions.

Both the sampler (`training.rollout.engine`) and the loss forward (`training.objectives.forward`, `training.objectives.prefix_grouper`) sit
on this module and never on each other, so Tree-GRPO and DPO add files instead of reaching across.

Completion masks may have holes (multi-turn rollouts: observation tokens are inputs, never trained): everything
here measures a row by its *fed length*, the last unmasked token + 1, never by the mask's sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass
class PromptInputs:
    """One encoded prompt, enough to re-run it: token ids and, for a VLM, the processor's image tensors."""

    input_ids: torch.Tensor  # (P,) long
    pixel_values: torch.Tensor | None = None  # (patches, dim), this prompt's images only
    image_grid_thw: torch.Tensor | None = None  # (num_images, 3)
    mm_token_type_ids: torch.Tensor | None = None  # (P,): 0 text, 1 image, 2 video

    @classmethod
    def from_encoding(cls, enc: Mapping[str, Any]) -> PromptInputs:
        """From a processor/tokenizer output for ONE prompt (batch dim 1 or none); padding is dropped."""
        ids = torch.as_tensor(enc["input_ids"])
        keep = None
        if ids.dim() == 2:
            if ids.shape[0] != 1:
                raise ValueError("from_encoding takes one prompt; encode prompts one at a time")
            ids = ids[0]
            if enc.get("attention_mask") is not None:
                keep = torch.as_tensor(enc["attention_mask"])[0].bool()
        types = enc.get("mm_token_type_ids")
        if types is not None:
            types = torch.as_tensor(types)
            types = types[0] if types.dim() == 2 else types
        if keep is not None:
            ids = ids[keep]
            types = types[keep] if types is not None else None
        return cls(ids.long(), enc.get("pixel_values"), enc.get("image_grid_thw"), types)

    def to(self, device: torch.device | str) -> PromptInputs:
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return PromptInputs(
            move(self.input_ids),
            move(self.pixel_values),
            move(self.image_grid_thw),
            move(self.mm_token_type_ids),
        )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def encode_prompts(
    processor: Any, texts: Sequence[str], images: Sequence[Sequence[Any] | None] | None = None
) -> list[PromptInputs]:
    """Encode already-templated prompt texts one by one (a tokenizer, or a VLM processor when images are given)."""
    out = []
    for i, text in enumerate(texts):
        imgs = list(images[i]) if images is not None and images[i] else None
        if imgs:
            enc = processor(text=[text], images=imgs, return_tensors="pt")
        else:
            tok = getattr(processor, "tokenizer", processor)
            enc = tok([text], return_tensors="pt")
        out.append(PromptInputs.from_encoding(enc))
    return out


@dataclass
class RolloutBatch:
    """G completions per prompt in one right-padded (N, T) layout, N = num_prompts * G, rows grouped by prompt.

    `completion_mask` is 1 on the tokens the loss should see: up to and including the EOS token or the token
    that completed a stop string; 0 on padding. `sampling_logprobs` is 0 where the mask is 0.
    """

    prompts: list[PromptInputs]
    completion_ids: torch.Tensor  # (N, T) long, right-padded with pad_token_id
    completion_mask: torch.Tensor  # (N, T) bool
    group_index: torch.Tensor  # (N,) long: which prompt each row belongs to
    pad_token_id: int
    sampling_logprobs: torch.Tensor | None = None  # (N, T) float32
    texts: list[str] = field(default_factory=list)  # decoded completions (special tokens skipped)
    truncated: torch.Tensor | None = None  # (N,) bool: hit max_new_tokens without EOS / stop string
    logprob_temperature: float = 1.0
    # multi-turn / Tree-GRPO rollouts (training.rollout.tree): the tree of each row, each row's last environment info,
    # the trees themselves and the sampler's counters
    tree_index: torch.Tensor | None = None  # (N,) long
    infos: list[dict] = field(default_factory=list)
    trees: list[Any] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_completions(
        cls,
        prompts: Sequence[PromptInputs],
        completions: Sequence[Sequence[int]],
        pad_token_id: int,
        group_index: Sequence[int] | None = None,
    ) -> RolloutBatch:
        """Build a batch from given token lists (teacher forcing, tests, benchmarks); G rows per prompt in order."""
        n = len(completions)
        if group_index is None:
            if n % max(len(prompts), 1):
                raise ValueError(f"{n} completions do not split evenly over {len(prompts)} prompts")
            group_index = torch.arange(len(prompts)).repeat_interleave(n // len(prompts)).tolist()
        t = max((len(c) for c in completions), default=0)
        ids = torch.full((n, t), pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, t), dtype=torch.bool)
        for i, c in enumerate(completions):
            ids[i, : len(c)] = torch.as_tensor(list(c), dtype=torch.long)
            mask[i, : len(c)] = True
        return cls(
            list(prompts),
            ids,
            mask,
            torch.as_tensor(list(group_index), dtype=torch.long),
            pad_token_id,
            texts=[""] * n,
        )

    @property
    def num_rows(self) -> int:
        return int(self.completion_ids.shape[0])

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)

    def to(self, device: torch.device | str) -> RolloutBatch:
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return replace(
            self,
            prompts=[p.to(device) for p in self.prompts],
            completion_ids=self.completion_ids.to(device),
            completion_mask=self.completion_mask.to(device),
            group_index=self.group_index.to(device),
            sampling_logprobs=move(self.sampling_logprobs),
            truncated=move(self.truncated),
            tree_index=move(self.tree_index),
        )


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (LoRA layers are injected, so they stay active)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def mm_token_types(inner: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """0 text / 1 image / 2 video per token, from the config's placeholder ids (when the processor gave none)."""
    cfg = inner.config
    types = torch.zeros_like(ids)
    if getattr(cfg, "image_token_id", None) is not None:
        types[ids == cfg.image_token_id] = 1
    if getattr(cfg, "video_token_id", None) is not None:
        types[ids == cfg.video_token_id] = 2
    return types


def is_mrope_model(base: torch.nn.Module) -> bool:
    return hasattr(getattr(base, "model", None), "get_rope_index")


def prompt_positions(base: torch.nn.Module, prompt: PromptInputs) -> torch.Tensor:
    """Rotary positions of the prompt alone: (P,) for a text LM, (3, P) t/h/w rows for Qwen2.5-VL."""
    ids = prompt.input_ids
    if not is_mrope_model(base):
        return torch.arange(ids.shape[0], device=ids.device)
    types = (
        prompt.mm_token_type_ids if prompt.mm_token_type_ids is not None else mm_token_types(base.model, ids)
    )
    pos, _ = base.model.get_rope_index(
        ids[None], types[None].to(ids.device), image_grid_thw=prompt.image_grid_thw
    )
    return pos[:, 0]


def continuation_positions(prompt_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Positions of `length` tokens after the prompt: the prompt's LAST position + 1, +2, ... (all mRoPE rows)."""
    step = torch.arange(1, length + 1, device=prompt_pos.device)
    return prompt_pos[..., -1:] + step


def fed_lengths(mask: torch.Tensor) -> torch.Tensor:
    """(N,) tokens each row feeds to the model: its last unmasked position + 1 (0 for an empty row)."""
    t = mask.shape[-1]
    if t == 0:
        return torch.zeros(mask.shape[:-1], dtype=torch.long, device=mask.device)
    steps = torch.arange(1, t + 1, device=mask.device)
    return torch.where(mask.bool(), steps, 0).amax(-1)


def select_groups(batch: RolloutBatch, groups: Sequence[int]) -> RolloutBatch:
    """The rows of some prompt groups, as a smaller batch (micro-batching never splits a group).

    The width is the longest fed length, so a mask with holes keeps every token after its last hole.
    """
    rows = torch.cat([(batch.group_index == g).nonzero().flatten() for g in groups])
    width = int(fed_lengths(batch.completion_mask[rows]).max().clamp(min=1))
    remap = {int(g): i for i, g in enumerate(groups)}
    return replace(
        batch,
        prompts=[batch.prompts[g] for g in groups],
        completion_ids=batch.completion_ids[rows, :width],
        completion_mask=batch.completion_mask[rows, :width],
        group_index=torch.tensor([remap[int(g)] for g in batch.group_index[rows]], device=rows.device),
        sampling_logprobs=None if batch.sampling_logprobs is None else batch.sampling_logprobs[rows, :width],
        texts=[batch.texts[i] for i in rows.tolist()] if batch.texts else [],
        truncated=None if batch.truncated is None else batch.truncated[rows],
        tree_index=None if batch.tree_index is None else batch.tree_index[rows],
        infos=[batch.infos[i] for i in rows.tolist()] if batch.infos else [],
    )
