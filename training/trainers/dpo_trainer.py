"""DPO on preference pairs: DermIQ's KG-preference stage, shared by every pipeline.

A pair is a group of two completions of one prompt in a `RolloutBatch` (row 2i chosen, 2i+1 rejected), so the
grouped (Prefix-Grouper) forward encodes each prompt and its images once for both, and the lean output head
only sees completion positions. Sequence log-prob = the sum of the completion's token log-probs (temperature
1: DPO compares the model's own likelihoods). The reference never costs a second model: `start` swaps the held
starting adapter in, `base` switches the adapter off (`training.objectives.reference`), once per micro-batch, before the
update. The loss of a step is the sum over its pairs / the step's pair count, so gradient accumulation gives the
update of one big batch. Everything around the step (data order, non-finite updates, clipping, logging,
checkpoints, `--resume`) is the shared step loop's (`training.trainers.step_loop`); the reference's held tensors go into
its checkpoints, so a resumed run has the same anchor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training.data.batch import RolloutBatch
from training.data.records import completion_text
from training.errors import DataError, MedrlError
from training.models.chat import encode_records
from training.models.loading import autocast_context
from training.objectives.forward import completion_logprobs
from training.objectives.losses import dpo_loss
from training.objectives.reference import Reference
from training.trainers.dpo_config import DPOConfig
from training.trainers.step_loop import StepLoop, StepResult, accumulate

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
            raise DataError(
                f"{prefix}a prompt of {len(prompt)} tokens leaves no room for its completions under "
                f"data.max_length={max_length}; raise data.max_length"
            )
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
def dpo_update(
    model,
    micro: list[RolloutBatch],
    reference: Reference,
    cfg: DPOConfig,
    device: torch.device,
    normalizer: float | None = None,
) -> tuple[float, dict[str, float]]:
    """Backward of one optimizer step's loss over its micro-batches; returns (loss, pair-weighted stats). No
    optimizer step. `normalizer`: the step's pair count over every rank (default: these micro-batches' own)."""
    fwd = {"method": cfg.loss.forward, "head": cfg.loss.head}
    with autocast_context(cfg.run.precision, device):
        refs = [pair_logprobs(reference.logprobs(model, m, **fwd), m.completion_mask) for m in micro]
    if normalizer is None:
        normalizer = sum(m.num_rows // 2 for m in micro)

    def micro_loss(
        item: tuple[RolloutBatch, tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, dict[str, float], float]:
        m, (ref_c, ref_r) = item
        with autocast_context(cfg.run.precision, device):
            out = completion_logprobs(model, m, **fwd)
        pol_c, pol_r = pair_logprobs(out.logprobs, m.completion_mask)
        loss, stats = dpo_loss(
            pol_c,
            pol_r,
            ref_c,
            ref_r,
            beta=cfg.dpo.beta,
            loss_type=cfg.dpo.loss_type,
            label_smoothing=cfg.dpo.label_smoothing,
            normalizer=normalizer,
        )
        stats.update(
            {"logps/chosen": float(pol_c.detach().mean()), "logps/rejected": float(pol_r.detach().mean())}
        )
        return loss, stats, int(pol_c.shape[0])

    return accumulate(zip(micro, refs), micro_loss)


# ---------------------------------------------------------------------------------------------- the loop
def train_dpo(cfg: DPOConfig, resume: bool = False) -> dict:
    """Run DPO to `cfg.run.max_steps` on the shared step loop; returns the last logged metrics."""
    loop = StepLoop(cfg, "dpo", resume)
    policy, dist = loop.policy, loop.dist
    reference = Reference(cfg.reference, loop.model)
    if loop.resume_from is not None:
        reference.restore(loop.resume_tensors, policy.device, loop.resume_from)

    def step() -> StepResult:
        encoded = [
            encode_pairs(policy, records, cfg.data.max_length, where=loop.data.path)
            for records in loop.micro_batches(cfg.batch_size, cfg.grad_accum)
        ]
        micro = [e.batch.to(policy.device) for e in encoded]
        pairs = sum(e.num_pairs for e in encoded)
        loss, stats = dpo_update(
            loop.model, micro, reference, cfg, policy.device, normalizer=dist.sum([pairs])[0]
        )
        if dist.enabled:  # pair-weighted means over ranks, the loss summed (each rank's is its share)
            keys = sorted(stats)
            sums = dist.sum([loss, pairs] + [stats[k] * pairs for k in keys])
            loss, stats = sums[0], {k: v / max(sums[1], 1) for k, v in zip(keys, sums[2:])}
        grad_norm = loop.update(loss)
        reference.maybe_sync(loop.model, loop.step + 1)
        tokens, truncated = dist.sum(
            [sum(int(m.completion_mask.sum()) for m in micro), sum(e.truncated for e in encoded)]
        )
        rows = 2 * cfg.batch_size * cfg.grad_accum * dist.world
        return StepResult(
            loss,
            grad_norm,
            tokens,
            {**stats, "completion_tokens": int(tokens), "truncated_frac": truncated / rows},
        )

    return loop.run(
        step, postfix={"loss": "loss", "margin": "rewards/margins"}, tensors=reference.checkpoint_tensors
    )
