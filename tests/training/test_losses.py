"""Losses against values and gradients worked out by hand, plus micro-batch equivalence."""

from __future__ import annotations

import math

import pytest
import torch

from training.errors import ConfigError
from training.objectives.head import head_nll
from training.objectives.losses import (
    PolicyLossConfig,
    aggregate,
    dpo_loss,
    entropy_from_logits,
    kl_penalty,
    loss_normalizer,
    policy_loss,
    selective_log_softmax,
)

LN = math.log


def close(actual: torch.Tensor, expected: list | float, tol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=tol, rtol=0)


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 1.5}, "loss.epsilon: expected a float in (0, 1), got 1.5"),
        ({"epsilon": True}, "loss.epsilon: expected a float in (0, 1), got True"),
        ({"epsilon_high": 0.0}, "loss.epsilon_high: expected a float > 0 or null, got 0.0"),
        ({"dual_clip": 1.0}, "loss.dual_clip: expected a float > 1 or null, got 1.0"),
        ({"beta": -0.1}, "loss.beta: expected a float >= 0, got -0.1"),
        ({"kl_estimator": "k4"}, "loss.kl_estimator: expected one of ['k1', 'k2', 'k3'], got 'k4'"),
        ({"importance_sampling": "batch"}, "loss.importance_sampling: expected one of ['token', 'sequence']"),
        (
            {"type": "dr_grpo", "aggregation": "token_mean"},
            "loss.aggregation: type 'dr_grpo' fixes it to 'constant'",
        ),
        (
            {"type": "gspo", "importance_sampling": "token"},
            "loss.importance_sampling: type 'gspo' fixes it to",
        ),
        ({"entropy_coef": float("nan")}, "loss.entropy_coef: expected a float >= 0, got nan"),
        ({"aggregation": "mean"}, "loss.aggregation: expected one of"),
        ({"max_completion_length": 0}, "loss.max_completion_length: expected an int >= 1 or null, got 0"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        PolicyLossConfig(**kwargs)
    assert str(err.value).startswith(message)


def test_constant_aggregation_needs_a_length_when_used() -> None:
    # null is allowed in a recipe (the RL trainer takes rollout.max_new_tokens); using it without one is an error.
    with pytest.raises(ConfigError, match="loss.max_completion_length: required by aggregation 'constant'"):
        loss_normalizer(AGG_MASK, PolicyLossConfig(aggregation="constant"))


def test_config_defaults() -> None:
    cfg = PolicyLossConfig()
    assert cfg.clip_high == 0.2 and cfg.beta == 0 and cfg.kl_estimator == "k3"
    assert PolicyLossConfig(epsilon_high=0.28).clip_high == 0.28
    assert PolicyLossConfig(beta=0).beta == 0  # ints are fine for float fields


# --- clipped surrogate ---------------------------------------------------------------------------

# Two sequences of 2 tokens, old log-probs 0, ratios r = [[1.5, 0.5], [1.1, 0.7]], advantages [+1, -1].
RATIOS = [[1.5, 0.5], [1.1, 0.7]]
ADV = torch.tensor([1.0, -1.0])


def logps_for(ratios: list[list[float]]) -> torch.Tensor:
    return torch.tensor([[LN(r) for r in row] for row in ratios], requires_grad=True)


def test_clipped_surrogate_by_hand() -> None:
    # A=+1: r=1.5 -> min(1.5, 1.2)=1.2 (clipped high); r=0.5 -> min(0.5, 0.8)=0.5.
    # A=-1: r=1.1 -> min(-1.1, -1.1)=-1.1; r=0.7 -> min(-0.7, -0.8)=-0.8 (clipped low).
    # loss = -(1.2 + 0.5 - 1.1 - 0.8) / 4 = 0.05
    logps = logps_for(RATIOS)
    mask = torch.ones(2, 2)
    loss, stats = policy_loss(logps, torch.zeros(2, 2), ADV, mask)
    close(loss, 0.05)
    loss.backward()
    # d(-r A)/d logp = -r A on unclipped tokens, 0 on clipped ones; / 4 tokens.
    close(logps.grad, [[0.0, -0.5 / 4], [1.1 / 4, 0.0]])
    assert stats["clip/high_frac"] == 0.25 and stats["clip/low_frac"] == 0.25 and stats["clip/frac"] == 0.5
    assert stats["ratio/mean"] == pytest.approx(0.95)
    assert stats["ratio/max"] == pytest.approx(1.5) and stats["ratio/min"] == pytest.approx(0.5)
    assert stats["tokens"] == 4.0
    assert all(type(v) is float for v in stats.values())


def test_mask_excludes_padding() -> None:
    # last token of sequence 1 is padding: -(1.2 + 0.5 - 1.1) / 3 = -0.2
    loss, stats = policy_loss(logps_for(RATIOS), torch.zeros(2, 2), ADV, torch.tensor([[1, 1], [1, 0]]))
    close(loss, -0.2)
    assert stats["clip/low_frac"] == 0.0 and stats["clip/high_frac"] == pytest.approx(1 / 3)
    assert stats["ratio/min"] == pytest.approx(0.5)


def test_clip_higher() -> None:
    # epsilon_high 0.28: r=1.5 is clipped at 1.28 instead of 1.2: -(1.28 + 0.5 - 1.1 - 0.8) / 4 = 0.03
    cfg = PolicyLossConfig(epsilon_high=0.28)
    loss, _ = policy_loss(logps_for(RATIOS), torch.zeros(2, 2), ADV, torch.ones(2, 2), cfg)
    close(loss, 0.03)


def test_dual_clip_by_hand() -> None:
    # r = 5 on both. A=+1: min(5, 1.2)=1.2 -> loss -1.2 (dual clip never applies to A > 0).
    # A=-1: min(-5, -1.2)=-5, dual clip c=3: max(-5, -3)=-3 -> loss 3 (5 without it), no gradient.
    logps = logps_for([[5.0], [5.0]])
    cfg = PolicyLossConfig(dual_clip=3.0, aggregation="sequence_mean")
    loss, stats = policy_loss(logps, torch.zeros(2, 1), ADV, torch.ones(2, 1), cfg)
    close(loss, (-1.2 + 3.0) / 2)
    loss.backward()
    close(logps.grad, [[0.0], [0.0]])
    assert stats["clip/dual_frac"] == 0.5
    plain, _ = policy_loss(logps_for([[5.0], [5.0]]), torch.zeros(2, 1), ADV, torch.ones(2, 1))
    close(plain, (-1.2 + 5.0) / 2)


def test_kl_estimators_by_hand() -> None:
    # logp = ln 0.5, ref = ln 0.25: k1 = ln 2; k3 = exp(-ln 2) + ln 2 - 1 = 0.5 + ln 2 - 1.
    logp, ref = torch.tensor([LN(0.5)]), torch.tensor([LN(0.25)])
    close(kl_penalty(logp, ref, "k1"), [LN(2)])
    close(kl_penalty(logp, ref, "k3"), [0.5 + LN(2) - 1])
    # k3 is 0 where the policy equals the reference, k1 can go negative
    close(kl_penalty(ref, ref, "k3"), [0.0])
    close(kl_penalty(ref, logp, "k1"), [-LN(2)])


def test_kl_term_value_and_gradient() -> None:
    # A = 0 leaves only beta * k3; d k3 / d logp = 1 - exp(ref - logp) = 1 - 0.5.
    logps = torch.tensor([[LN(0.5)]], requires_grad=True)
    ref = torch.tensor([[LN(0.25)]])
    cfg = PolicyLossConfig(beta=0.1)
    loss, stats = policy_loss(logps, None, torch.zeros(1), torch.ones(1, 1), cfg, ref_logps=ref)
    close(loss, 0.1 * (0.5 + LN(2) - 1))
    loss.backward()
    close(logps.grad, [[0.1 * 0.5]])
    assert stats["kl/mean"] == pytest.approx(0.5 + LN(2) - 1)
    k1, _ = policy_loss(
        logps,
        None,
        torch.zeros(1),
        torch.ones(1, 1),
        PolicyLossConfig(beta=0.1, kl_estimator="k1"),
        ref_logps=ref,
    )
    close(k1, 0.1 * LN(2))


def test_entropy_bonus_by_hand() -> None:
    # A = 0: loss = -0.01 * (2 + 1) / 2 = -0.015
    entropy = torch.tensor([[2.0, 1.0]], requires_grad=True)
    cfg = PolicyLossConfig(entropy_coef=0.01)
    loss, stats = policy_loss(torch.zeros(1, 2), None, torch.zeros(1), torch.ones(1, 2), cfg, entropy=entropy)
    close(loss, -0.015)
    loss.backward()
    close(entropy.grad, [[-0.005, -0.005]])
    assert stats["entropy/mean"] == 1.5


def test_missing_inputs_raise() -> None:
    logps, mask = torch.zeros(1, 2), torch.ones(1, 2)
    with pytest.raises(ValueError, match="ref_logps"):
        policy_loss(logps, None, torch.zeros(1), mask, PolicyLossConfig(beta=0.1))
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(logps, None, torch.zeros(1), mask, PolicyLossConfig(entropy_coef=0.1))
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(logps, None, torch.zeros(2), mask)
    with pytest.raises(ValueError, match="mask"):
        policy_loss(logps, None, torch.zeros(1), torch.ones(1, 3))


# --- aggregations --------------------------------------------------------------------------------

# old_logps=None: ratio 1, per-token loss = -A, d loss_t / d logp_t = -A.
# Sequence 0 has 1 real token (A=2), sequence 1 has 3 (A=-1): per-token losses [-2 | 1, 1, 1].
AGG_MASK = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
AGG_ADV = torch.tensor([2.0, -1.0])


@pytest.mark.parametrize(
    ("aggregation", "expected_loss", "grad_seq0", "grad_seq1"),
    [
        ("token_mean", (-2 + 3) / 4, -2 / 4, 1 / 4),  # every token weighs 1/4
        ("sequence_mean", (-2 / 1 + 3 / 3) / 2, -2 / 1 / 2, 1 / 3 / 2),  # each sequence weighs 1/2
        ("constant", (-2 + 3) / (2 * 4), -2 / 8, 1 / 8),  # B * max_completion_length = 2 * 4
    ],
)
def test_aggregations_by_hand(
    aggregation: str, expected_loss: float, grad_seq0: float, grad_seq1: float
) -> None:
    logps = torch.zeros(2, 3, requires_grad=True)
    cfg = PolicyLossConfig(aggregation=aggregation, max_completion_length=4)
    loss, _ = policy_loss(logps, None, AGG_ADV, AGG_MASK, cfg)
    close(loss, expected_loss)
    loss.backward()
    close(logps.grad, [[grad_seq0, 0.0, 0.0], [grad_seq1, grad_seq1, grad_seq1]])


def test_loss_normalizer_by_hand() -> None:
    masks = [AGG_MASK, torch.tensor([[1.0, 1.0, 0.0]])]
    assert loss_normalizer(masks, PolicyLossConfig()) == 6.0  # 4 + 2 tokens
    assert loss_normalizer(masks, PolicyLossConfig(aggregation="sequence_mean")) == 3.0
    assert loss_normalizer(masks, PolicyLossConfig(aggregation="constant", max_completion_length=4)) == 12.0
    assert loss_normalizer(AGG_MASK, PolicyLossConfig()) == 4.0


def test_aggregate_empty_mask_is_zero_not_nan() -> None:
    per_token = torch.ones(2, 2)
    assert aggregate(per_token, torch.zeros(2, 2), "token_mean").item() == 0.0
    assert aggregate(per_token, torch.zeros(2, 2), "sequence_mean").item() == 0.0


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean", "constant"])
def test_micro_batches_with_normalizer_match_full_batch(aggregation: str) -> None:
    torch.manual_seed(0)
    B, T, V = 5, 6, 7
    cfg = PolicyLossConfig(
        aggregation=aggregation, max_completion_length=T, beta=0.05, entropy_coef=0.01, epsilon_high=0.28
    )
    weight = torch.randn(V, V, requires_grad=True)  # a tiny "policy": logits = hidden @ weight
    hidden = torch.randn(B, T, V)
    tokens = torch.randint(0, V, (B, T))
    lengths = torch.tensor([6, 1, 3, 5, 2])
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    advantages = torch.randn(B)
    old = torch.randn(B, T) * 0.3 - 2
    ref = torch.randn(B, T) * 0.3 - 2

    def run(rows: slice, normalizer: float | None) -> torch.Tensor:
        logits = hidden[rows] @ weight
        logps = selective_log_softmax(logits, tokens[rows])
        loss, _ = policy_loss(
            logps,
            old[rows],
            advantages[rows],
            mask[rows],
            cfg,
            ref_logps=ref[rows],
            entropy=entropy_from_logits(logits),
            normalizer=normalizer,
        )
        return loss

    full = run(slice(0, B), None)
    (full_grad,) = torch.autograd.grad(full, weight)
    parts = [slice(0, 2), slice(2, B)]
    normalizer = loss_normalizer([mask[p] for p in parts], cfg)
    micro = [run(p, normalizer) for p in parts]
    micro_grad = sum(torch.autograd.grad(m, weight)[0] for m in micro)
    torch.testing.assert_close(sum(micro), full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(micro_grad, full_grad, atol=1e-6, rtol=1e-5)
    # without the normalizer the micro-batch means do not add up to the full batch's mean
    naive = sum(torch.autograd.grad(run(p, None), weight)[0] for p in parts)
    assert not torch.allclose(naive, full_grad, atol=1e-4)


# --- DPO -----------------------------------------------------------------------------------------

# chosen log-ratios [0.5, -1], rejected [-0.5, 0.5] -> h = [1, -1.5]; beta 0.1 -> beta h = [0.1, -0.15].
PC, PR = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
RC, RR = torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -1.5])


