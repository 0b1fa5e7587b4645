"""Group rollouts: each prompt (and its images) is encoded once, its KV cache grown to G rows, then sampled.

The sampling loop is ours rather than `model.generate` so that it also records the log-prob of every sampled
token, which the RL loss needs as the "old policy" log-prob without a second forward pass.

Log-prob convention: `sampling_logprobs` are `log_softmax(logits / T)` at the sampled token, T the sampling
temperature (1 for greedy), i.e. the policy that sampled, as TRL and verl define it; top-k / top-p truncation
is not part of it. The loss forward (`training.forward`) computes the same quantity at the same T, so the ratio
pi/pi_old is exactly 1 on the first update and the KL and entropy are those of the sampling policy.

Prompts of different lengths are handled by looping over prompts: each prompt's prefill runs once on one row and
its decode runs on G rows, so nothing is padded and VLM positions (mRoPE) never see padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from training.batch import (
    PromptInputs,
    RolloutBatch,
    model_device,
    prompt_positions,
    unwrap_model,
)
from training.config import check
from training.errors import MedrlError
from training.models import disable_cpu_bf16_repack


@dataclass
class SamplingConfig:
    """How to sample G completions per prompt; also the RL recipe's `rollout:` section.

    temperature 0 or top_k 1 means greedy (evaluation; RL needs temperature > 0, checked by the RL config).
    """

    num_generations: int = 8  # G
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    stop_strings: list[str] = field(default_factory=list)
    ignore_eos: bool = False  # sample exactly max_new_tokens (benchmarks)
    eos_token_ids: list[int] | None = None  # None: the model's generation_config, else the tokenizer's
    seed: int | None = None  # seeds a private torch.Generator when none is passed
    progress: bool = False  # tqdm bar over prompts

    def validate(self, key: str = "rollout") -> None:
        check(self.num_generations >= 1, f"{key}.num_generations", "an integer >= 1", self.num_generations)
        check(self.max_new_tokens >= 1, f"{key}.max_new_tokens", "an integer >= 1", self.max_new_tokens)
        check(self.temperature >= 0, f"{key}.temperature", "a float >= 0 (0: greedy)", self.temperature)
        check(0 < self.top_p <= 1, f"{key}.top_p", "a float in (0, 1]", self.top_p)
        check(self.top_k >= 0, f"{key}.top_k", "an integer >= 0 (0: off)", self.top_k)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    @property
    def logprob_temperature(self) -> float:
        """The temperature of the recorded (and trained) log-probs: the sampling one, 1 when greedy."""
        return 1.0 if self.temperature == 0 else self.temperature


def _eos_ids(base: torch.nn.Module, tokenizer: Any, config: SamplingConfig) -> set[int]:
    if config.ignore_eos:
        return set()
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
    if config.greedy:
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
