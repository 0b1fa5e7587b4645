"""DPO on preference pairs: DermIQ's KG-preference stage, shared by every pipeline.

A pair is a group of two completions of one prompt in a `RolloutBatch` (row 2i chosen, 2i+1 rejected), so the
grouped (Prefix-Grouper) forward encodes each prompt and its images once for both, and the lean output head
only sees completion positions. Sequence log-prob = the sum of the completion's token log-probs (temperature
1: DPO compares the model's own likelihoods). The reference never costs a second model: `start` swaps the held
starting adapter in, `base` switches the adapter off (`training.reference`), once per micro-batch, before the
update. The loss of a step is the sum over its pairs / the step's pair count, so gradient accumulation gives the
update of one big batch. Data position, optimizer, RNG and the reference tensors are checkpointed: `--resume`
continues exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training.batch import RolloutBatch, encode_records
from training.data import DataOrder, completion_text, read_jsonl
from training.dpo_config import DPOConfig
from training.errors import DataError, MedrlError
from training.forward import completion_logprobs
from training.losses import dpo_loss
from training.models import autocast_context, load_policy, trainable_parameters
from training.optim import build_optimizer, build_scheduler, clip_and_step
from training.reference import Reference
from training.session import Session, seed_everything
from training.tracking import progress

END_OF_TURN = "<|im_end|>"
SIDES = ("chosen", "rejected")


# ---------------------------------------------------------------------------------------------- encoding
@dataclass
class PairBatch:
    """Encoded pairs: `batch` rows alternate chosen / rejected, group i = pair i."""

    batch: RolloutBatch
    truncated: int  # completions cut to fit data.max_length

    @property
    def num_pairs(self) -> int:
        return len(self.batch.prompts)


def end_of_turn_id(tokenizer) -> int:
    """`<|im_end|>` (the Qwen chat template's end of an assistant turn), else the tokenizer's EOS."""
    tid = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if tid is None or tid == tokenizer.unk_token_id:
        tid = tokenizer.eos_token_id
    if tid is None:
        raise MedrlError(f"the tokenizer has neither {END_OF_TURN} nor an EOS token to end a completion with")
    return int(tid)


def encode_pairs(policy, records: Sequence[dict], max_length: int, where: object = "") -> PairBatch:
    """Prompt (chat template + generation prompt, images via the processor) once per pair; chosen and rejected
    = assistant text + end of turn, cut to `max_length` minus the prompt (the prompt is never cut: images)."""
    prompts = encode_records(policy, records)
    tok = policy.tokenizer
    end = end_of_turn_id(tok)
    completions, truncated = [], 0
    for rec, prompt in zip(records, prompts):
        room = max_length - len(prompt)
        if room < 1:
            prefix = f"{where}: " if where else ""
            raise DataError(f"{prefix}a prompt of {len(prompt)} tokens leaves no room for its completions under "
                            f"data.max_length={max_length}; raise data.max_length")
        for side in SIDES:
            ids = tok(completion_text(rec[side]), add_special_tokens=False)["input_ids"] + [end]
            if len(ids) > room:
                ids, truncated = ids[:room], truncated + 1
            completions.append(ids)
    groups = [i for i in range(len(records)) for _ in SIDES]
    return PairBatch(RolloutBatch.from_completions(prompts, completions, tok.pad_token_id, groups), truncated)


def pair_logprobs(token_logprobs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T) token log-probs -> (chosen, rejected) sequence log-probs, (B,) each."""
    seq = (token_logprobs * mask.to(token_logprobs.dtype)).sum(-1)
    return seq[0::2], seq[1::2]


# ---------------------------------------------------------------------------------------------- one step
class _PairStats:
    """Pair-weighted means of the per-micro-batch DPO stats, so accumulation logs what one big batch would."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.pairs = 0

    def add(self, stats: dict[str, float], pairs: int) -> None:
        self.pairs += pairs
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * pairs

    def result(self) -> dict[str, float]:
        return {k: v / max(self.pairs, 1) for k, v in self.sums.items()}


def dpo_update(model, micro: list[RolloutBatch], reference: Reference, cfg: DPOConfig, device: torch.device,
               normalizer: float | None = None) -> tuple[float, dict[str, float]]:
    """Backward of one optimizer step's loss over its micro-batches; returns (loss, stats). No optimizer step.

    `normalizer`: the step's pair count over every rank (default: these micro-batches' own).
    """
    fwd = {"method": cfg.loss.forward, "head": cfg.loss.head}
    with autocast_context(cfg.run.precision, device):
        refs = [pair_logprobs(reference.logprobs(model, m, **fwd), m.completion_mask) for m in micro]
    if normalizer is None:
        normalizer = sum(m.num_rows // 2 for m in micro)
    total, acc = 0.0, _PairStats()
    for m, (ref_c, ref_r) in zip(micro, refs):
        with autocast_context(cfg.run.precision, device):
            out = completion_logprobs(model, m, **fwd)
        pol_c, pol_r = pair_logprobs(out.logprobs, m.completion_mask)
        loss, stats = dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=cfg.dpo.beta, loss_type=cfg.dpo.loss_type,
                               label_smoothing=cfg.dpo.label_smoothing, normalizer=normalizer)
        loss.backward()
        total += float(loss.detach())
        stats.update({"logps/chosen": float(pol_c.detach().mean()), "logps/rejected": float(pol_r.detach().mean())})
        acc.add(stats, int(pol_c.shape[0]))
    return total, acc.result()


# ---------------------------------------------------------------------------------------------- the loop
def train_dpo(cfg: DPOConfig, resume: bool = False) -> dict:
    """Run DPO to `cfg.run.max_steps`; returns the last logged metrics."""
    seed_everything(cfg.run.seed)
    data = read_jsonl(cfg.data.train, "dpo", limit=cfg.data.max_records)
    session = Session.open(cfg, resume)
    policy = load_policy(cfg.model)
    model = policy.model
    params = [p for _, p in trainable_parameters(model)]
    optimizer = build_optimizer(params, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.run.max_steps, cfg.optim)
    reference = Reference(cfg.reference, model)  # before any restore: `start` holds the starting adapter
    state, tensors = session.restore(model, optimizer, scheduler)
    if session.resume_from is not None:
        reference.restore(tensors, policy.device, session.resume_from)
    step = int(state["step"])
    order = DataOrder(len(data), cfg.run.seed, cfg.data.shuffle, pos=int(state.get("data_pos", 0)))
    skipped = int(state.get("skipped_nonfinite", 0))
    dist = session.dist
    dist.broadcast_params(params)
    session.start(policy, data, step)
    model.train()
    last: dict = {}
    with progress(total=cfg.run.max_steps, initial=step, desc=f"dpo {cfg.run.name}",
                  enabled=cfg.run.progress and dist.is_main, unit="step") as bar:
        while step < cfg.run.max_steps:
            t0 = time.time()
            # every rank draws the whole step; each encodes its own micro-batches (batch_size, grad_accum: per rank)
            step_idx = [order.take(cfg.batch_size) for _ in range(cfg.grad_accum * dist.world)]
            encoded = [encode_pairs(policy, [data.records[i] for i in idx], cfg.data.max_length, where=data.path)
                       for idx in dist.shard(step_idx)]
            micro = [e.batch.to(policy.device) for e in encoded]
            pairs = sum(e.num_pairs for e in encoded)
            loss, stats = dpo_update(model, micro, reference, cfg, policy.device,
                                     normalizer=dist.sum([pairs])[0])
            dist.sum_grads(params)
            if dist.enabled:  # pair-weighted means over ranks, the loss summed (each rank's is its share)
                keys = sorted(stats)
                sums = dist.sum([loss, pairs] + [stats[k] * pairs for k in keys])
                loss, stats = sums[0], {k: v / max(sums[1], 1) for k, v in zip(keys, sums[2:])}
            grad_norm, stepped = clip_and_step(params, optimizer, cfg.optim.max_grad_norm, loss)
            skipped += 0 if stepped else 1  # a NaN/inf step changes nothing; counted in the metrics
            scheduler.step()
            step += 1
            reference.maybe_sync(model, step)
            dt = time.time() - t0
            tokens, truncated = dist.sum([sum(int(m.completion_mask.sum()) for m in micro),
                                          sum(e.truncated for e in encoded)])
            last = {"loss": loss, **stats, "grad_norm": grad_norm, "lr": scheduler.get_last_lr()[0],
                    "completion_tokens": int(tokens), "tokens_per_s": tokens / max(dt, 1e-9), "step_time_s": dt,
                    "truncated_frac": truncated / (2 * cfg.batch_size * cfg.grad_accum * dist.world),
                    "skipped_nonfinite": skipped, "epoch": order.pos / len(data)}
            if step % cfg.run.log_every == 0 or step == cfg.run.max_steps:
                session.metrics.log(step, last)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", margin=f"{stats['rewards/margins']:.3f}")
            if session.should_save(step):
                session.checkpoint(step, model, optimizer, scheduler, {"data_pos": order.pos, "skipped_nonfinite": skipped},
                                   tensors=reference.checkpoint_tensors())
    session.finish(model, policy)
    return last