def softplus(x: float) -> float:
    return math.log(1 + math.exp(x))


@pytest.mark.parametrize(
    ("loss_type", "label_smoothing", "expected"),
    [
        # -logsigmoid(x) = softplus(-x)
        ("sigmoid", 0.0, (softplus(-0.1) + softplus(0.15)) / 2),
        (
            "sigmoid",
            0.1,
            (0.9 * softplus(-0.1) + 0.1 * softplus(0.1) + 0.9 * softplus(0.15) + 0.1 * softplus(-0.15)) / 2,
        ),
        ("ipo", 0.0, ((1 - 5) ** 2 + (-1.5 - 5) ** 2) / 2),  # 1 / (2 beta) = 5
        ("hinge", 0.0, ((1 - 0.1) + (1 + 0.15)) / 2),
    ],
)
def test_dpo_by_hand(loss_type: str, label_smoothing: float, expected: float) -> None:
    loss, stats = dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type=loss_type, label_smoothing=label_smoothing)
    close(loss, expected, tol=1e-5)
    assert stats["rewards/chosen"] == pytest.approx((0.05 - 0.1) / 2)
    assert stats["rewards/rejected"] == pytest.approx(0.0)
    assert stats["rewards/accuracies"] == 0.5  # pair 0: 0.05 > -0.05; pair 1: -0.1 < 0.05
    assert stats["rewards/margins"] == pytest.approx((0.1 - 0.15) / 2)


