"""Group rollouts: every prompt (and its images) prefilled once, then all prompts x G rows decoded together.

The sampling loop is ours rather than `model.generate` so that it also records the log-prob of every sampled
token, which the RL loss needs as the "old policy" log-prob without a second forward pass.

Log-prob convention: `sampling_logprobs` are `log_softmax(logits / T)` at the sampled token, T the sampling
temperature (1 for greedy), i.e. the policy that sampled, as TRL and verl define it; top-k / top-p truncation
is not part of it. The loss forward (`training.objectives.forward`) computes the same quantity at the same T, so the ratio
pi/pi_old is exactly 1 on the first update and the KL and entropy are those of the sampling policy.

One decode loop per call: prompts are prefilled left-padded in chunks (each prompt's last token left out of the
cache and fed by the first decode step), their keys written once into their G rows of a pre-allocated cache
(`training.rollout.kv_cache`); then every row decodes one token per step with its own position (the prompt's last
position + t; all three mRoPE rows for Qwen2.5-VL) and a mask over its own prompt columns. Each step does one
device-to-host copy (the sampled ids and a finiteness flag); EOS and stop strings are checked on the host on
token ids (stop strings byte-wise through a memoised automaton, `training.rollout.stops`, so a stop string spanning tokens
is found). Finished rows are masked, and dropped from the cache (one copy) once at most half the rows are alive.
`compile: auto` compiles the decode forward on CUDA over a fixed-shape cache (untested on CUDA here: no GPU).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from training.config import check
from training.data.batch import (
    PromptInputs,
    RolloutBatch,
    model_device,
    prompt_positions,
    unwrap_model,
)
from training.errors import MedrlError
from training.models.loading import disable_cpu_bf16_repack
from training.rollout.kv_cache import CACHE_KWARG, RolloutKVCache, decode_attention, prefill_mask
from training.rollout.merged_lora import MERGE_MODES, merged_lora
from training.rollout.stops import StopStrings
from training.run.threads import intra_op_threads

log = logging.getLogger(__name__)

COMPILE_MODES = ("auto", "on", "off")
PREFILL_TOKENS = 16384  # padded prompt tokens per prefill forward (bounds the prefill's activations)
STATIC_BUCKET = 128  # compiled decode: cache length rounded up to this, so most steps reuse one graph


@dataclass
class SamplingConfig:
    """How to sample G completions per prompt; also the RL recipe's `rollout:` section.

    Fields:
        num_generations (int, default 8): G, completions per prompt (TRL's `num_generations`; GRPO's group size).
        max_new_tokens (int, default 64): tokens per completion at most (TRL's `max_completion_length`); with an
            environment, per model turn.
        temperature (float, default 1.0): sampling temperature; 0 (or top_k 1) is greedy, for evaluation; RL needs
            > 0 (checked by the RL config). Log-probs are recorded at this temperature (TRL's `temperature`).
        top_p (float, default 1.0): nucleus sampling mass (Holtzman et al. 2020); 1 is off.
        top_k (int, default 0): sample among the k likeliest tokens; 0 is off.
        stop_strings (list[str], default []): a completion ends after any of these (kept in its text).
        ignore_eos (bool, default False): sample exactly max_new_tokens (benchmarks compare equal work).
        eos_token_ids (list[int] | None, default None): the tokens that end a completion; None: the model's
            generation_config, else the tokenizer's.
        seed (int | None, default None): seeds a private torch.Generator when the caller passes none.
        progress (bool, default False): a progress bar over decode steps.
        compile (str, default "auto"): `auto` compiles the decode step on CUDA only, `on` everywhere, `off` never.
        merge_lora (str, default "auto"): sample on LoRA deltas merged into fp32 base weights, restored exactly
            after (`training.rollout.merged_lora`): `auto` on the CPU, `on` on any device, `off` never.
        decode_threads (int, default 0): torch threads for the decode steps (the prompt's prefill keeps the
            process's); 0 = auto: one on the CPU when a step's largest matmul is small (`SMALL_STEP_MACS`), else
            unchanged.
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
    progress: bool = False  # tqdm bar over decode steps
    compile: str = "auto"  # auto | on | off: torch.compile the decode step (auto: on CUDA)
    merge_lora: str = "auto"  # auto | on | off: sample on merged LoRA weights (auto: on the CPU)
    decode_threads: int = 0  # 0: auto (one thread for a small model's decode steps on the CPU)

    def validate(self, key: str = "rollout") -> None:
        check(self.num_generations >= 1, f"{key}.num_generations", "an integer >= 1", self.num_generations)
        check(self.max_new_tokens >= 1, f"{key}.max_new_tokens", "an integer >= 1", self.max_new_tokens)
        check(self.temperature >= 0, f"{key}.temperature", "a float >= 0 (0: greedy)", self.temperature)
        check(0 < self.top_p <= 1, f"{key}.top_p", "a float in (0, 1]", self.top_p)
        check(self.top_k >= 0, f"{key}.top_k", "an integer >= 0 (0: off)", self.top_k)
        check(self.compile in COMPILE_MODES, f"{key}.compile", " | ".join(COMPILE_MODES), self.compile)
        check(self.merge_lora in MERGE_MODES, f"{key}.merge_lora", " | ".join(MERGE_MODES), self.merge_lora)
        check(
            self.decode_threads >= 0,
            f"{key}.decode_threads",
            "an integer >= 0 (0: auto)",
            self.decode_threads,
        )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    @property
    def logprob_temperature(self) -> float:
        """The temperature of the recorded (and trained) log-probs: the sampling one, 1 when greedy."""
        return 1.0 if self.temperature == 0 else self.temperature


def eos_ids(base: torch.nn.Module, tokenizer: Any, config: SamplingConfig) -> set[int]:
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


# Placeholders a processor puts where an image or video goes. A completion holding one would no longer match the
# image features the training forward inserts ("Image features and image tokens do not match"): seen on a GPU with
# random 3B weights, which sample any of 151,936 ids. The sampler never draws them; log-probs stay the policy's.
PLACEHOLDER_KEYS = (
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "vision_token_id",
)


def never_sampled_ids(base: torch.nn.Module, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The model's vision placeholder ids (None for a text model)."""
    cfg = getattr(base, "config", None)
    ids = {getattr(c, k, None) for c in (cfg, getattr(cfg, "text_config", None)) for k in PLACEHOLDER_KEYS}
    ids = sorted(int(i) for i in ids if isinstance(i, int) and i >= 0)
    return torch.tensor(ids, dtype=torch.long, device=device) if ids else None


def sample_next(
    logits: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator | None,
    banned: torch.Tensor | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, then top-p (transformers' order), then one multinomial draw per row; `banned` ids
    (`never_sampled_ids`) are never drawn."""
    if config.greedy:
        return (logits if banned is None else logits.index_fill(-1, banned, float("-inf"))).argmax(-1)
    scores = (
        logits / config.temperature
    )  # a new tensor: the bans go in place, the caller's logits stay the policy's
    if banned is not None:
        scores.index_fill_(-1, banned, float("-inf"))
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


def sample_with_logprobs(
    logits: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator | None,
    banned: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the sampled ids, their log-probs at the log-prob temperature): one decode step of every sampler."""
    nxt = sample_next(logits, config, generator, banned)
    return nxt, torch.log_softmax(logits / config.logprob_temperature, -1).gather(-1, nxt[:, None])[:, 0]


@dataclass
class Decoding:
    """What a decode loop needs beside the model and its prompts, resolved once per call the same way for the group
    sampler here and the multi-turn sampler (`training.rollout.tree_sampler`)."""

    base: torch.nn.Module  # the unwrapped model (no DDP / peft wrapper)
    tokenizer: Any
    device: torch.device
    eos: set[int]  # ids that end a completion (`eos_ids`; empty under ignore_eos)
    pad_id: int  # the tokenizer's pad id, else the smallest EOS id, else 0
    generator: torch.Generator | None  # the caller's, else a new one seeded with `config.seed`, else None
    stops: StopStrings


def decoding(
    model: torch.nn.Module, processor: Any, config: SamplingConfig, generator: torch.Generator | None = None
) -> Decoding:
    """Resolve a sampler call's EOS, pad id, generator and stop strings; `processor` is the tokenizer or a
    processor with `.tokenizer`."""
    base = unwrap_model(model)
    tokenizer = getattr(processor, "tokenizer", processor)
    device = model_device(base)
    eos = eos_ids(base, tokenizer, config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
    if generator is None and config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    stops = StopStrings(tokenizer, config.stop_strings)
    disable_cpu_bf16_repack(base)  # a model loaded outside load_policy may still repack
    return Decoding(base, tokenizer, device, eos, int(pad_id), generator, stops)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """The model in eval mode (no dropout) inside the block, back in the mode it was in after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# Below this many multiply-adds in a decode step's largest matmul (rows x hidden x MLP width), the decode runs on one
# thread. Measured on 2 vCPUs under PASSIVE waiting, whole rollouts of the tiny Qwen2 (256 x 768; P=512, 64 tokens):
# 8 rows took 0.50 s on one thread against 0.77 s on two; 64 rows (12.6M) 2.13 s against 2.16 s.
SMALL_STEP_MACS = 1 << 24


def decode_threads(base: torch.nn.Module, rows: int, config: SamplingConfig) -> int | None:
    """The decode loop's torch threads: the config's, else one for a small step on the CPU, else None (as is)."""
    if config.decode_threads:
        return config.decode_threads
    if model_device(base).type != "cpu":
        return None
    text = base.config.get_text_config()
    width = getattr(text, "intermediate_size", None) or 4 * text.hidden_size
    return 1 if rows * text.hidden_size * width <= SMALL_STEP_MACS else None


# ---------------------------------------------------------------- the decode forward, compiled or not


def _decode_forward(
    base: torch.nn.Module, cache: RolloutKVCache, ids: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """One token per row -> (rows, vocab) float logits. The attention (`rollout_attention`) reads its masks from
    the cache; the mask argument is a placeholder so transformers builds none."""
    masks = {"full_attention": cache.prompt_mask}
    out = base(
        input_ids=ids,
        position_ids=positions,
        attention_mask=masks,
        cache=cache,
        use_cache=True,
        **{CACHE_KWARG: cache},
    )
    return out.logits[:, -1].float()


_COMPILED: dict[str, Any] = {}


def _use_compile(config: SamplingConfig, device: torch.device) -> bool:
    if config.compile == "auto":
        return device.type == "cuda" and "failed" not in _COMPILED
    return config.compile == "on"


def _compiled_forward() -> Callable:
    """One compiled function for the process (arguments, not closures, so later rollouts reuse its graphs)."""
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(_decode_forward, mode="reduce-overhead", dynamic=False)
    return _COMPILED["fn"]


# ---------------------------------------------------------------- the engine


def _check_model(base: torch.nn.Module) -> torch.dtype | None:
    """The prefill mask's form: None for a bool mask (SDPA, registered functions), else the additive dtype."""
    text = base.config.get_text_config()
    if "sliding_attention" in (getattr(text, "layer_types", None) or []):
        raise MedrlError(
            "rollout: sliding-window attention layers are not supported by the rollout cache "
            "(set use_sliding_window: false in the model config)"
        )
    impl = text._attn_implementation
    if impl and "flash" in impl:
        raise MedrlError(
            f"rollout: attention '{impl}' cannot take the rollout's per-row 4-D mask; load the policy "
            "with model.attn_implementation=sdpa (or eager)"
        )
    return torch.float32 if impl == "eager" else None


def _pad_token(base: torch.nn.Module, pad_id: int) -> int:
    """A harmless id for prefill padding: never an image or video placeholder (those pull in vision features)."""
    cfg = base.config
    media = {getattr(cfg, "image_token_id", None), getattr(cfg, "video_token_id", None)}
    return pad_id if pad_id not in media else 0


def _prefill(
    base: torch.nn.Module,
    cache: RolloutKVCache,
    prompts: Sequence[PromptInputs],
    positions: Sequence[torch.Tensor],
    fill: int,
    additive: torch.dtype | None,
) -> None:
    """Every prompt but its last token, in left-padded chunks of at most PREFILL_TOKENS padded tokens."""
    i = 0
    while i < len(prompts):
        j, w = i, 0
        while j < len(prompts) and (j == i or (j + 1 - i) * max(w, len(prompts[j]) - 1) <= PREFILL_TOKENS):
            w = max(w, len(prompts[j]) - 1)
            j += 1
        if w > 0:
            chunk, pos = prompts[i:j], positions[i:j]
            device = chunk[0].input_ids.device
            ids = torch.full((len(chunk), w), fill, dtype=torch.long, device=device)
            mrope = pos[0].dim() == 2
            pp = torch.zeros(
                (3, len(chunk), w) if mrope else (len(chunk), w), dtype=torch.long, device=device
            )
            pad = torch.tensor([w - (len(p) - 1) for p in chunk], device=device)
            for r, (p, q) in enumerate(zip(chunk, pos)):
                n = len(p) - 1
                if n:
                    ids[r, w - n :] = p.input_ids[:n]
                    pp[..., r, w - n :] = q[..., :n]
            kwargs: dict[str, Any] = {}
            pixels = [p.pixel_values for p in chunk if p.pixel_values is not None]
            if pixels:
                kwargs.update(
                    pixel_values=torch.cat(pixels),
                    image_grid_thw=torch.cat([p.image_grid_thw for p in chunk if p.pixel_values is not None]),
                )
            cache.begin_prefill(i, w)
            base(
                input_ids=ids,
                position_ids=pp,
                attention_mask={"full_attention": prefill_mask(pad, w, additive)},
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
                **kwargs,
            )
        i = j


_STATIC_CACHE: dict[str, Any] = {}


def _cache_for(
    base: torch.nn.Module,
    prompts: int,
    group: int,
    width: int,
    steps: int,
    prompt_mask: torch.Tensor,
    static: bool,
) -> RolloutKVCache:
    """A new cache, or (static mode) the last one when the shapes repeat, so CUDA graphs are not re-recorded for
    new buffer addresses every rollout."""
    layers = base.config.get_text_config().num_hidden_layers
    if not static:
        return RolloutKVCache(layers, prompts, group, width, steps, prompt_mask)
    key = (id(base), prompts, group, width, steps, str(prompt_mask.device))
    if _STATIC_CACHE.get("key") == key:
        cache = _STATIC_CACHE["cache"]
        cache.reuse(prompt_mask)
        return cache
    _STATIC_CACHE.clear()  # one held cache at most
    cache = RolloutKVCache(layers, prompts, group, width, steps, prompt_mask, static=True)
    _STATIC_CACHE.update(key=key, cache=cache)
    return cache


@dataclass
class _Rows:
    """Host-side bookkeeping of the rows still in the cache (after dropping groups, cache row i is `ids[i]`)."""

    ids: list[int]  # original row of each cache row
    alive: list[bool]
    stop_state: list[Any]


@torch.no_grad()
def _decode_all(
    base: torch.nn.Module,
    prompts: Sequence[PromptInputs],
    config: SamplingConfig,
    eos: set[int],
    stops: StopStrings,
    pad_id: int,
    generator: torch.Generator | None,
    static: bool,
    forward: Callable = _decode_forward,
) -> tuple[torch.Tensor, torch.Tensor, list[int], list[bool]]:
    """All prompts -> (tokens (steps, rows), logprobs (steps, rows), done_at per row, truncated per row).

    `static`: fixed shapes for a compiled step (bucketed prompt width, whole own buffer, no group dropping)."""
    from tqdm.auto import tqdm

    g, steps_max = config.num_generations, config.max_new_tokens
    device = prompts[0].input_ids.device
    for p in prompts:
        if len(p) == 0:
            raise ValueError("empty prompt")
        if p.mm_token_type_ids is not None and int(p.mm_token_type_ids[-1]) != 0:
            raise ValueError(
                "a prompt must end with a text token (the generation prompt), not an image placeholder"
            )
    additive = _check_model(base)
    banned = never_sampled_ids(base, device)
    positions = [prompt_positions(base, p) for p in prompts]
    width = max(1, max(len(p) - 1 for p in prompts))  # >= 1 column, masked when no prompt has a prefill
    if static:
        width = -(-width // STATIC_BUCKET) * STATIC_BUCKET
    starts = torch.tensor([width - (len(p) - 1) for p in prompts], device=device)
    prompt_mask = (torch.arange(width, device=device)[None] >= starts[:, None])[:, None, None, :].contiguous()
    cache = _cache_for(base, len(prompts), g, width, steps_max, prompt_mask, static)
    _prefill(base, cache, prompts, positions, _pad_token(base, pad_id), additive)

    rows = len(prompts) * g
    step_ids = torch.stack([p.input_ids[-1] for p in prompts]).repeat_interleave(g)[:, None]
    pos = torch.stack([q[..., -1] for q in positions], -1).repeat_interleave(g, -1)  # (rows,) or (3, rows)
    tokens = torch.full((steps_max, rows), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((steps_max, rows), dtype=torch.float32, device=device)
    book = _Rows(list(range(rows)), [True] * rows, [stops.start() for _ in range(rows)])
    groups = list(range(len(prompts)))  # original prompt of each cache group
    index: torch.Tensor | None = None  # original rows of the cache rows, once groups were dropped
    done_at = [steps_max] * rows
    eos_set = frozenset(eos)
    bar = tqdm(total=steps_max, desc="rollout", unit="token", disable=not config.progress)
    try:
        with decode_attention(base), intra_op_threads(decode_threads(base, rows, config)):
            for t in range(steps_max):
                cache.begin_decode(t)
                logits = forward(base, cache, step_ids, pos[..., None])
                finite = torch.isfinite(logits).all(-1)
                logits = logits.masked_fill(
                    ~finite[:, None], 0.0
                )  # sample something; the step is an error below
                nxt, lp = sample_with_logprobs(logits, config, generator, banned)
                if index is None:
                    tokens[t], logps[t] = nxt, lp
                else:
                    tokens[t].index_copy_(0, index, nxt)
                    logps[t].index_copy_(0, index, lp)
                host = torch.cat(
                    [nxt, finite.all().long()[None]]
                ).tolist()  # the step's one device-to-host copy
                bar.update(1)
                if not host[-1]:
                    raise MedrlError(
                        f"the policy's logits are not finite at sampling step {t}: the weights have "
                        "diverged (lower optim.lr or check the last checkpoint)"
                    )
                for i, alive in enumerate(book.alive):
                    if not alive:
                        continue
                    tok = host[i]
                    hit = tok in eos_set
                    if not hit and stops:
                        book.stop_state[i], hit = stops.feed(book.stop_state[i], tok)
                    if hit:
                        book.alive[i] = False
                        done_at[book.ids[i]] = t + 1
                live_groups = [k for k in range(len(groups)) if any(book.alive[k * g : (k + 1) * g])]
                if not live_groups:
                    break
                step_ids, pos = nxt[:, None], pos + 1
                if (
                    not static and len(live_groups) <= len(groups) // 2
                ):  # drop finished groups: one cache copy
                    keep = [k * g + r for k in live_groups for r in range(g)]
                    sel = torch.tensor(keep, device=device)
                    cache.select_groups(torch.tensor(live_groups, device=device))
                    step_ids, pos = step_ids[sel], pos[..., sel]
                    book = _Rows(
                        [book.ids[i] for i in keep],
                        [book.alive[i] for i in keep],
                        [book.stop_state[i] for i in keep],
                    )
                    groups = [groups[k] for k in live_groups]
                    index = torch.tensor(book.ids, device=device)
    finally:
        bar.close()
    truncated = [False] * rows
    for i, alive in zip(book.ids, book.alive):
        truncated[i] = alive
    return tokens, logps, done_at, truncated


def _decode_with_compile(
    base: torch.nn.Module, prompts: Sequence[PromptInputs], config: SamplingConfig, *args: Any
) -> tuple[torch.Tensor, torch.Tensor, list[int], list[bool]]:
    """The compiled decode when asked for; under `auto`, a compile failure is logged once and decoding goes on
    uncompiled (the failure is remembered for the process)."""
    if not _use_compile(config, model_device(base)):
        return _decode_all(base, prompts, config, *args, static=False)
    generator = args[-1]
    state = generator.get_state() if generator is not None else None
    try:
        return _decode_all(base, prompts, config, *args, static=True, forward=_compiled_forward())
    except MedrlError:
        raise
    except Exception as e:  # noqa: BLE001 - torch.compile raises many kinds; `on` re-raises them
        if config.compile == "on":
            raise
        _COMPILED["failed"] = True
        _STATIC_CACHE.clear()
        if state is not None:  # the uncompiled run draws what it would have drawn from the start
            generator.set_state(state)
        log.warning(
            "rollout.compile=auto: compiling the decode step failed (%s: %s); decoding uncompiled",
            type(e).__name__,
            e,
        )
        return _decode_all(base, prompts, config, *args, static=False)


def generate_rollouts(
    model: torch.nn.Module,
    processor: Any,
    prompts: Sequence[PromptInputs],
    config: SamplingConfig,
    generator: torch.Generator | None = None,
) -> RolloutBatch:
    """Sample `config.num_generations` completions per prompt; the model is put in eval mode and restored after.

    `processor` is the tokenizer or a processor with `.tokenizer` (for decoding, EOS and pad ids).
    """
    config.validate()
    d = decoding(model, processor, config, generator)
    base, tokenizer, device, pad_id, stops = d.base, d.tokenizer, d.device, d.pad_id, d.stops
    g = config.num_generations
    moved = [p.to(device) for p in prompts]
    if not moved:
        empty = torch.zeros((0, 0), dtype=torch.long, device=device)
        return RolloutBatch(
            [],
            empty,
            empty.bool(),
            torch.zeros(0, dtype=torch.long, device=device),
            int(pad_id),
            empty.float(),
            [],
            torch.zeros(0, dtype=torch.bool, device=device),
            config.logprob_temperature,
        )
    with eval_mode(model), merged_lora(model, config.merge_lora):
        # inference_mode skips autograd's version counters (~15% of a tiny model's decode step); the clones
        # below turn the results back into ordinary tensors the loss can use.
        with torch.inference_mode():
            tokens, logps, done_at, truncated = _decode_with_compile(
                base, moved, config, d.eos, stops, pad_id, d.generator
            )
            width = max(done_at)
            lengths = torch.tensor(done_at, device=device)
            mask = torch.arange(width, device=device)[None] < lengths[:, None]
            ids = torch.where(mask, tokens[:width].T, pad_id)
            lp = torch.where(mask, logps[:width].T, 0.0)
        ids, mask, lp = ids.clone(), mask.clone(), lp.clone()
    texts = []
    for row, n_tok in zip(ids.tolist(), done_at):
        texts.append(stops.cut(tokenizer.decode(row[:n_tok], skip_special_tokens=True)))
    group_index = torch.arange(len(moved), device=device).repeat_interleave(g)
    return RolloutBatch(
        list(moved),
        ids,
        mask,
        group_index,
        int(pad_id),
        lp,
        texts,
        torch.tensor(truncated, dtype=torch.bool, device=device),
        config.logprob_temperature,
    )
