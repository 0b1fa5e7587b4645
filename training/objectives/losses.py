"""Losses: policy losses by name (`POLICY_LOSSES`; the clipped surrogate + KL, entropy), DPO, and the memory-lean
log-prob helpers of the output head.

Gradient accumulation: every loss takes an optional ``normalizer``, the denominator of the FULL batch
(all micro-batches of one optimizer step). Pass the same normalizer to every micro-batch and call
``backward()`` on each loss as is (no extra division by the number of micro-batches): the micro-batch
losses then sum to the full-batch loss, so the accumulated gradients equal the full-batch gradients.
``loss_normalizer`` computes it for the policy loss from the micro-batches' completion masks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from training.errors import ConfigError
from training.registry import Registry

KLEstimator = Literal["k1", "k2", "k3"]
LossAggregation = Literal["token_mean", "sequence_mean", "constant"]
ImportanceSampling = Literal["token", "sequence"]
DPOLossType = Literal["sigmoid", "ipo", "hinge"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")
IMPORTANCE_SAMPLING: tuple[str, ...] = ("token", "sequence")
AGGREGATIONS: tuple[str, ...] = ("token_mean", "sequence_mean", "constant")
DPO_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "ipo", "hinge")
FORWARDS: tuple[str, ...] = ("grouped", "dense", "naive", "tree")
HEADS: tuple[str, ...] = ("auto", "chunked", "full")

# One signature: fn(logps, old_logps, advantages, mask, config, ref_logps, entropy, normalizer) -> (loss, stats);
# `policy_loss` checks the shapes and calls the one `config.type` names. An entry may fix the aggregation and the
# importance-sampling level (`register(name, aggregation=..., importance_sampling=...)`): TRL's `loss_type` names are
# entries of this kind, so `loss.type: dr_grpo` means what it means in TRL.
POLICY_LOSSES: Registry[Callable[..., tuple[Tensor, dict[str, float]]]] = Registry(
    "policy loss",
    ("logps", "old_logps", "advantages", "mask", "config", "ref_logps", "entropy", "normalizer"),
)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


@dataclass(frozen=True)
class PolicyLossConfig:
    """The RL recipe's `loss:` section: the policy loss, and which forward and head compute it. Validated on
    construction, so a bad recipe fails before a rollout.

    Fields:
        type (str, default "clipped"): a registered policy loss (`POLICY_LOSSES`, one signature). clipped is PPO's
            clipped surrogate with the aggregation and importance sampling set below (verl `policy_loss.loss_mode`).
            TRL 1.16's `loss_type` names are registered too and fix those two settings as TRL does: grpo (sequence
            mean), bnpo (token mean), dr_grpo (constant), dapo (token mean over the whole batch), gspo (TRL's grpo
            with `importance_sampling_level="sequence"`; Zheng et al. 2025, "Group Sequence Policy Optimization"),
            cispo (the clipped, detached ratio weighs the log-prob: REINFORCE with truncated importance sampling;
            MiniMax et al. 2025, "MiniMax-M1"; token mean). Each equals TRL's `_compute_loss` on the same tensors (tested).
        epsilon (float, default 0.2): the ratio is clipped to [1 - epsilon, 1 + epsilon_high], epsilon in (0, 1)
            (PPO's epsilon, Schulman et al. 2017; TRL `epsilon`).
        epsilon_high (float | None, default None): the upper clip; None means epsilon (symmetric), larger is
            DAPO's clip-higher (Yu et al. 2025, "DAPO"; TRL `epsilon_high`). For cispo it is the ratio's cap itself
            (TRL's meaning; ScaleRL recommends 5.0).
        dual_clip (float | None, default None): c > 1: for A < 0 the per-token loss is capped at -c * A (dual-clip
            PPO, Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep Reinforcement Learning"; verl
            `clip_ratio_c`).
        beta (float, default 0.0): the KL coefficient, >= 0; > 0 needs a reference (TRL `beta`).
        kl_estimator (one of k1, k2, k3; default k3): the per-token KL(policy || ref) estimate added to the loss
            (Schulman 2020, "Approximating KL Divergence"), with x = ref - logp: k1 = -x, k2 = x^2 / 2,
            k3 = exp(x) - x - 1 (TRL's and GRPO's). As a loss term on samples of the current policy their expected
            gradients differ: k1's is zero (it does not pull towards the reference at all), k2's is the gradient of
            KL(policy || ref), k3's the gradient of KL(ref || policy) (Tang & Munos 2025, "On a few pitfalls in KL
            divergence gradient estimation for RL"). See docs/methods/losses.md.
        kl_ratio (bool, default false): multiply the per-token KL by the importance ratio (it keeps its gradient), so
            that, with k3, the KL term's expected gradient is that of KL(policy || ref) even off-policy (DeepSeek-AI
            et al. 2025, "DeepSeek-V3.2"; TRL `use_bias_correction_kl`, whose default is true). With k1 it turns the
            inert k1 into a real reverse-KL anchor. Off by default here so recipes keep their measured behaviour.
        entropy_coef (float, default 0.0): weight of the entropy bonus subtracted from the loss, >= 0 (verl
            `entropy_coeff`).
        aggregation (one of token_mean, sequence_mean, constant, or null; default null): how per-token losses
            become one number. token_mean is DAPO's (TRL `loss_type="dapo"`), sequence_mean GRPO's (TRL
            `loss_type="grpo"`), constant Dr. GRPO's: sum / (sequences x max_completion_length) (TRL
            `loss_type="dr_grpo"`). null takes the one `type` fixes, else token_mean; a value that contradicts the
            one `type` fixes is an error.
        importance_sampling (one of token, sequence, or null; default null): the ratio per token (PPO, GRPO) or one
            per sequence, exp of the mean log-ratio over its tokens (GSPO; TRL `importance_sampling_level`). null
            takes the one `type` fixes, else token.
        max_completion_length (int | None, default None): the constant aggregation's length; None takes the
            rollout's longest row (max_new_tokens, times max_turns with an environment) (TRL
            `max_completion_length`).
        forward (one of grouped, dense, naive, tree; default grouped): grouped is Prefix Grouper's shared-prefix
            forward (Liu et al. 2025), dense its dense-mask form, naive one row at a time, tree Tree-GRPO's
            packed trees.
        head (one of auto, chunked, full; default auto): auto = chunked: never full-vocabulary logits for every
            token; full is one lm_head call, for comparison.
    """

    type: str = "clipped"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    dual_clip: float | None = None
    beta: float = 0.0
    kl_estimator: KLEstimator = "k3"
    kl_ratio: bool = False
    entropy_coef: float = 0.0
    aggregation: LossAggregation | None = None
    importance_sampling: ImportanceSampling | None = None
    max_completion_length: int | None = None
    forward: Literal["grouped", "dense", "naive", "tree"] = "grouped"
    head: Literal["auto", "chunked", "full"] = "auto"

    def __post_init__(self) -> None:
        POLICY_LOSSES.get(self.type, "loss.type")  # an unknown name lists the registered ones
        fixed = POLICY_LOSSES.info(self.type)
        for name, default in (("aggregation", "token_mean"), ("importance_sampling", "token")):
            if getattr(self, name) is None:  # resolved once, so the loop reads one concrete value
                object.__setattr__(self, name, fixed.get(name, default))
        self.validate()

    def validate(self, key: str = "loss") -> None:
        POLICY_LOSSES.get(self.type, f"{key}.type")
        for name, choices in (("aggregation", AGGREGATIONS), ("importance_sampling", IMPORTANCE_SAMPLING)):
            value, fixed = getattr(self, name), POLICY_LOSSES.info(self.type).get(name)
            if value not in choices:
                raise ConfigError(f"{key}.{name}: expected one of {list(choices)}, got {value!r}")
            if fixed is not None and value != fixed:
                raise ConfigError(
                    f"{key}.{name}: type {self.type!r} fixes it to {fixed!r}, got {value!r} (drop the key, or use "
                    f"type: clipped to choose it)"
                )
        if not (_is_number(self.epsilon) and 0 < self.epsilon < 1):
            raise ConfigError(f"{key}.epsilon: expected a float in (0, 1), got {self.epsilon!r}")
        if self.epsilon_high is not None and not (_is_number(self.epsilon_high) and self.epsilon_high > 0):
            raise ConfigError(f"{key}.epsilon_high: expected a float > 0 or null, got {self.epsilon_high!r}")
        if self.dual_clip is not None and not (_is_number(self.dual_clip) and self.dual_clip > 1):
            raise ConfigError(f"{key}.dual_clip: expected a float > 1 or null, got {self.dual_clip!r}")
        if not (_is_number(self.beta) and self.beta >= 0):
            raise ConfigError(f"{key}.beta: expected a float >= 0, got {self.beta!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ConfigError(
                f"{key}.kl_estimator: expected one of {list(KL_ESTIMATORS)}, got {self.kl_estimator!r}"
            )
        if not isinstance(self.kl_ratio, bool):
            raise ConfigError(f"{key}.kl_ratio: expected true or false, got {self.kl_ratio!r}")
        if not (_is_number(self.entropy_coef) and self.entropy_coef >= 0):
            raise ConfigError(f"{key}.entropy_coef: expected a float >= 0, got {self.entropy_coef!r}")
        length = self.max_completion_length
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ConfigError(f"{key}.max_completion_length: expected an int >= 1 or null, got {length!r}")
        if self.forward not in FORWARDS:
            raise ConfigError(f"{key}.forward: expected one of {list(FORWARDS)}, got {self.forward!r}")
        if self.head not in HEADS:
            raise ConfigError(f"{key}.head: expected one of {list(HEADS)}, got {self.head!r}")

    @property
    def clip_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


def kl_penalty(logps: Tensor, ref_logps: Tensor, estimator: KLEstimator = "k3") -> Tensor:
    """Per-token estimate of KL(policy || ref) from samples of the policy, x = ref - logp.

    k1 = -x (unbiased, can be negative; its expected gradient as a loss is zero: it anchors nothing);
    k2 = x^2 / 2 (biased, >= 0; expected gradient that of KL(policy || ref)); k3 = exp(x) - x - 1 (unbiased,
    >= 0, low variance; expected gradient that of KL(ref || policy); TRL's choice). See `PolicyLossConfig`.
    """
    log_ratio = ref_logps - logps
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.exp(log_ratio) - log_ratio - 1
    raise ConfigError(f"loss.kl_estimator: expected one of {list(KL_ESTIMATORS)}, got {estimator!r}")


def loss_normalizer(masks: Tensor | Sequence[Tensor], config: PolicyLossConfig) -> float:
    """The full-batch denominator of ``policy_loss`` for the micro-batches' completion masks.

    token_mean: total real tokens; sequence_mean: total sequences; constant: total sequences times
    max_completion_length.
    """
    masks = [masks] if isinstance(masks, Tensor) else list(masks)
    if config.aggregation == "token_mean":
        return float(sum(m.sum().item() for m in masks))
    sequences = sum(m.shape[0] for m in masks)
    if config.aggregation == "sequence_mean":
        return float(sequences)
    if config.max_completion_length is None:
        raise ConfigError("loss.max_completion_length: required by aggregation 'constant', got null")
    return float(sequences * config.max_completion_length)


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    aggregation: LossAggregation,
    *,
    max_completion_length: int | None = None,
    normalizer: float | None = None,
) -> Tensor:
    """Reduce a (B, T) per-token loss over real tokens to a scalar.

    token_mean: sum / n_tokens (every token weighs the same; DAPO). sequence_mean: mean over each
    sequence's tokens, then / n_sequences (GRPO; long answers are diluted). constant: sum /
    (n_sequences * max_completion_length) (Dr. GRPO; no length bias). ``normalizer`` replaces the
    denominator (n_tokens, n_sequences, n_sequences * max_completion_length) by the full batch's.
    """
    mask = mask.to(per_token.dtype)
    masked = per_token * mask
    if aggregation == "token_mean":
        denominator = mask.sum().clamp(min=1) if normalizer is None else normalizer
        return masked.sum() / denominator
    if aggregation == "sequence_mean":
        per_sequence = masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return per_sequence.sum() / (per_token.shape[0] if normalizer is None else normalizer)
    if aggregation == "constant":
        if normalizer is None:
            if max_completion_length is None:
                raise ValueError("aggregation 'constant' needs max_completion_length or a normalizer")
            normalizer = per_token.shape[0] * max_completion_length
        return masked.sum() / normalizer
    raise ConfigError(f"loss.aggregation: expected one of {list(AGGREGATIONS)}, got {aggregation!r}")


def policy_loss(
    logps: Tensor,
    old_logps: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    config: PolicyLossConfig | None = None,
    *,
    ref_logps: Tensor | None = None,
    entropy: Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The policy loss `config.type` names (`POLICY_LOSSES`), after checking what every one relies on.

    Inputs are (B, T) over completion tokens (``logps``, ``old_logps``, ``ref_logps``, ``entropy``), ``mask`` 1 for
    real tokens, ``advantages`` (B,). ``old_logps=None`` means the sampling policy is the current one (one update
    per rollout). Returns (scalar loss, float stats).
    """
    config = config or PolicyLossConfig()
    if logps.dim() != 2 or mask.shape != logps.shape:
        raise ValueError(
            f"logps and mask must be the same (B, T), got {tuple(logps.shape)}, {tuple(mask.shape)}"
        )
    if advantages.shape != (logps.shape[0],):
        raise ValueError(f"advantages must be ({logps.shape[0]},), got {tuple(advantages.shape)}")
    if config.beta > 0 and ref_logps is None:
        raise ValueError("beta > 0 needs ref_logps")
    if config.entropy_coef > 0 and entropy is None:
        raise ValueError("entropy_coef > 0 needs the per-token entropy")
    loss_fn = POLICY_LOSSES.get(config.type, "loss.type")
    return loss_fn(logps, old_logps, advantages, mask, config, ref_logps, entropy, normalizer)


def importance_ratio(logps: Tensor, old_logps: Tensor | None, mask: Tensor, level: str) -> Tensor:
    """pi / pi_old per token (B, T), or per sequence (GSPO: exp of the mean log-ratio over its real tokens,
    broadcast to (B, T)). ``old_logps=None``: the sampling policy is the current one, r = 1 with its gradient."""
    log_ratio = logps - (logps.detach() if old_logps is None else old_logps)
    if level == "sequence":
        m = mask.to(log_ratio.dtype)
        log_ratio = ((log_ratio * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)).expand_as(
            logps
        )
    return torch.exp(log_ratio)


def _penalised_loss(
    per_token: Tensor,
    ratio: Tensor,
    logps: Tensor,
    mask: Tensor,
    config: PolicyLossConfig,
    ref_logps: Tensor | None,
    entropy: Tensor | None,
    normalizer: float | None,
) -> tuple[Tensor, Tensor | None]:
    """+ beta * KL (times the ratio with `kl_ratio`) - entropy_coef * entropy per token, then the configured
    aggregation: (loss, per-token KL)."""
    kl = kl_penalty(logps, ref_logps, config.kl_estimator) if ref_logps is not None else None
    if config.beta > 0:
        per_token = per_token + config.beta * (kl * ratio if config.kl_ratio else kl)
    if config.entropy_coef > 0:
        per_token = per_token - config.entropy_coef * entropy
    loss = aggregate(
        per_token,
        mask,
        config.aggregation,
        max_completion_length=config.max_completion_length,
        normalizer=normalizer,
    )
    return loss, kl


@POLICY_LOSSES.register("clipped")
@POLICY_LOSSES.register("grpo", aggregation="sequence_mean", importance_sampling="token")
@POLICY_LOSSES.register("bnpo", aggregation="token_mean", importance_sampling="token")
@POLICY_LOSSES.register("dapo", aggregation="token_mean", importance_sampling="token")
@POLICY_LOSSES.register("dr_grpo", aggregation="constant", importance_sampling="token")
@POLICY_LOSSES.register("gspo", aggregation="sequence_mean", importance_sampling="sequence")
def clipped_surrogate(
    logps: Tensor,
    old_logps: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    config: PolicyLossConfig,
    ref_logps: Tensor | None,
    entropy: Tensor | None,
    normalizer: float | None,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate + beta * KL - entropy_coef * entropy, aggregated: PPO (Schulman et al. 2017, "Proximal
    Policy Optimization Algorithms") as GRPO (Shao et al. 2024) uses it, with DAPO's clip-higher (Yu et al. 2025),
    dual-clip PPO (Ye et al. 2020) and GSPO's sequence-level ratio (Zheng et al. 2025) as settings. Registered as
    clipped (every setting free) and under TRL's names grpo, bnpo, dapo, dr_grpo, gspo (settings fixed as TRL's).

    Per token, with r = exp(logp - old_logp) (or GSPO's one ratio per sequence) and A the sequence's advantage:
        objective = min(r * A, clip(r, 1 - epsilon, 1 + epsilon_high) * A)
        dual clip (A < 0 only): objective = max(objective, c * A), so the loss is at most -c * A
        loss_t = -objective + beta * kl_t - entropy_coef * entropy_t
    Shapes: ``logps``, ``old_logps``, ``ref_logps``, ``entropy``, ``mask`` (B, T); ``advantages`` (B,).
    ``old_logps=None``: r = 1 with the policy gradient intact. Stats are token-level over real tokens, as floats.
    Gradient accumulation: bnpo divides each micro-batch by its own tokens in TRL; here every token-mean loss
    divides by the whole batch's tokens (``normalizer``), which is DAPO's and equals bnpo on one micro-batch.
    """
    adv = advantages.to(device=logps.device, dtype=logps.dtype)[:, None]
    ratio = importance_ratio(logps, old_logps, mask, config.importance_sampling)
    clipped = torch.clamp(ratio, 1 - config.epsilon, 1 + config.clip_high)
    objective = torch.min(ratio * adv, clipped * adv)
    if config.dual_clip is not None:
        objective = torch.where(adv < 0, torch.max(objective, config.dual_clip * adv), objective)
    loss, kl = _penalised_loss(-objective, ratio, logps, mask, config, ref_logps, entropy, normalizer)
    stats = _policy_stats(ratio, adv, mask, config, kl=kl, entropy=entropy)
    return loss, stats


@POLICY_LOSSES.register("cispo", aggregation="token_mean", importance_sampling="token")
def cispo_loss(
    logps: Tensor,
    old_logps: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    config: PolicyLossConfig,
    ref_logps: Tensor | None,
    entropy: Tensor | None,
    normalizer: float | None,
) -> tuple[Tensor, dict[str, float]]:
    """CISPO (MiniMax et al. 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention"): clip the
    importance weight, not the update. Per token, with r = exp(logp - old_logp):
        loss_t = -min(r, epsilon_high).detach() * A * logp + beta * kl_t - entropy_coef * entropy_t
    so every token keeps a gradient (PPO's clip zeroes it outside the trust region), weighted by a truncated,
    constant ratio. Shapes: ``logps``, ``old_logps``, ``ref_logps``, ``entropy``, ``mask`` (B, T); ``advantages`` (B,).
    As TRL's `loss_type="cispo"`: epsilon_high is the cap itself (ScaleRL recommends 5.0); token-mean aggregation.
    """
    adv = advantages.to(device=logps.device, dtype=logps.dtype)[:, None]
    ratio = importance_ratio(logps, old_logps, mask, config.importance_sampling)
    weight = torch.clamp(ratio, max=config.clip_high).detach()
    loss, kl = _penalised_loss(
        -weight * adv * logps, ratio, logps, mask, config, ref_logps, entropy, normalizer
    )
    stats = _policy_stats(ratio, adv, mask, config, kl=kl, entropy=entropy)
    stats["clip/cispo_frac"] = ((ratio > config.clip_high) & (adv > 0) & mask.bool()).sum().item() / max(
        1.0, float(mask.sum().item())
    )
    return loss, stats


@torch.no_grad()
def _policy_stats(
    ratio: Tensor,
    adv: Tensor,
    mask: Tensor,
    config: PolicyLossConfig,
    *,
    kl: Tensor | None,
    entropy: Tensor | None,
) -> dict[str, float]:
    real = mask.bool()
    n = real.sum().clamp(min=1)

    def frac(condition: Tensor) -> float:
        return ((condition & real).sum() / n).item()

    low = (ratio < 1 - config.epsilon) & (adv < 0)  # clipped: pushing further down gives no gradient
    high = (ratio > 1 + config.clip_high) & (adv > 0)
    stats = {
        "clip/low_frac": frac(low),
        "clip/high_frac": frac(high),
        "clip/frac": frac(low | high),
        "ratio/mean": (ratio * real).sum().div(n).item(),
        "ratio/max": ratio[real].max().item() if real.any() else 1.0,
        "ratio/min": ratio[real].min().item() if real.any() else 1.0,
        "tokens": float(real.sum().item()),
    }
    if config.dual_clip is not None:
        stats["clip/dual_frac"] = frac((ratio > config.dual_clip) & (adv < 0))
    if kl is not None:
        stats["kl/mean"] = (kl.detach() * real).sum().div(n).item()
    if entropy is not None:
        stats["entropy/mean"] = (entropy.detach() * real).sum().div(n).item()
    return stats


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = 0.1,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
    normalizer: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """DPO family on sequence-summed log-probs (B,); loss = sum over pairs / (normalizer or B).

    With h = (pi_c - ref_c) - (pi_r - ref_r):
    sigmoid: -(1 - ls) * logsigmoid(beta h) - ls * logsigmoid(-beta h) (DPO; ls > 0 is cDPO);
    ipo: (h - 1 / (2 beta))^2 (TRL feeds IPO length-averaged log-probs: pass those for its recipe);
    hinge: relu(1 - beta h) (SLiC). Stats: implicit rewards beta * (pi - ref), their margin and the
    fraction of pairs where the chosen reward is higher.
    """
    if not (_is_number(beta) and beta > 0):
        raise ConfigError(f"dpo.beta: expected a float > 0, got {beta!r}")
    if loss_type not in DPO_LOSS_TYPES:
        raise ConfigError(f"dpo.loss_type: expected one of {list(DPO_LOSS_TYPES)}, got {loss_type!r}")
    if not (_is_number(label_smoothing) and 0 <= label_smoothing < 0.5):
        raise ConfigError(f"dpo.label_smoothing: expected a float in [0, 0.5), got {label_smoothing!r}")
    if label_smoothing and loss_type != "sigmoid":
        raise ConfigError(f"dpo.label_smoothing: only used by loss_type 'sigmoid', got {loss_type!r}")
    shapes = {
        tuple(t.shape)
        for t in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    }
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"DPO log-probs must all be (B,), got shapes {sorted(shapes)}")

    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    h = chosen_logratios - rejected_logratios
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        losses = torch.relu(1 - beta * h)
    loss = losses.sum() / (losses.shape[0] if normalizer is None else normalizer)

    with torch.no_grad():
        chosen_rewards = beta * chosen_logratios.detach()
        rejected_rewards = beta * rejected_logratios.detach()
        stats = {
            "rewards/chosen": chosen_rewards.mean().item(),
            "rewards/rejected": rejected_rewards.mean().item(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        }
    return loss, stats


def _row_blocks(x: Tensor, chunk_rows: int) -> Iterator[Tensor]:
    """(rows, V) blocks of x (..., V) in row-major order, as views: a sliced ``logits[:, :-1]`` is not copied."""
    try:
        flat = x.view(-1, x.shape[-1])
    except RuntimeError:  # leading dims not mergeable without a copy: walk the first one
        for sub in x.unbind(0):
            yield from _row_blocks(sub, chunk_rows)
        return
    yield from flat.split(chunk_rows)


def _compute_dtype(logits: Tensor) -> torch.dtype:
    return torch.promote_types(logits.dtype, torch.float32)  # 16-bit -> fp32, fp64 stays fp64


def _chunk_rows(vocab: int, budget: int = 1 << 24) -> int:
    return max(1, budget // max(vocab, 1))  # about 64 MB of fp32 temporaries per chunk


class _SelectiveLogSoftmax(torch.autograd.Function):
    """log_softmax(logits)[index] saving only the logits (by reference) and one logsumexp per row.

    A plain ``log_softmax(logits.float()).gather(...)`` keeps a full fp32 (B, L, V) copy alive for
    backward (2.5 GB at L=512, G=8, V=152k); here the softmax is recomputed block by block instead.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor, chunk_rows: int) -> Tensor:  # type: ignore[override]
        dtype = _compute_dtype(logits)
        lse = torch.cat([torch.logsumexp(rows.to(dtype), dim=-1) for rows in _row_blocks(logits, chunk_rows)])
        picked = logits.gather(-1, index[..., None]).squeeze(-1).to(dtype)
        ctx.save_for_backward(logits, index, lse)
        ctx.chunk_rows = chunk_rows
        return picked - lse.view(index.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        logits, index, lse = ctx.saved_tensors
        grad = grad_out.reshape(-1).to(lse.dtype)
        flat_index = index.reshape(-1, 1)
        grad_logits = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        grad_flat = grad_logits.view(-1, logits.shape[-1])
        start = 0
        for rows in _row_blocks(logits, ctx.chunk_rows):
            stop = start + rows.shape[0]
            g = grad[start:stop, None]
            # d logp[i] / d logits = onehot(i) - softmax(logits)
            block = -torch.exp(rows.to(lse.dtype) - lse[start:stop, None]) * g
            block.scatter_add_(-1, flat_index[start:stop], g)
            grad_flat[start:stop] = block.to(logits.dtype)
            start = stop
        return grad_logits, None, None


def selective_log_softmax(logits: Tensor, index: Tensor, *, chunk_rows: int | None = None) -> Tensor:
    """log p(index) under softmax(logits), fp32 (fp64 for fp64 logits); logits (..., V), index (...).

    Computed as gather(logits) - logsumexp(logits) in fp32 blocks of ``chunk_rows`` positions (default:
    about 64 MB of temporaries), never materialising a full-size fp32 log_softmax, forward or backward.
    """
    if logits.shape[:-1] != index.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and index {tuple(index.shape)} do not align")
    if index.numel() == 0:
        return logits.new_zeros(index.shape, dtype=_compute_dtype(logits)) + logits.sum() * 0.0
    return _SelectiveLogSoftmax.apply(logits, index.long(), chunk_rows or _chunk_rows(logits.shape[-1]))


def entropy_from_logits(logits: Tensor, *, chunk_rows: int | None = None) -> Tensor:
    """Per-position entropy H = -sum p log p, fp32 (...,), computed in row blocks.

    Computed as -sum p * (z - logsumexp(z)) rather than logsumexp(z) - sum p z: the latter subtracts two large,
    nearly equal numbers (measured 1.2e-5 off in fp32 at logits of magnitude 15, against 3e-6 here). Under
    no_grad (the usual case: entropy for stats) the fp32 temporaries are per block; with grad (an entropy
    bonus) autograd keeps them for backward.
    """
    dtype = _compute_dtype(logits)
    if logits.numel() == 0:
        return logits.new_zeros(logits.shape[:-1], dtype=dtype)
    parts = []
    for rows in _row_blocks(logits, chunk_rows or _chunk_rows(logits.shape[-1])):
        rows = rows.to(dtype)
        logp = rows - torch.logsumexp(rows, dim=-1, keepdim=True)
        probs = logp.exp()
        # masked_fill: a -inf logit has probability 0 and contributes 0, not 0 * -inf = nan
        parts.append(-(probs * logp.masked_fill(probs == 0, 0.0)).sum(-1))
    return torch.cat(parts).view(logits.shape[:-1])
