"""One RL loop: rollout -> rewards -> advantages -> `num_iterations` policy updates per rollout batch.

GRPO, GRPO++ and CRPO are settings of this loop (advantage estimator, rewards, reference). Rollouts encode
each prompt (and image) once and grow its KV cache to G rows; the loss forward is Prefix-Grouper's shared-prefix
pass by default. A step whose loss or gradient is not finite is skipped and counted; too many in a row stop
the run with a clear message.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from safetensors.torch import load_file, save_file

from training.advantages import compute_advantages, correct_from_reward
from training.chat import render
from training.data import load_images, read_jsonl
from training.errors import MedrlError
from training.losses import PolicyLossConfig, loss_normalizer, policy_loss
from training.models import load_policy, trainable_parameters
from training.optim import build_optimizer, build_scheduler, clip_and_step
from training.prefix_grouper import completion_logprobs
from training.rewards import resolve, score
from training.rl_config import RLConfig
from training.rollout import RolloutBatch, SamplingConfig, encode_prompts, generate_rollouts
from training.run import Run, seed_everything
from training.sft_trainer import DataOrder, autocast_context
from training.tracking import progress


def encode_records(policy, records: list[dict]):
    """Chat-templated prompts (with their images for a VLM), each encoded once."""
    texts = [render(policy.processor, r["prompt"], add_generation_prompt=True) for r in records]
    images = [load_images(r.get("images", [])) for r in records] if policy.is_vlm else None
    return encode_prompts(policy.processor, texts, images)


def select_groups(batch: RolloutBatch, groups: list[int]) -> RolloutBatch:
    """The rows of some prompt groups, as a smaller batch (micro-batching never splits a group)."""
    rows = torch.cat([(batch.group_index == g).nonzero().flatten() for g in groups])
    width = int(batch.completion_mask[rows].sum(-1).max().clamp(min=1))
    remap = {g: i for i, g in enumerate(groups)}
    return replace(
        batch, prompts=[batch.prompts[g] for g in groups], completion_ids=batch.completion_ids[rows, :width],
        completion_mask=batch.completion_mask[rows, :width],
        group_index=torch.tensor([remap[int(g)] for g in batch.group_index[rows]], device=rows.device),
        sampling_logprobs=None if batch.sampling_logprobs is None else batch.sampling_logprobs[rows, :width],
        texts=[batch.texts[i] for i in rows.tolist()],
        truncated=None if batch.truncated is None else batch.truncated[rows])


class Reference:
    """The KL anchor: none, the frozen base (adapter disabled: no second copy), or a lagged adapter copy."""

    def __init__(self, kind: str, model):
        self.kind = kind
        self.weights: dict[str, torch.Tensor] = {}
        if kind == "lagged":
            self.sync(model)

    def sync(self, model) -> None:
        if self.kind == "lagged":
            self.weights = {n: p.detach().clone() for n, p in trainable_parameters(model)}

    @torch.no_grad()
    def logprobs(self, model, batch: RolloutBatch, method: str) -> torch.Tensor | None:
        if self.kind == "none":
            return None
        was_training = model.training
        model.eval()
        try:
            if self.kind == "base":
                with model.disable_adapter():
                    return completion_logprobs(model, batch, method=method).logprobs
            params = dict(trainable_parameters(model))
            current = {n: p.detach().clone() for n, p in params.items()}
            for n, p in params.items():
                p.copy_(self.weights[n])
            try:
                return completion_logprobs(model, batch, method=method).logprobs
            finally:
                for n, p in params.items():
                    p.copy_(current[n])
        finally:
            model.train(was_training)


@torch.no_grad()
def policy_logprobs(model, batch: RolloutBatch, method: str) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return completion_logprobs(model, batch, method=method).logprobs
    finally:
        model.train(was_training)


def reward_fields(records: list[dict], group_size: int) -> tuple[list, dict[str, list]]:
    """Each record's fields repeated for its G completions: `fn(prompts, completions, **fields)`."""
    prompts = [r["prompt"] for r in records for _ in range(group_size)]
    keys = sorted({k for r in records for k in r} - {"prompt"})
    fields = {k: [r.get(k) for r in records for _ in range(group_size)] for k in keys}
    return prompts, fields


