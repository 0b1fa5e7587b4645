"""One RL loop: rollout -> rewards -> advantages -> `num_iterations` policy updates per rollout batch.

GRPO, GRPO++ and CRPO are settings of this loop (advantage estimator, rewards, reference). Rollouts encode
each prompt (and image) once and grow its KV cache to G rows; the loss forward is Prefix-Grouper's shared-prefix
pass by default, with the lean output head. Every log-prob (old policy, reference, current) is of the sampling
policy, logits / rollout.temperature. A step whose loss or gradient is not finite is skipped and counted; too
many in a row stop the run with a clear message.

Under `torchrun` (`training.distributed`) the step's `prompts_per_step` prompts are dealt out to the ranks, each
group staying on one rank; the rewards are gathered so the advantages see the global batch (batch-level
z-scores stay right), the loss normalizer and the gradient sum are global, and each rank samples with its own
generator (seed + rank).
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from training.advantages import compute_advantages, correct_from_reward, weighted_sum
from training.batch import RolloutBatch, encode_records, select_groups
from training.data import DataOrder, read_jsonl
from training.errors import MedrlError
from training.forward import completion_logprobs, frozen_logprobs
from training.losses import PolicyLossConfig, loss_normalizer, policy_loss
from training.models import autocast_context, load_policy, trainable_parameters
from training.optim import build_optimizer, build_scheduler, clip_and_step
from training.reference import Reference
from training.rewards import resolve, score
from training.rl_config import RLConfig
from training.rollout import generate_rollouts
from training.session import Session, seed_everything
from training.tracking import progress
from training.tree import global_tree_index, max_model_tokens, rows_per_prompt, sample_trees, save_trees

GENERATOR_KEY = "generator"


def reward_fields(records: list[dict], group_size: int) -> tuple[list, dict[str, list]]:
    """Each record's fields repeated for its G completions: `fn(prompts, completions, **fields)`."""
    prompts = [r["prompt"] for r in records for _ in range(group_size)]
    keys = sorted({k for r in records for k in r} - {"prompt"})
    fields = {k: [r.get(k) for r in records for _ in range(group_size)] for k in keys}
    return prompts, fields


