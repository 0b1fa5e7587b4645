"""Group rollouts: each prompt (and its images) is encoded once, its KV cache grown to G rows, then sampled.

The sampling loop is ours rather than `model.generate` so that it also records the log-prob of every sampled
token, which the RL loss needs as the "old policy" log-prob without a second forward pass.

Log-prob convention: `sampling_logprobs` are `log_softmax(logits / logprob_temperature)` at the sampled token,
with `logprob_temperature=1.0` by default, i.e. the policy's plain distribution, NOT the temperature / top-k /
top-p warped distribution the token was drawn from. `training.prefix_grouper` computes the same quantity for the
loss (pass it the same `temperature`), so the ratio pi/pi_old is exactly 1 on the first update.

Prompts of different lengths are handled by looping over prompts: each prompt's prefill runs once on one row and
its decode runs on G rows, so nothing is padded and VLM positions (mRoPE) never see padding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from training.errors import ConfigError, MedrlError
from training.models import disable_cpu_bf16_repack


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
        move = (lambda t: t.to(device) if t is not None else None)  # noqa: E731
        return PromptInputs(move(self.input_ids), move(self.pixel_values), move(self.image_grid_thw),
                            move(self.mm_token_type_ids))

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def encode_prompts(processor: Any, texts: Sequence[str], images: Sequence[Sequence[Any] | None] | None = None
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

    @classmethod
    def from_completions(cls, prompts: Sequence[PromptInputs], completions: Sequence[Sequence[int]],
                         pad_token_id: int, group_index: Sequence[int] | None = None) -> RolloutBatch:
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
        return cls(list(prompts), ids, mask, torch.as_tensor(list(group_index), dtype=torch.long), pad_token_id,
                   texts=[""] * n)

    @property
    def num_rows(self) -> int:
        return int(self.completion_ids.shape[0])

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)

    def to(self, device: torch.device | str) -> RolloutBatch:
        move = (lambda t: t.to(device) if t is not None else None)  # noqa: E731
        return replace(self, prompts=[p.to(device) for p in self.prompts],
                       completion_ids=self.completion_ids.to(device), completion_mask=self.completion_mask.to(device),
                       group_index=self.group_index.to(device), sampling_logprobs=move(self.sampling_logprobs),
                       truncated=move(self.truncated))


@dataclass
class SamplingConfig:
    """How to sample G completions per prompt. temperature 0 or top_k 1 means greedy."""

    num_generations: int = 8
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    stop_strings: tuple[str, ...] = ()
    eos_token_ids: tuple[int, ...] | None = None  # None: the model's generation_config, else the tokenizer's
    logprob_temperature: float = 1.0  # temperature of the RECORDED log-probs (see module docstring)
    seed: int | None = None  # seeds a private torch.Generator when none is passed
    progress: bool = False  # tqdm bar over prompts

    def validate(self) -> None:
        if self.num_generations < 1:
            raise ConfigError(f"num_generations: must be >= 1, got {self.num_generations}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature: must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k: must be >= 0, got {self.top_k}")
        if self.logprob_temperature <= 0:
            raise ConfigError(f"logprob_temperature: must be > 0, got {self.logprob_temperature}")


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
    types = prompt.mm_token_type_ids if prompt.mm_token_type_ids is not None else mm_token_types(base.model, ids)
    pos, _ = base.model.get_rope_index(ids[None], types[None].to(ids.device), image_grid_thw=prompt.image_grid_thw)
    return pos[:, 0]


def continuation_positions(prompt_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Positions of `length` tokens after the prompt: the prompt's LAST position + 1, +2, ... (all mRoPE rows)."""
    step = torch.arange(1, length + 1, device=prompt_pos.device)
    return prompt_pos[..., -1:] + step


