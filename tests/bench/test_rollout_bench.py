"""The rollout benchmark and the grpo-step profile, run in-process on tiny shapes: real models, real trainer."""

from __future__ import annotations

import pytest

from bench import grpo_step, rollout

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_rollout_worker_times_both_sides():
    """Both sides sample exactly prompts x G x S tokens (the worker raises otherwise) and report tokens/s."""
    args = {
        "p": 48,
        "g": 2,
        "s": 4,
        "prompts": 2,
        "repeats": 1,
        "threads": 1,
        "model": "embedded:qwen2",
        "dtype": "float32",
        "device": "cpu",
        "compile": "off",
    }
    ours = rollout.worker({**args, "impl": "ours"})
    ref = rollout.worker({**args, "impl": "generate"})
    for side in (ours, ref):
        assert side["tokens_per_s"] == pytest.approx(2 * 2 * 4 / side["seconds"])
        assert len(side["prompt_tokens"]) == 2 and min(side["prompt_tokens"]) >= 40
    row = {
        "prompts": 2,
        "rows": 4,
        "seconds_ours": ours["seconds"],
        "seconds_generate": ref["seconds"],
        "tokens_per_s_ours": ours["tokens_per_s"],
        "tokens_per_s_generate": ref["tokens_per_s"],
        "speedup_vs_generate": ref["seconds"] / ours["seconds"],
    }
    text = rollout.table({"config": {**args, "prompts": [2]}, "rows": [row]})
    assert "speedup" in text and "generate tok/s" in text


def test_grpo_step_profile_names_every_phase():
    """Two profiled steps of the real trainer at two prompts per step: every phase measured, the phases fit in the
    step, and the trainer's names are restored afterwards."""
    from training.trainers import rl_trainer, step_loop

    before = (rl_trainer.generate_rollouts, rl_trainer.score, step_loop.clip_and_step)
    out = grpo_step.worker_ours(
        {
            "p": 48,
            "g": 2,
            "s": 4,
            "steps": 2,
            "warmup": 1,
            "threads": 1,
            "prompts": 2,
            "model": "embedded:qwen2",
            "forward": "grouped",
            "device": "cpu",
            "dtype": "float32",
            "profile": True,
        }
    )
    assert (rl_trainer.generate_rollouts, rl_trainer.score, step_loop.clip_and_step) == before
    prof = out["profile_s"]
    assert list(prof) == list(grpo_step.PHASES)
    for phase in ("prefill", "decode", "rewards", "loss_forward", "backward", "optimizer"):
        assert prof[phase] > 0, phase
    assert prof["reference"] < 1e-2  # beta 0, no reference: the call returns at once
    measured = sum(v for k, v in prof.items() if k != "other")
    assert measured <= out["step_times"][-1] * 1.01 and prof["other"] >= -0.01
    assert "decode" in grpo_step.table(
        {
            "config": {
                "model": "m",
                "p": 48,
                "g": 2,
                "s": 4,
                "steps": 2,
                "warmup": 1,
                "threads": 1,
                "device": "cpu",
                "dtype": "float32",
                "precision": "fp32",
                "torch": "t",
                "trl": None,
                "prompts": 2,
            },
            "ours": out,
        }
    )
