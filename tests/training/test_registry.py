"""Registries with one signature: advantage estimators, policy losses and rewards by name."""

from __future__ import annotations

import pytest
import torch

from training.errors import ConfigError, MedrlError
from training.objectives.advantages import ESTIMATORS, AdvantageConfig, compute_advantages
from training.objectives.losses import POLICY_LOSSES, PolicyLossConfig
from training.objectives.rewards import REWARDS, resolve
from training.registry import Registry


def test_a_name_taken_by_another_function_is_a_one_line_error():
    reg = Registry("thing", ("x",))

    @reg.register("a")
    def first(x):
        return x

    reg.register("a")(first)  # the same function again (a re-import): not a clash

    def second(x):
        return -x

    with pytest.raises(MedrlError) as e:
        reg.register("a")(second)
    msg = str(e.value)
    assert (
        "\n" not in msg and "thing 'a' is already registered by" in msg and "first" in msg and "second" in msg
    )


def test_an_unknown_name_lists_the_registered_ones():
    with pytest.raises(
        ConfigError,
        match=r"advantages.estimator: unknown advantage estimator 'mcts' \(registered: "
        r"binary, grpo, grpo\+\+, tree\)",
    ):
        AdvantageConfig(estimator="mcts")
    with pytest.raises(
        ConfigError,
        match=r"loss.type: unknown policy loss 'ppo' \(registered: bnpo, cispo, clipped, dapo, dr_grpo, grpo, gspo\)",
    ):
        PolicyLossConfig(type="ppo")
    with pytest.raises(ConfigError, match="rewards: unknown reward 'nope' \\(registered: .*toy_correct"):
        resolve(["nope"], ["training.objectives.toy_task"])


def test_a_function_with_another_signature_is_refused_when_it_registers():
    with pytest.raises(MedrlError, match=r"expected the signature fn\(prompts, completions, \*\*fields\)"):
        REWARDS.register("no_fields")(lambda prompts, completions: [0.0] * len(completions))
    with pytest.raises(MedrlError, match="advantage estimator 'swapped'"):
        ESTIMATORS.register("swapped")(
            lambda signal, advantages, ids, correct, subgroups, cfg: (advantages, {})
        )
    assert "no_fields" not in REWARDS and "swapped" not in ESTIMATORS


def test_a_registered_estimator_is_selectable_by_name(monkeypatch):
    monkeypatch.setattr(ESTIMATORS, "_fns", dict(ESTIMATORS._fns))  # registered for this test only

    @ESTIMATORS.register("test_negated")
    def negated(advantages, signal, ids, correct, subgroups, cfg):
        """The group z-score negated; (N,) -> (N,)."""
        return -advantages, {}

    r = {"acc": torch.tensor([1.0, 0.0, 0.0, 1.0])}
    plain, _ = compute_advantages(r, {"acc": 1.0}, 2, AdvantageConfig(estimator="grpo"))
    neg, _ = compute_advantages(r, {"acc": 1.0}, 2, AdvantageConfig(estimator="test_negated"))
    torch.testing.assert_close(neg, -plain)


@pytest.mark.parametrize("registry, shape", [(ESTIMATORS, "(N,)"), (POLICY_LOSSES, "(B, T)")])
def test_each_registered_function_gives_its_shapes_and_source(registry, shape):
    for name in registry.names():
        doc = registry.get(name, "test").__doc__ or ""
        assert shape in doc, name
        assert any(k in doc for k in ("et al.", "GRPO++", "DermIQ")), name
