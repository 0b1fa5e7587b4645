"""Advantages and policy losses equal TRL's, computed by TRL's own GRPOTrainer (1.16) on the same inputs.

Advantages: a real `GRPOTrainer` on the embedded tiny Qwen2 generates a few tokens per completion; its reward
functions hand back scripted rewards, and the advantages it returns from `_generate_and_score_completions` are
compared with `compute_advantages` under the same settings (scale, aggregation, weights). The default std
(unbiased) is what makes them equal; the population std differs by sqrt(G / (G - 1)), which a test pins.

Losses: TRL's `_compute_loss` runs on the same per-token log-probs (its model forward is handed the tensors, the
one thing replaced, so its loss code sees exactly what ours sees); loss values and gradients must agree for each
TRL `loss_type` that `loss.type` names.
"""

from __future__ import annotations

import math

import pytest
import torch

from training.objectives.advantages import AdvantageConfig, compute_advantages

trl = pytest.importorskip("trl")  # a dev dependency: `make install` has it

NAMES = ("accuracy", "format")
SCRIPT: dict[str, list[float]] = {}


def _reward(name: str):
    def fn(prompts, completions, **_):
        assert len(SCRIPT[name]) == len(completions)
        return list(SCRIPT[name])

    fn.__name__ = name
    return fn


@pytest.fixture(scope="module")
def trl_trainer(tmp_path_factory):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from training.models.embedded import resolve_model_path

    g = 4
    path = resolve_model_path("embedded:qwen2")
    tok = AutoTokenizer.from_pretrained(path)
    cfg = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")),
        use_cpu=True,
        per_device_train_batch_size=3 * g,
        num_generations=g,
        max_completion_length=2,
        beta=0.0,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        reward_weights=[1.0, 1.0],
    )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    t = GRPOTrainer(
        model=model,
        reward_funcs=[_reward(n) for n in NAMES],
        args=cfg,
        train_dataset=Dataset.from_list([{"prompt": f"case {i}"} for i in range(3)]),
        processing_class=tok,
    )
    t.model.train()
    t.current_gradient_accumulation_steps = 1  # set by TRL's training_step, which these tests do not run
    return t


@pytest.fixture(params=[3, 4], ids=lambda g: f"G{g}")
def trainer(request, trl_trainer):
    """The one trainer, asked for groups of G (its generation batch follows the inputs it is given)."""
    trl_trainer.num_generations = request.param
    return trl_trainer


def trl_advantages(trainer, rewards: dict[str, list[float]], weights, scale: str, aggregation: str):
    g = trainer.num_generations
    SCRIPT.clear()
    SCRIPT.update(rewards)
    trainer.scale_rewards = scale
    trainer.multi_objective_aggregation = aggregation
    trainer.reward_weights = torch.tensor([weights[n] for n in NAMES], dtype=torch.float32)
    inputs = [{"prompt": f"case {i}"} for i in range(3) for _ in range(g)]  # TRL's repeat sampler's layout
    return trainer._generate_and_score_completions(inputs)["advantages"].float()


def scripted_rewards(g: int, seed: int) -> dict[str, list[float]]:
    """Three groups: continuous rewards, a binary reward with spread, and a group flat on both rewards."""
    gen = torch.Generator().manual_seed(seed)
    acc = torch.rand(3 * g, generator=gen)
    fmt = (torch.rand(3 * g, generator=gen) > 0.5).float()
    acc[g : 2 * g] = torch.tensor([1.0] + [0.0] * (g - 1))
    acc[2 * g :], fmt[2 * g :] = 1.0, 0.5
    return {"accuracy": acc.tolist(), "format": fmt.tolist()}


CASES = [
    ("sum_then_normalize", "group"),
    ("sum_then_normalize", "batch"),
    ("sum_then_normalize", "none"),
    ("normalize_then_sum", "group"),
]


@pytest.mark.parametrize("aggregation,scale", CASES)
def test_advantages_equal_trls(trainer, aggregation, scale):
    g = trainer.num_generations
    weights = {"accuracy": 1.0, "format": 0.5}
    rewards = scripted_rewards(g, seed=g)
    want = trl_advantages(trainer, rewards, weights, scale, aggregation)
    ours, _ = compute_advantages(
        {n: torch.tensor(v) for n, v in rewards.items()},
        weights,
        g,
        AdvantageConfig(aggregation=aggregation, scale=scale),
    )
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=0)
    assert ours.abs().max() > 0.1  # not a trivially zero batch


