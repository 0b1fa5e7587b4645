"""Supervised fine-tuning on chat records: DermIQ stage 2 and the Clinical-R1 cold start.

Loss is the token mean over the assistant tokens of a whole optimizer step (all micro-batches), so gradient
accumulation gives the same update as one big batch. Data order is a seeded permutation per epoch and the
position is checkpointed, so `--resume` continues exactly.

Under `torchrun` (`training.distributed`) a step's micro-batches are dealt out to the ranks: `batch_size` and
`grad_accum` are per rank, the global batch is `batch_size * grad_accum * world`, and the normalizer and the
gradient sum are global, so N ranks make the update one process makes with `grad_accum * N`.
"""

from __future__ import annotations

import time

import torch

from training.batch import unwrap_model
from training.chat import count_label_tokens, encode_conversations
from training.data import DataOrder, read_jsonl
from training.head import head_nll
from training.models import autocast_context, load_policy, trainable_parameters
from training.optim import build_optimizer, build_scheduler, clip_and_step
from training.session import Session, seed_everything
from training.sft_config import SFTConfig
from training.tracking import progress


def sft_micro_loss(model, batch: dict, normalizer: int) -> tuple[torch.Tensor, int]:
    """Sum of assistant-token cross-entropy / `normalizer` (the step's total label tokens).

    Only the hidden states of labelled positions reach the output head, in chunks (`training.head`): no
    full-vocabulary logits for the whole sequence, which at Qwen's 151,936 tokens would dominate memory.
    """
    labels = batch.pop("labels")
    base = unwrap_model(model)
    hidden = base.model(**batch, use_cache=False).last_hidden_state
    nll, n = head_nll(base.get_output_embeddings(), hidden[:, :-1], labels[:, 1:].to(hidden.device))
    return nll / max(1, normalizer), n


def train_sft(cfg: SFTConfig, resume: bool = False) -> dict:
    """Run SFT to `cfg.run.max_steps`; returns the last logged metrics."""
    seed_everything(cfg.run.seed)
    data = read_jsonl(cfg.data.train, "sft", limit=cfg.data.max_records)
    run = Session.open(cfg, resume)
    policy = load_policy(cfg.model)
    model = policy.model
    optimizer = build_optimizer([p for _, p in trainable_parameters(model)], cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.run.max_steps, cfg.optim)
    state, _ = run.restore(model, optimizer, scheduler)
    step = int(state["step"])
    order = DataOrder(len(data), cfg.run.seed, cfg.data.shuffle, pos=int(state.get("data_pos", 0)))
    dist = run.dist
    params = [p for _, p in trainable_parameters(model)]
    dist.broadcast_params(params)
    run.start(policy, data, step)
    model.train()
    last: dict = {}
    with progress(total=cfg.run.max_steps, initial=step, desc=f"sft {cfg.run.name}",
                  enabled=cfg.run.progress and dist.is_main, unit="step") as bar:
        while step < cfg.run.max_steps:
            t0 = time.time()
            # every rank draws the whole step (same order, same position) and encodes its own micro-batches
            step_idx = [order.take(cfg.batch_size) for _ in range(cfg.grad_accum * dist.world)]
            micro = [encode_conversations(policy, [data.records[i] for i in idx], cfg.data.max_length)
                     for idx in dist.shard(step_idx)]
            normalizer = dist.sum([sum(count_label_tokens(b) for b in micro)])[0]
            loss_total, tokens = 0.0, 0
            for batch in micro:
                batch = {k: v.to(policy.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                with autocast_context(cfg.run.precision, policy.device):
                    loss, n = sft_micro_loss(model, batch, normalizer)
                loss.backward()
                loss_total += float(loss.detach())
                tokens += n
            dist.sum_grads(params)
            loss_total, tokens = dist.sum([loss_total, tokens])
            grad_norm, stepped = clip_and_step(params, optimizer, cfg.optim.max_grad_norm, loss_total)
            skipped = 0 if stepped else 1  # a NaN/inf step changes nothing; counted in the metrics
            scheduler.step()
            step += 1
            dt = time.time() - t0
            last = {"loss": loss_total, "grad_norm": grad_norm, "lr": scheduler.get_last_lr()[0],
                    "label_tokens": int(tokens), "tokens_per_s": tokens / max(dt, 1e-9), "step_time_s": dt,
                    "skipped_nonfinite": skipped, "epoch": order.pos / len(data)}
            if step % cfg.run.log_every == 0 or step == cfg.run.max_steps:
                run.metrics.log(step, last)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_total:.3f}")
            if run.should_save(step):
                run.checkpoint(step, model, optimizer, scheduler, {"data_pos": order.pos})
    run.finish(model, policy)
    return last
