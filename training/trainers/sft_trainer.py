"""Supervised fine-tuning on chat records: DermIQ stage 2 and the Clinical-R1 cold start.

Loss is the token mean over the assistant tokens of a whole optimizer step (all micro-batches), so gradient
accumulation gives the same update as one big batch. Everything around the step (data order and position,
non-finite updates, clipping, logging, checkpoints, `--resume`) is the shared step loop's (`training.trainers.step_loop`).

Under `torchrun` (`training.run.distributed`) a step's micro-batches are dealt out to the ranks: `batch_size` and
`grad_accum` are per rank, the global batch is `batch_size * grad_accum * world`, and the normalizer and the
gradient sum are global, so N ranks make the update one process makes with `grad_accum * N`.
"""

from __future__ import annotations

import torch

from training.data.batch import unwrap_model
from training.models.chat import count_label_tokens, encode_conversations
from training.models.loading import autocast_context
from training.objectives.head import head_nll
from training.trainers.sft_config import SFTConfig
from training.trainers.step_loop import StepLoop, StepResult, accumulate


def sft_micro_loss(model, batch: dict, normalizer: int) -> tuple[torch.Tensor, int]:
    """Sum of assistant-token cross-entropy / `normalizer` (the step's total label tokens).

    Only the hidden states of labelled positions reach the output head, in chunks (`training.objectives.head`): no
    full-vocabulary logits for the whole sequence, which at Qwen's 151,936 tokens would dominate memory.
    """
    labels = batch.pop("labels")
    base = unwrap_model(model)
    hidden = base.model(**batch, use_cache=False).last_hidden_state
    nll, n = head_nll(base.get_output_embeddings(), hidden[:, :-1], labels[:, 1:].to(hidden.device))
    return nll / max(1, normalizer), n


def train_sft(cfg: SFTConfig, resume: bool = False) -> dict:
    """Run SFT to `cfg.run.max_steps` on the shared step loop; returns the last logged metrics."""
    loop = StepLoop(cfg, "sft", resume)
    policy, dist = loop.policy, loop.dist

    def micro_loss(batch: dict, normalizer: float) -> tuple[torch.Tensor, dict[str, float], float]:
        batch = {k: v.to(policy.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with autocast_context(cfg.run.precision, policy.device):
            loss, _ = sft_micro_loss(loop.model, batch, normalizer)
        return loss, {}, 0.0

    def step() -> StepResult:
        micro = [
            encode_conversations(policy, records, cfg.data.max_length)
            for records in loop.micro_batches(cfg.batch_size, cfg.grad_accum)
        ]
        tokens = dist.sum([sum(count_label_tokens(b) for b in micro)])[0]  # the step's, over every rank
        loss, _ = accumulate(micro, lambda b: micro_loss(b, tokens))
        loss = dist.sum([loss])[0]
        grad_norm = loop.update(loss)
        return StepResult(loss, grad_norm, tokens, {"label_tokens": int(tokens)})

    return loop.run(step, postfix={"loss": "loss"})