def test_dpo_sigmoid_gradient_by_hand() -> None:
    # d/d pi_c of softplus(-beta h) / B = -beta * sigmoid(-beta h) / B; pi_r gets the opposite sign.
    pc = PC.clone().requires_grad_(True)
    pr = PR.clone().requires_grad_(True)
    loss, _ = dpo_loss(pc, pr, RC, RR, beta=0.1)
    loss.backward()

    def sig(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    expected = [-0.1 * sig(-0.1) / 2, -0.1 * sig(0.15) / 2]
    close(pc.grad, expected)
    close(pr.grad, [-g for g in expected])


def test_dpo_normalizer_and_validation() -> None:
    full, _ = dpo_loss(PC, PR, RC, RR)
    halves = sum(
        dpo_loss(PC[i : i + 1], PR[i : i + 1], RC[i : i + 1], RR[i : i + 1], normalizer=2)[0]
        for i in range(2)
    )
    close(halves, full.item())
    with pytest.raises(ConfigError, match="dpo.beta"):
        dpo_loss(PC, PR, RC, RR, beta=0)
    with pytest.raises(ConfigError, match="dpo.loss_type"):
        dpo_loss(PC, PR, RC, RR, loss_type="kto")
    with pytest.raises(ConfigError, match="only used by loss_type 'sigmoid'"):
        dpo_loss(PC, PR, RC, RR, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="must all be"):
        dpo_loss(PC, PR[:1], RC, RR)


# --- SFT (the lean head's NLL; an identity head makes hidden states the logits) ------------------


def sft_loss(logits: torch.Tensor, labels: torch.Tensor, normalizer: float | None = None):
    head = torch.nn.Linear(logits.shape[-1], logits.shape[-1], bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(logits.shape[-1]))
    head.requires_grad_(False)
    nll, n = head_nll(head, logits, labels, chunk_rows=1)
    return nll / (normalizer if normalizer is not None else max(n, 1)), n


def test_sft_by_hand() -> None:
    # position 0: logits [0, 0], label 1 -> ln 2; position 1 ignored; position 2: [ln 3, 0], label 0 -> ln(4/3).
    logits = torch.tensor([[[0.0, 0.0], [9.0, -9.0], [LN(3), 0.0]]], requires_grad=True)
    labels = torch.tensor([[1, -100, 0]])
    loss, n = sft_loss(logits, labels)
    assert n == 2
    close(loss, (LN(2) + LN(4 / 3)) / 2)
    loss.backward()
    # d CE / d logits = softmax - onehot, / 2 tokens; ignored position gets 0.
    close(logits.grad, [[[0.25, -0.25], [0.0, 0.0], [(0.75 - 1) / 2, 0.25 / 2]]])
    summed, _ = sft_loss(logits, labels, normalizer=4)
    close(summed, (LN(2) + LN(4 / 3)) / 4)


def test_sft_ignored_position_with_minus_inf_logit_stays_finite() -> None:
    logits = torch.tensor([[[float("-inf"), 0.0], [0.0, 0.0]]], requires_grad=True)
    loss, n = sft_loss(logits, torch.tensor([[-100, 1]]))
    close(loss, LN(2))
    loss.backward()
    assert n == 1 and torch.isfinite(logits.grad).all()


def test_sft_edge_cases() -> None:
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    loss, n = sft_loss(logits, torch.full((1, 2), -100))
    assert n == 0 and loss.item() == 0.0
    loss.backward()  # an all-ignored micro-batch must not break accumulation
    bf16, _ = sft_loss(torch.zeros(1, 2, 4, dtype=torch.bfloat16), torch.tensor([[0, 3]]))
    assert bf16.dtype == torch.float32 and bf16.item() == pytest.approx(LN(4))
    with pytest.raises(ValueError, match="align"):
        sft_loss(logits, torch.zeros(1, 3, dtype=torch.long))


# --- log-prob helpers ----------------------------------------------------------------------------


def test_selective_log_softmax_by_hand() -> None:
    # logits [0, ln 3]: p = [1/4, 3/4]
    out = selective_log_softmax(torch.tensor([[0.0, LN(3)], [0.0, LN(3)]]), torch.tensor([1, 0]))
    close(out, [LN(3 / 4), LN(1 / 4)])


@pytest.mark.parametrize("chunk_rows", [None, 1, 4])
def test_selective_log_softmax_matches_log_softmax(chunk_rows: int | None) -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, requires_grad=True)
    index = torch.randint(0, 11, (3, 5))
    upstream = torch.randn(3, 5)
    ours = selective_log_softmax(logits, index, chunk_rows=chunk_rows)
    (ours_grad,) = torch.autograd.grad((ours * upstream).sum(), logits)
    ref = torch.log_softmax(logits, -1).gather(-1, index[..., None]).squeeze(-1)
    (ref_grad,) = torch.autograd.grad((ref * upstream).sum(), logits)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours_grad, ref_grad)


