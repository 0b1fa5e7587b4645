"""One RL loop: rollout -> rewards -> advantages -> `num_iterations` policy updates per rollout batch.

GRPO, GRPO++ and CRPO are settings of this loop (advantage estimator, rewards, reference). Rollouts encode
each prompt (and image) once and grow its KV cache to G rows; the loss forward is Prefix-Grouper's shared-prefix
pass by default, with the lean output head. Every log-prob (old policy, reference, current) is of the sampling
policy, logits / rollout.temperature. Micro-batches, non-finite updates, clipping, logging, checkpoints and
resume are the shared step loop's (`training.trainers.step_loop`); each of a step's `num_iterations` updates is one
optimizer update there.

Under `torchrun` (`training.run.distributed`) the step's `prompts_per_step` prompts are dealt out to the ranks, each
group staying on one rank; the rewards are gathered so the advantages see the global batch (batch-level
z-scores stay right), the loss normalizer and the gradient sum are global, and each rank samples with its own
generator (seed + rank).
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from training.data.batch import select_groups
from training.errors import MedrlError
from training.models.chat import encode_records
from training.models.loading import autocast_context
from training.objectives.advantages import compute_advantages, correct_from_reward, weighted_sum
from training.objectives.forward import completion_logprobs, frozen_logprobs
from training.objectives.losses import PolicyLossConfig, loss_normalizer, policy_loss
from training.objectives.reference import Reference
from training.objectives.rewards import resolve, score
from training.rollout.engine import generate_rollouts
from training.rollout.tree import max_model_tokens, rows_per_prompt
from training.rollout.tree_io import save_trees
from training.rollout.tree_sampler import global_tree_index, sample_trees
from training.run.distributed import setup
from training.trainers.rl_config import RLConfig
from training.trainers.rollout_records import rollout_rows, write_rollouts
from training.trainers.step_loop import StepLoop, StepResult, accumulate

GENERATOR_KEY = "generator"


def reward_fields(records: list[dict], group_size: int) -> tuple[list, dict[str, list]]:
    """Each record's fields repeated for its G completions: `fn(prompts, completions, **fields)`."""
    prompts = [r["prompt"] for r in records for _ in range(group_size)]
    keys = sorted({k for r in records for k in r} - {"prompt"})
    fields = {k: [r.get(k) for r in records for _ in range(group_size)] for k in keys}
    return prompts, fields


def _checkpoint_tensors(generator: torch.Generator, reference: Reference) -> dict[str, torch.Tensor]:
    return {GENERATOR_KEY: generator.get_state(), **reference.checkpoint_tensors()}


def _restore_tensors(
    tensors: dict[str, torch.Tensor],
    generator: torch.Generator,
    reference: Reference,
    device: torch.device,
    where: object,
) -> None:
    if GENERATOR_KEY not in tensors:
        raise MedrlError(
            f"{where}: the checkpoint has no RL state (sampling generator): it was not written by the "
            "RL trainer"
        )
    generator.set_state(tensors[GENERATOR_KEY].cpu())
    reference.restore(tensors, device, where)