class _LossStats:
    """Token-weighted means of the per-micro-batch loss stats; min/max kept as true extremes."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.extremes: dict[str, float] = {}
        self.tokens = 0.0

    def add(self, stats: dict[str, float], tokens: float) -> None:
        self.tokens += tokens
        for k, v in stats.items():
            if k == "tokens":
                continue
            if k.endswith("/max"):
                self.extremes[k] = max(self.extremes.get(k, v), v)
            elif k.endswith("/min"):
                self.extremes[k] = min(self.extremes.get(k, v), v)
            else:
                self.sums[k] = self.sums.get(k, 0.0) + v * tokens

    def result(self) -> dict[str, float]:
        n = max(self.tokens, 1.0)
        return {**{k: v / n for k, v in self.sums.items()}, **self.extremes}


def _checkpoint_tensors(generator: torch.Generator, reference: Reference) -> dict[str, torch.Tensor]:
    return {GENERATOR_KEY: generator.get_state(), **reference.checkpoint_tensors()}


def _restore_tensors(tensors: dict[str, torch.Tensor], generator: torch.Generator, reference: Reference,
                     device: torch.device, where: object) -> None:
    if GENERATOR_KEY not in tensors:
        raise MedrlError(f"{where}: the checkpoint has no RL state (sampling generator): it was not written by the "
                         "RL trainer")
    generator.set_state(tensors[GENERATOR_KEY].cpu())
    reference.restore(tensors, device, where)


def train_rl(cfg: RLConfig, resume: bool = False) -> dict:
    seed_everything(cfg.run.seed)
    reward_fns = resolve(list(cfg.rewards), cfg.reward_modules)
    data = read_jsonl(cfg.data.train, "rl", limit=cfg.data.max_records)
    session = Session.open(cfg, resume)
    dist = session.dist
    if cfg.prompts_per_step % dist.world:
        raise MedrlError(f"prompts_per_step={cfg.prompts_per_step} does not split over {dist.world} processes: "
                         "make it a multiple of the process count")
    policy = load_policy(cfg.model)
    model = policy.model
    params = [p for _, p in trainable_parameters(model)]
    optimizer = build_optimizer(params, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.run.max_steps * cfg.num_iterations, cfg.optim)
    reference = Reference(cfg.reference, model)  # before any restore: `start` holds the starting adapter
    seed = cfg.rollout.seed if cfg.rollout.seed is not None else cfg.run.seed
    generator = torch.Generator(device=policy.device).manual_seed(seed + dist.rank)
    state, tensors = session.restore(model, optimizer, scheduler)
    if session.resume_from is not None:
        _restore_tensors(tensors, generator, reference, policy.device, session.resume_from)
    step = int(state["step"])
    order = DataOrder(len(data), cfg.run.seed, cfg.data.shuffle, pos=int(state.get("data_pos", 0)))
    G = rows_per_prompt(cfg.rollout)  # rows per prompt: G, or M*K for Tree-GRPO
    temperature = cfg.rollout.logprob_temperature
    loss_cfg: PolicyLossConfig = cfg.loss
    if loss_cfg.max_completion_length is None:
        loss_cfg = replace(loss_cfg, max_completion_length=max_model_tokens(cfg.rollout))
    fwd = {"method": loss_cfg.forward, "head": loss_cfg.head, "temperature": temperature}
    dist.broadcast_params(params)
    session.start(policy, data, step)
    nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
    skipped_total = int(state.get("skipped_nonfinite", 0))
    model.train()
    last: dict = {}
    with progress(total=cfg.run.max_steps, initial=step, desc=f"rl {cfg.run.name}",
                  enabled=cfg.run.progress and dist.is_main, unit="step") as bar:
        while step < cfg.run.max_steps:
            t0 = time.time()
            records = dist.shard([data.records[i] for i in order.take(cfg.prompts_per_step)])
            prompts = encode_records(policy, records)
            with autocast_context(cfg.run.precision, policy.device):
                if cfg.rollout.multi_turn:  # environment turns: chains or Tree-GRPO trees (training.tree)
                    batch = sample_trees(model, policy.processor, records, cfg.rollout, generator, policy.is_vlm)
                else:
                    batch = generate_rollouts(model, policy.processor, prompts, cfg.rollout, generator)
            t_roll = time.time() - t0

            # rewards -> advantages
            row_prompts, fields = reward_fields(records, G)
            rewards = {name: score(name, fn, row_prompts, batch.texts, fields) for name, fn in reward_fns.items()}
            row_reward = weighted_sum(rewards, cfg.rewards)  # this process's rows, for the saved trees
            correct = None
            if cfg.advantages.correct_reward is not None:
                correct = correct_from_reward(rewards, cfg.advantages.correct_reward, cfg.advantages.correct_threshold)
            rows_here = slice(0, batch.num_rows)
            group_index = batch.group_index.cpu()
            if dist.enabled:  # the global batch's rewards on every rank, groups numbered rank after rank
                rewards, correct, group_index, rows_here = _gather_rewards(dist, rewards, correct, group_index)
            adv, adv_stats = compute_advantages(rewards, cfg.rewards, group_index, cfg.advantages, correct=correct,
                                                subgroups=None if batch.tree_index is None
                                                else global_tree_index(dist, batch.tree_index.cpu()))
            adv = adv[rows_here].to(policy.device)

            if batch.trees and dist.is_main:  # Tree-GRPO: the step's trees for the app (trees/step-N.jsonl)
                save_trees(session.run.trees_dir / f"step-{step + 1}.jsonl", batch, policy.processor, step + 1,
                           row_reward, adv)

            # old / reference log-probs: computed once per rollout batch, before any update
            groups = list(range(len(records)))
            chunks = [groups[i::cfg.grad_accum] for i in range(cfg.grad_accum)]
            micro = [select_groups(batch, c) for c in chunks]
            rows = [torch.cat([(batch.group_index == g).nonzero().flatten() for g in c]) for c in chunks]
            with autocast_context(cfg.run.precision, policy.device):
                ref_lp = [reference.logprobs(model, m, **fwd) for m in micro]
                if cfg.reference.as_old_policy:
                    old_lp = ref_lp
                elif cfg.num_iterations > 1:
                    old_lp = [frozen_logprobs(model, m, **fwd) for m in micro]
                else:
                    old_lp = [None] * len(micro)  # one update per rollout: ratio 1, gradient intact
            normalizer = dist.sum([loss_normalizer([m.completion_mask for m in micro], loss_cfg)])[0]
            entropy = "grad" if loss_cfg.entropy_coef > 0 else "stats"

            t1 = time.time()
            loss_stats: dict[str, float] = {}
            step_loss, grad_norm = 0.0, 0.0
            for _ in range(cfg.num_iterations):
                step_loss = 0.0
                acc = _LossStats()
                for m, r, old, ref in zip(micro, rows, old_lp, ref_lp):
                    with autocast_context(cfg.run.precision, policy.device):
                        out = completion_logprobs(model, m, entropy=entropy, **fwd)
                    mask = m.completion_mask.to(out.logprobs.dtype)
                    loss, st = policy_loss(out.logprobs, old, adv[r], mask, loss_cfg, ref_logps=ref,
                                           entropy=out.entropy, normalizer=normalizer)
                    loss.backward()
                    step_loss += float(loss.detach())
                    acc.add(st, float(mask.sum()))
                loss_stats = acc.result()
                dist.sum_grads(params)
                step_loss = dist.sum([step_loss])[0]
                grad_norm, stepped = clip_and_step(params, optimizer, cfg.optim.max_grad_norm, step_loss)
                if stepped:
                    nonfinite_in_a_row = 0
                else:
                    skipped_total += 1
                    nonfinite_in_a_row += 1
                scheduler.step()
                if nonfinite_in_a_row > cfg.max_nonfinite_in_a_row:
                    raise MedrlError(f"{session.dir}: {nonfinite_in_a_row} policy updates in a row had a non-finite loss "
                                     f"or gradient (step {step + 1}); lower optim.lr, raise optim.max_grad_norm clipping, "
                                     "or check the rewards")
            step += 1
            reference.maybe_sync(model, step)
            dt = time.time() - t0
            last = _step_metrics(batch, step_loss, grad_norm, scheduler.get_last_lr()[0], dt, t_roll, time.time() - t1,
                                 skipped_total)
            last.update({k if k.startswith(("adv/", "reward/")) else f"adv/{k}": v for k, v in adv_stats.items()})
            last.update({f"loss/{k}": v for k, v in loss_stats.items()})
            last.update(batch.stats)  # multi-turn: tokens generated/encoded, env calls, questions, answer rate
            last = dist.reduce_metrics(last)
            if step % cfg.run.log_every == 0 or step == cfg.run.max_steps:
                session.metrics.log(step, last)
            bar.update(1)
            bar.set_postfix(reward=f"{last['reward/mean']:.3f}")
            if session.should_save(step):
                session.checkpoint(step, model, optimizer, scheduler,
                                   {"data_pos": order.pos, "nonfinite_in_a_row": nonfinite_in_a_row,
                                    "skipped_nonfinite": skipped_total},
                                   tensors=_checkpoint_tensors(generator, reference))
    session.finish(model, policy)
    return last


def _gather_rewards(dist, rewards: dict[str, torch.Tensor], correct: torch.Tensor | None,
                    group_index: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor, slice]:
    """Every rank's rewards, correctness and groups concatenated in rank order; this rank's rows in them."""
    parts = dist.gather((rewards, correct, group_index))
    offsets_rows, offsets_groups, rows, groups = [], [], 0, 0
    for _, _, gi in parts:
        offsets_rows.append(rows)
        offsets_groups.append(groups)
        rows += gi.numel()
        groups += int(gi.max()) + 1 if gi.numel() else 0
    merged = {k: torch.cat([p[0][k] for p in parts]) for k in rewards}
    corr = torch.cat([p[1] for p in parts]) if correct is not None else None
    gidx = torch.cat([gi + off for (_, _, gi), off in zip(parts, offsets_groups)])
    start = offsets_rows[dist.rank]
    return merged, corr, gidx, slice(start, start + group_index.numel())


def _step_metrics(batch: RolloutBatch, loss: float, grad_norm: float, lr: float, dt: float, t_roll: float,
                  t_update: float, skipped_total: int) -> dict:
    lengths = batch.completion_mask.sum(-1).float()
    return {"loss": loss, "grad_norm": grad_norm, "lr": lr,
            "completion_len_mean": float(lengths.mean()), "completion_len_max": float(lengths.max()),
            "truncated_frac": float(batch.truncated.float().mean()) if batch.truncated is not None else 0.0,
            "tokens_per_s": float(lengths.sum()) / max(dt, 1e-9), "rollout_s": t_roll, "update_s": t_update,
            "step_time_s": dt, "skipped_nonfinite": skipped_total}