def test_sliced_logits_match_contiguous_ones() -> None:
    # the usual call site slices off the last position: logits[:, :-1] cannot be flattened without a copy
    torch.manual_seed(0)
    full = torch.randn(3, 5, 11, requires_grad=True)
    index = torch.randint(0, 11, (3, 4))
    ours = selective_log_softmax(full[:, :-1], index, chunk_rows=3)
    (ours_grad,) = torch.autograd.grad(ours.sum(), full)
    ref = torch.log_softmax(full[:, :-1], -1).gather(-1, index[..., None]).squeeze(-1)
    (ref_grad,) = torch.autograd.grad(ref.sum(), full)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours_grad, ref_grad)
    torch.testing.assert_close(
        entropy_from_logits(full[:, :-1], chunk_rows=3), entropy_from_logits(full)[:, :-1]
    )


def test_selective_log_softmax_gradcheck_fp64() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 5, (2, 3))
    assert torch.autograd.gradcheck(lambda x: selective_log_softmax(x, index, chunk_rows=2), (logits,))


def test_selective_log_softmax_bf16_is_computed_in_fp32() -> None:
    torch.manual_seed(0)
    logits = (torch.randn(4, 6, 50) * 5).to(torch.bfloat16).requires_grad_(True)
    index = torch.randint(0, 50, (4, 6))
    ours = selective_log_softmax(logits, index)
    assert ours.dtype == torch.float32
    ref = torch.log_softmax(logits.detach().float(), -1).gather(-1, index[..., None]).squeeze(-1)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)  # exact in fp32 from the bf16 values
    ours.sum().backward()
    assert logits.grad.dtype == torch.bfloat16
    ref_grad = torch.nn.functional.one_hot(index, 50).float() - torch.softmax(logits.detach().float(), -1)
    torch.testing.assert_close(logits.grad.float(), ref_grad, atol=1e-2, rtol=1e-2)  # bf16 rounding