def test_population_std_is_the_documented_factor_away(trainer):
    g = trainer.num_generations
    rewards = scripted_rewards(g, 7)
    weights = {"accuracy": 1.0, "format": 0.0}
    want = trl_advantages(trainer, rewards, weights, "group", "sum_then_normalize")
    ours, _ = compute_advantages(
        {n: torch.tensor(v) for n, v in rewards.items()},
        weights,
        g,
        AdvantageConfig(std="population", eps=1e-8),
    )
    spread = want.abs() > 1e-3
    ratio = (ours[spread] / want[spread]).tolist()
    assert ratio == pytest.approx([math.sqrt(g / (g - 1))] * len(ratio), rel=1e-3)


# --- policy losses ----------------------------------------------------------------------------------


def loss_inputs(seed: int, b: int = 6, t: int = 7):
    gen = torch.Generator().manual_seed(seed)
    logps = -torch.rand(b, t, generator=gen) * 3
    old = logps + (torch.rand(b, t, generator=gen) - 0.5)  # ratios in [0.61, 1.65]: some clip, some do not
    ref = logps + (torch.rand(b, t, generator=gen) - 0.5) * 0.4
    lengths = torch.randint(1, t + 1, (b,), generator=gen)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    adv = torch.randn(b, generator=gen)
    return logps, old, ref, mask, adv


def trl_loss(trainer, loss_type, level, logps, old, ref, mask, adv, *, epsilon_high, beta, kl_ratio):
    leaf = logps.clone().requires_grad_(True)
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (leaf, torch.zeros_like(leaf), None)
    trainer.loss_type, trainer.importance_sampling_level = loss_type, level
    trainer.epsilon_low, trainer.epsilon_high, trainer.beta = 0.2, epsilon_high, beta
    trainer.max_completion_length = logps.shape[1]
    trainer.args.use_bias_correction_kl = kl_ratio
    b = logps.shape[0]
    inputs = {
        "prompt_ids": torch.ones(b, 2, dtype=torch.long),
        "prompt_mask": torch.ones(b, 2, dtype=torch.long),
        "completion_ids": torch.ones_like(mask),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.detach(), leaf.grad


LOSS_TYPES = [  # (our loss.type, TRL loss_type, TRL importance_sampling_level)
    ("grpo", "grpo", "token"),
    ("bnpo", "bnpo", "token"),
    ("dr_grpo", "dr_grpo", "token"),
    ("dapo", "dapo", "token"),
    ("gspo", "grpo", "sequence"),
    ("cispo", "cispo", "token"),
]


@pytest.mark.parametrize("ours,theirs,level", LOSS_TYPES, ids=[c[0] for c in LOSS_TYPES])
@pytest.mark.parametrize("beta,kl_ratio", [(0.0, False), (0.04, False), (0.04, True)])
def test_policy_losses_equal_trls(trl_trainer, ours, theirs, level, beta, kl_ratio):
    from training.objectives.losses import PolicyLossConfig, policy_loss

    epsilon_high = (
        1.2 if ours == "cispo" else 0.28
    )  # cispo: the ratio's cap itself (below the largest ratio here)
    for seed in range(2):
        logps, old, ref, mask, adv = loss_inputs(seed)
        want, want_grad = trl_loss(
            trl_trainer,
            theirs,
            level,
            logps,
            old,
            ref,
            mask,
            adv,
            epsilon_high=epsilon_high,
            beta=beta,
            kl_ratio=kl_ratio,
        )
        leaf = logps.clone().requires_grad_(True)
        cfg = PolicyLossConfig(
            type=ours,
            epsilon_high=epsilon_high,
            beta=beta,
            kl_ratio=kl_ratio,
            max_completion_length=logps.shape[1],
        )
        got, stats = policy_loss(leaf, old, adv, mask, cfg, ref_logps=ref if beta else None)
        got.backward()
        torch.testing.assert_close(got.detach(), want, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(leaf.grad * mask, want_grad * mask, atol=1e-7, rtol=1e-5)
        assert want_grad.abs().sum() > 0


def test_the_loss_types_differ_from_each_other(trl_trainer):
    """Guards the test above against a fixture that makes every loss the same number."""
    from training.objectives.losses import PolicyLossConfig, policy_loss

    logps, old, ref, mask, adv = loss_inputs(3)
    values = {
        t: policy_loss(logps, old, adv, mask, PolicyLossConfig(type=t, max_completion_length=7))[0].item()
        for t, _, _ in LOSS_TYPES
        if t != "bnpo"  # bnpo and dapo agree on one micro-batch
    }
    assert len({round(v, 6) for v in values.values()}) == len(values), values