def train_rl(cfg: RLConfig, resume: bool = False) -> dict:
    """Run the RL loop to `cfg.run.max_steps` on the shared step loop; returns the last logged metrics."""
    reward_fns = resolve(list(cfg.rewards), cfg.reward_modules)
    world = setup().world  # before the model loads: a batch that cannot be dealt out fails at once
    if cfg.prompts_per_step % world:
        raise MedrlError(
            f"prompts_per_step={cfg.prompts_per_step} does not split over {world} processes: "
            "make it a multiple of the process count"
        )
    loop = StepLoop(cfg, "rl", resume, updates_per_step=cfg.num_iterations)
    policy, model, dist, session = loop.policy, loop.model, loop.dist, loop.session
    reference = Reference(cfg.reference, model)
    seed = cfg.rollout.seed if cfg.rollout.seed is not None else cfg.run.seed
    generator = torch.Generator(device=policy.device).manual_seed(seed + dist.rank)
    if loop.resume_from is not None:
        _restore_tensors(loop.resume_tensors, generator, reference, policy.device, loop.resume_from)
    G = rows_per_prompt(cfg.rollout)  # rows per prompt: G, or M*K for Tree-GRPO
    temperature = cfg.rollout.logprob_temperature
    loss_cfg: PolicyLossConfig = cfg.loss
    if loss_cfg.max_completion_length is None:
        loss_cfg = replace(loss_cfg, max_completion_length=max_model_tokens(cfg.rollout))
    fwd = {"method": loss_cfg.forward, "head": loss_cfg.head, "temperature": temperature}
    entropy = "grad" if loss_cfg.entropy_coef > 0 else "stats"

    def step() -> StepResult:
        t0 = time.time()
        records = dist.shard([loop.data.records[i] for i in loop.order.take(cfg.prompts_per_step)])
        prompts = encode_records(policy, records)
        with autocast_context(cfg.run.precision, policy.device):
            if cfg.rollout.multi_turn:  # environment turns: chains or Tree-GRPO trees (training.rollout.tree)
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
            correct = correct_from_reward(
                rewards, cfg.advantages.correct_reward, cfg.advantages.correct_threshold
            )
        rows_here = slice(0, batch.num_rows)
        group_index = batch.group_index.cpu()
        local_rewards = rewards  # this process's rows (the gather below makes `rewards` the global batch's)
        if dist.enabled:  # the global batch's rewards on every rank, groups numbered rank after rank
            rewards, correct, group_index, rows_here = _gather_rewards(dist, rewards, correct, group_index)
        adv, adv_stats = compute_advantages(
            rewards,
            cfg.rewards,
            group_index,
            cfg.advantages,
            correct=correct,
            subgroups=None if batch.tree_index is None else global_tree_index(dist, batch.tree_index.cpu()),
        )
        adv = adv[rows_here].to(policy.device)

        if (
            cfg.run.log_rollouts and dist.is_main
        ):  # what was sampled, with its reward parts: rollouts/step-N.jsonl
            write_rollouts(
                session.run.rollouts_dir / f"step-{loop.step + 1}.jsonl",
                rollout_rows(
                    loop.step + 1,
                    records,
                    batch.texts,
                    batch.group_index,
                    local_rewards,
                    cfg.rewards,
                    adv,
                    cfg.run.log_rollouts,
                    batch.tree_index,
                ),
            )
        if batch.trees and dist.is_main:  # Tree-GRPO: the step's trees for the app (trees/step-N.jsonl)
            save_trees(
                session.run.trees_dir / f"step-{loop.step + 1}.jsonl",
                batch,
                policy.processor,
                loop.step + 1,
                row_reward,
                adv,
            )

        # old / reference log-probs: computed once per rollout batch, before any update
        groups = list(range(len(records)))
        chunks = [groups[i :: cfg.grad_accum] for i in range(cfg.grad_accum)]
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

        def micro_loss(item: tuple) -> tuple[torch.Tensor, dict[str, float], float]:
            m, r, old, ref = item
            with autocast_context(cfg.run.precision, policy.device):
                out = completion_logprobs(model, m, entropy=entropy, **fwd)
            mask = m.completion_mask.to(out.logprobs.dtype)
            loss, st = policy_loss(
                out.logprobs,
                old,
                adv[r],
                mask,
                loss_cfg,
                ref_logps=ref,
                entropy=out.entropy,
                normalizer=normalizer,
            )
            return loss, st, float(mask.sum())

        t1 = time.time()
        for _ in range(cfg.num_iterations):  # validated >= 1
            step_loss, loss_stats = accumulate(zip(micro, rows, old_lp, ref_lp), micro_loss)
            step_loss = dist.sum([step_loss])[0]
            grad_norm = loop.update(step_loss, hint="check the rewards")
        reference.maybe_sync(model, loop.step + 1)
        lengths = batch.completion_mask.sum(-1).float()
        metrics = {
            "completion_len_mean": float(lengths.mean()),
            "completion_len_max": float(lengths.max()),
            "truncated_frac": float(batch.truncated.float().mean()) if batch.truncated is not None else 0.0,
            "rollout_s": t_roll,
            "update_s": time.time() - t1,
        }
        metrics.update(
            {k if k.startswith(("adv/", "reward/")) else f"adv/{k}": v for k, v in adv_stats.items()}
        )
        metrics.update({f"loss/{k}": v for k, v in loss_stats.items()})
        metrics.update(batch.stats)  # multi-turn: tokens generated/encoded, env calls, questions, answer rate
        # sampled tokens: every turn of every node for trees and chains (a tree's shared nodes once), else the rows'
        generated = batch.stats.get("rollout/tokens_generated", float(lengths.sum()))
        return StepResult(
            step_loss, grad_norm, float(lengths.sum()), metrics, per_rank=True, generated=generated
        )

    return loop.run(
        step,
        postfix={"reward": "reward/mean"},
        tensors=lambda: _checkpoint_tensors(generator, reference),
        token_budget=cfg.max_generated_tokens,
    )


def _gather_rewards(
    dist, rewards: dict[str, torch.Tensor], correct: torch.Tensor | None, group_index: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor, slice]:
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