def _mean_std(x: torch.Tensor) -> tuple[float, float]:
    return float(x.float().mean()), float(x.float().std(unbiased=False)) if x.numel() > 1 else 0.0


def train_rl(cfg: RLConfig, resume: bool = False) -> dict:
    seed_everything(cfg.run.seed)
    reward_fns = resolve(list(cfg.rewards), cfg.reward_modules)
    data = read_jsonl(cfg.data.train, "rl", limit=cfg.data.max_records)
    run = Run.open(cfg, resume)
    policy = load_policy(cfg.model)
    model = policy.model
    params = [p for _, p in trainable_parameters(model)]
    optimizer = build_optimizer(params, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.run.max_steps * cfg.num_iterations, cfg.optim)
    reference = Reference(cfg.reference.kind, model)
    generator = torch.Generator(device=policy.device).manual_seed(cfg.run.seed)
    state = run.restore(model, optimizer, scheduler)
    step = int(state["step"])
    if run.resume_from is not None:
        extra = load_file(str(run.resume_from / "rl_state.safetensors"))
        generator.set_state(extra.pop("generator").cpu())
        if reference.kind == "lagged":
            reference.weights = {k[len("ref."):]: v.to(policy.device) for k, v in extra.items()}
    order = DataOrder(len(data), cfg.run.seed, cfg.data.shuffle, pos=int(state.get("data_pos", 0)))
    G = cfg.rollout.num_generations
    sampling = SamplingConfig(num_generations=G, max_new_tokens=cfg.rollout.max_new_tokens,
                              temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k,
                              stop_strings=tuple(cfg.rollout.stop_strings),
                              eos_token_ids=() if cfg.rollout.ignore_eos else None)
    loss_cfg = PolicyLossConfig(epsilon=cfg.loss.epsilon, epsilon_high=cfg.loss.epsilon_high,
                                dual_clip=cfg.loss.dual_clip, beta=cfg.loss.beta, kl_estimator=cfg.loss.kl_estimator,
                                entropy_coef=cfg.loss.entropy_coef, aggregation=cfg.loss.aggregation,
                                max_completion_length=cfg.rollout.max_new_tokens)
    run.start(policy, data, step)
    nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
    skipped_total = int(state.get("skipped_nonfinite", 0))
    model.train()
    last: dict = {}
    bar = progress(total=cfg.run.max_steps, initial=step, desc=f"rl {cfg.run.name}", enabled=cfg.run.progress,
                   unit="step")
    while step < cfg.run.max_steps:
        t0 = time.time()
        records = [data.records[i] for i in order.take(cfg.prompts_per_step)]
        prompts = encode_records(policy, records)
        with autocast_context(cfg.run.precision, policy.device):
            batch = generate_rollouts(model, policy.processor, prompts, sampling, generator)
        t_roll = time.time() - t0

        # rewards -> advantages
        row_prompts, fields = reward_fields(records, G)
        rewards = {name: score(name, fn, row_prompts, batch.texts, fields) for name, fn in reward_fns.items()}
        correct = None
        if cfg.advantages.correct_reward is not None:
            correct = correct_from_reward(rewards, cfg.advantages.correct_reward, cfg.advantages.correct_threshold)
        adv, adv_stats = compute_advantages(rewards, cfg.rewards, G, estimator=cfg.advantages.estimator,
                                            aggregation=cfg.advantages.aggregation, scale=cfg.advantages.scale,
                                            eps=cfg.advantages.eps, correct=correct)
        adv = adv.to(policy.device)

        # old / reference log-probs: computed once per rollout batch, before any update
        groups = list(range(len(records)))
        chunks = [groups[i::cfg.grad_accum] for i in range(cfg.grad_accum)]
        micro = [select_groups(batch, c) for c in chunks]
        rows = [torch.cat([(batch.group_index == g).nonzero().flatten() for g in c]) for c in chunks]
        with autocast_context(cfg.run.precision, policy.device):
            ref_lp = [reference.logprobs(model, m, cfg.loss.forward) for m in micro]
            if cfg.reference.as_old_policy:
                old_lp = ref_lp
            elif cfg.num_iterations > 1:
                old_lp = [policy_logprobs(model, m, cfg.loss.forward) for m in micro]
            else:
                old_lp = [None] * len(micro)  # one update per rollout: ratio 1, gradient intact
        normalizer = loss_normalizer([m.completion_mask for m in micro], loss_cfg)

        t1 = time.time()
        loss_stats: dict[str, float] = {}
        step_loss, grad_norm, skipped = 0.0, 0.0, 0
        for _ in range(cfg.num_iterations):
            step_loss = 0.0
            sums: dict[str, float] = {}
            for m, r, old, ref in zip(micro, rows, old_lp, ref_lp):
                with autocast_context(cfg.run.precision, policy.device):
                    out = completion_logprobs(model, m, method=cfg.loss.forward, return_entropy=True)
                ent = out.entropy if cfg.loss.entropy_coef > 0 else out.entropy.detach()
                mask = m.completion_mask.to(out.logprobs.dtype)
                loss, st = policy_loss(out.logprobs.float(), old, adv[r], mask, loss_cfg, ref_logps=ref,
                                       entropy=ent.float(), normalizer=normalizer)
                loss.backward()
                step_loss += float(loss.detach())
                weight = float(mask.sum())
                for k, v in st.items():
                    sums[k] = sums.get(k, 0.0) + v * weight
            total_tokens = max(1.0, float(sum(float(m.completion_mask.sum()) for m in micro)))
            loss_stats = {k: v / total_tokens for k, v in sums.items() if k != "tokens"}
            grad_norm, stepped = clip_and_step(params, optimizer, cfg.optim.max_grad_norm, step_loss)
            if stepped:
                nonfinite_in_a_row = 0
            else:
                skipped += 1
                skipped_total += 1
                nonfinite_in_a_row += 1
            scheduler.step()
            if nonfinite_in_a_row > cfg.max_nonfinite_in_a_row:
                raise MedrlError(f"{run.dir}: {nonfinite_in_a_row} policy updates in a row had a non-finite loss or "
                                 f"gradient (step {step + 1}); lower optim.lr, raise optim.max_grad_norm clipping, "
                                 "or check the rewards")
        step += 1
        if cfg.reference.kind == "lagged" and step % cfg.reference.sync_every == 0:
            reference.sync(model)
        dt = time.time() - t0
        lengths = batch.completion_mask.sum(-1).float()
        tokens = float(lengths.sum())
        last = {"loss": step_loss, "grad_norm": grad_norm, "lr": scheduler.get_last_lr()[0],
                "completion_len_mean": float(lengths.mean()), "completion_len_max": float(lengths.max()),
                "truncated_frac": float(batch.truncated.float().mean()) if batch.truncated is not None else 0.0,
                "tokens_per_s": tokens / max(dt, 1e-9), "rollout_s": t_roll, "update_s": time.time() - t1,
                "step_time_s": dt, "skipped_nonfinite": skipped_total}
        total_reward = sum(cfg.rewards[n] * rewards[n] for n in rewards)
        last["reward_mean"], last["reward_std"] = _mean_std(total_reward)
        for name, values in rewards.items():
            mean, std = _mean_std(values)
            last[f"rewards/{name}/mean"], last[f"rewards/{name}/std"] = mean, std
            last[f"rewards/{name}/weighted_mean"] = mean * cfg.rewards[name]
        last.update({f"adv/{k}" if not k.startswith(("adv/", "reward/")) else k: v for k, v in adv_stats.items()})
        last.update({f"loss/{k}": v for k, v in loss_stats.items()})
        if step % cfg.run.log_every == 0 or step == cfg.run.max_steps:
            run.metrics.log(step, last)
        bar.update(1)
        bar.set_postfix(reward=f"{last['reward_mean']:.3f}")
        if run.should_save(step):
            extra = {"generator": generator.get_state()}
            extra.update({f"ref.{k}": v.detach().cpu().contiguous() for k, v in reference.weights.items()})
            path = run.checkpoint(step, model, optimizer, scheduler,
                                  {"data_pos": order.pos, "nonfinite_in_a_row": nonfinite_in_a_row,
                                   "skipped_nonfinite": skipped_total})
            save_file(extra, str(path / "rl_state.safetensors"))
    bar.close()
    run.finish(model, policy)
    return last