def test_selective_log_softmax_saves_no_fp32_copy_for_backward() -> None:
    # What autograd keeps alive for backward: ours keeps the bf16 logits (no copy) and one lse per row;
    # log_softmax(logits.float()) keeps a full fp32 (B, L, V) tensor.
    logits = torch.randn(2, 9, 1000).to(torch.bfloat16).requires_grad_(True)
    index = torch.randint(0, 1000, (2, 8))

    def saved_bytes(fn) -> int:
        saved: list[torch.Tensor] = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        fresh = {id(t): t for t in saved if t.data_ptr() != logits.data_ptr()}
        return sum(t.numel() * t.element_size() for t in fresh.values())

    ours = saved_bytes(lambda: selective_log_softmax(logits[:, :-1], index))
    naive = saved_bytes(lambda: torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, index[..., None]))
    full_fp32 = 2 * 8 * 1000 * 4
    assert naive >= full_fp32
    assert ours <= 2 * 8 * (8 + 4)  # index (int64) + lse (fp32) per position


def test_entropy_from_logits() -> None:
    # uniform over 4 -> ln 4; p = [1/4, 3/4] -> -(1/4 ln 1/4 + 3/4 ln 3/4); a -inf logit is a 0-prob token.
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, LN(3), float("-inf"), float("-inf")]])
    close(entropy_from_logits(logits, chunk_rows=1), [LN(4), -(0.25 * LN(0.25) + 0.75 * LN(0.75))])
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9)
    p = torch.softmax(x, -1)
    torch.testing.assert_close(entropy_from_logits(x), -(p * p.log()).sum(-1))