def _eos_ids(base: torch.nn.Module, tokenizer: Any, config: SamplingConfig) -> set[int]:
    if config.eos_token_ids is not None:
        return set(config.eos_token_ids)
    eos = getattr(getattr(base, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, (list, tuple)) else {int(eos)}


def sample_next(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Temperature, then top-k, then top-p (transformers' order), then one multinomial draw per row."""
    if config.temperature == 0 or config.top_k == 1:
        return logits.argmax(-1)
    scores = logits / config.temperature
    if config.top_k > 0 and config.top_k < scores.shape[-1]:
        kth = torch.topk(scores, config.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=False)
        cum = sorted_scores.softmax(-1).cumsum(-1)
        drop_sorted = cum <= (1 - config.top_p)
        drop_sorted[..., -1:] = False  # always keep the most likely token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    probs = scores.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class _StopChecker:
    """Decoded-text stop strings: only the tail that a new token can complete is decoded each step."""

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = [s for s in stop_strings if s]
        self.window = max((len(s) for s in self.stops), default=0) + 2  # >= 1 char per token

    def hit(self, tokens: list[int]) -> bool:
        if not self.stops:
            return False
        tail = self.tokenizer.decode(tokens[-self.window:], skip_special_tokens=False)
        return any(s in tail for s in self.stops)

    def cut(self, text: str) -> str:
        """The text up to and including the first stop string."""
        ends = [text.find(s) + len(s) for s in self.stops if s in text]
        return text[: min(ends)] if ends else text


@torch.no_grad()
def _sample_group(base: torch.nn.Module, prompt: PromptInputs, config: SamplingConfig, eos: set[int],
                  stopper: _StopChecker, pad_id: int, generator: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One prompt -> (ids (G,T), mask (G,T), logprobs (G,T), truncated (G,))."""
    g, p = config.num_generations, len(prompt)
    ids = prompt.input_ids
    if p == 0:
        raise ValueError("empty prompt")
    pos = prompt_positions(base, prompt)
    mrope = pos.dim() == 2
    if prompt.mm_token_type_ids is not None and int(prompt.mm_token_type_ids[-1]) != 0:
        raise ValueError("a prompt must end with a text token (the generation prompt), not an image placeholder")
    cache = None
    if p > 1:  # the prompt's last token is left out of the cache and fed with the first sampling step
        kwargs: dict[str, Any] = {}
        if prompt.pixel_values is not None:
            kwargs.update(pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw)
        pre_pos = pos[:, None, : p - 1] if mrope else pos[None, : p - 1]
        out = base(input_ids=ids[None, : p - 1], position_ids=pre_pos, use_cache=True, logits_to_keep=1, **kwargs)
        cache = out.cache
        cache.batch_repeat_interleave(g)
    step_ids = ids[-1:].expand(g).reshape(g, 1)
    last = pos[..., -1]
    tokens, logps = [], []
    alive = torch.ones(g, dtype=torch.bool, device=ids.device)
    done_at = torch.full((g,), config.max_new_tokens, dtype=torch.long, device=ids.device)
    history: list[list[int]] = [[] for _ in range(g)]
    for t in range(config.max_new_tokens):
        if mrope:
            step_pos = (last + t).view(3, 1, 1).expand(3, g, 1)
        else:
            step_pos = (last + t).view(1, 1).expand(g, 1)
        out = base(input_ids=step_ids, position_ids=step_pos, cache=cache, use_cache=True)
        cache = out.cache
        logits = out.logits[:, -1].float()
        if not bool(torch.isfinite(logits).all()):
            raise MedrlError(f"the policy's logits are not finite at sampling step {t}: the weights have diverged "
                             "(lower optim.lr or check the last checkpoint)")
        nxt = sample_next(logits, config, generator)
        lp = torch.log_softmax(logits / config.logprob_temperature, -1).gather(-1, nxt[:, None])[:, 0]
        nxt = torch.where(alive, nxt, torch.full_like(nxt, pad_id))
        tokens.append(nxt)
        logps.append(torch.where(alive, lp, torch.zeros_like(lp)))
        nxt_list = nxt.tolist()
        for r in alive.nonzero().flatten().tolist():
            history[r].append(nxt_list[r])
            if nxt_list[r] in eos or stopper.hit(history[r]):
                alive[r] = False
                done_at[r] = t + 1
        if not bool(alive.any()):
            break
        step_ids = nxt[:, None]
    out_ids = torch.stack(tokens, 1)
    mask = torch.arange(out_ids.shape[1], device=ids.device)[None] < done_at[:, None]
    return out_ids, mask, torch.stack(logps, 1), alive


def generate_rollouts(model: torch.nn.Module, processor: Any, prompts: Sequence[PromptInputs],
                      config: SamplingConfig, generator: torch.Generator | None = None) -> RolloutBatch:
    """Sample `config.num_generations` completions per prompt; the model is put in eval mode and restored after.

    `processor` is the tokenizer or a processor with `.tokenizer` (for decoding, EOS and pad ids).
    """
    from tqdm.auto import tqdm

    config.validate()
    base = unwrap_model(model)
    tokenizer = getattr(processor, "tokenizer", processor)
    device = model_device(base)
    eos = _eos_ids(base, tokenizer, config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
    if generator is None and config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    stopper = _StopChecker(tokenizer, config.stop_strings)
    disable_cpu_bf16_repack(base)  # a model loaded outside load_policy may still repack
    was_training = model.training
    model.eval()
    rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    moved = [p.to(device) for p in prompts]
    try:
        for prompt in tqdm(moved, desc="rollout", unit="prompt", disable=not config.progress):
            # inference_mode skips autograd's version counters (~15% of a tiny model's decode step); the clone
            # turns the results back into ordinary tensors the loss can use.
            with torch.inference_mode():
                group = _sample_group(base, prompt, config, eos, stopper, pad_id, generator)
            rows.append(tuple(x.clone() for x in group))
    finally:
        model.train(was_training)
    t = max(r[0].shape[1] for r in rows) if rows else 0
    n = len(rows) * config.num_generations
    ids = torch.full((n, t), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((n, t), dtype=torch.bool, device=device)
    logps = torch.zeros((n, t), dtype=torch.float32, device=device)
    truncated = torch.zeros(n, dtype=torch.bool, device=device)
    for i, (r_ids, r_mask, r_lp, r_trunc) in enumerate(rows):
        sl = slice(i * config.num_generations, (i + 1) * config.num_generations)
        w = r_ids.shape[1]
        ids[sl, :w] = torch.where(r_mask, r_ids, torch.full_like(r_ids, pad_id))
        mask[sl, :w] = r_mask
        logps[sl, :w] = r_lp * r_mask
        truncated[sl] = r_trunc
    texts = []
    for i in range(n):
        text = tokenizer.decode(ids[i][mask[i]].tolist(), skip_special_tokens=True)
        texts.append(stopper.cut(text))
    group_index = torch.arange(len(rows), device=device).repeat_interleave(config.num_generations)
    return RolloutBatch(list(moved), ids, mask, group_index, int(pad_id), logps, texts, truncated,
                        config.logprob_temperature)
