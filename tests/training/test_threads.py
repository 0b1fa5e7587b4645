"""Thread settings: medrl chooses the PASSIVE OpenMP wait policy unless the environment gives one, before torch
loads, and says what is in force; `medrl bench contention` validates its flags and prints its table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from training.run import threads


def test_passive_unless_the_environment_chose_a_policy():
    env: dict = {}
    assert threads.configure(env) == "PASSIVE" and env["MEDRL_SET_OMP_WAIT_POLICY"] == "1"
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.configure(mine) == "ACTIVE" and "MEDRL_SET_OMP_WAIT_POLICY" not in mine
    for chosen in ({"GOMP_SPINCOUNT": "10000"}, {"MEDRL_OMP": "default"}):  # OpenMP's own default, kept
        env = dict(chosen)
        assert threads.configure(env) == "default" and "OMP_WAIT_POLICY" not in env


def test_a_build_child_drops_medrls_policy_but_keeps_a_users():
    medrl = {"OMP_WAIT_POLICY": "PASSIVE", "MEDRL_SET_OMP_WAIT_POLICY": "1", "PATH": "/bin"}
    assert threads.without_medrl_policy(medrl) == {"PATH": "/bin"}
    users = {"OMP_WAIT_POLICY": "PASSIVE", "PATH": "/bin"}
    assert threads.without_medrl_policy(users) == users


def test_the_cli_sets_the_policy_before_torch_loads_and_describes_it(monkeypatch):
    code = (
        "import os, sys; from app.cli import main; rc = main(['kg', 'stats']); "
        "assert 'torch' not in sys.modules, 'torch loaded'; print(os.environ['OMP_WAIT_POLICY'])"
    )
    drop = ("OMP_WAIT_POLICY", "MEDRL_SET_OMP_WAIT_POLICY", "MEDRL_OMP", "GOMP_SPINCOUNT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("MEDRL_SET_OMP_WAIT_POLICY", "1")
    line = threads.describe()
    assert "OMP_WAIT_POLICY=PASSIVE (medrl's default" in line and "intra-op of" in line
    monkeypatch.delenv("MEDRL_SET_OMP_WAIT_POLICY")
    assert "(from the environment" in threads.describe()


@pytest.mark.parametrize("flags", [["--steps", "1"], ["--policies", "spin"], ["--policies", "threads:0"]])
def test_contention_refuses_bad_flags(cli, capsys, flags):
    assert cli("bench", "contention", *flags) == 2
    assert "medrl: error: --" in capsys.readouterr().err


def test_contention_policies_set_what_they_name():
    from bench.contention import policy_env

    assert policy_env("PASSIVE") == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert policy_env("default") == {"MEDRL_OMP": "default"}
    assert policy_env("spin:5000") == {"GOMP_SPINCOUNT": "5000"} and policy_env("threads:1") == {
        "OMP_NUM_THREADS": "1"
    }


def test_contention_table_names_the_ratio_and_the_goal():
    from bench.contention import table

    result = {
        "config": {
            "recipe": "grpopp_qwen2_toy",
            "steps_timed": 7,
            "cpus": 2,
            "torch_threads_per_job": 2,
            "goal_ratio": 2.5,
        },
        "rows": [{"policy": "PASSIVE", "alone_s": 2.0, "beside_s": 4.4, "ratio": 2.2, "meets_goal": True}],
    }
    text = table(result)
    assert "at most 2.5x" in text and "PASSIVE" in text and "2.20" in text and "True" in text


def test_small_decode_steps_run_on_one_thread_and_the_count_is_restored():
    """`rollout.decode_threads: 0` (auto): one thread for the tiny model's decode steps on the CPU (a step too small
    to share), the process's threads for big steps; a set value wins; the rollout leaves torch's count as it was."""
    import torch

    from training.config import ModelConfig
    from training.data.batch import encode_prompts
    from training.models.loading import load_policy
    from training.rollout.engine import SMALL_STEP_MACS, SamplingConfig, decode_threads, generate_rollouts

    pol = load_policy(ModelConfig(name="embedded:qwen2"))
    text = pol.model.config.get_text_config()
    per_row = text.hidden_size * text.intermediate_size
    assert decode_threads(pol.model, 8, SamplingConfig()) == 1
    assert decode_threads(pol.model, SMALL_STEP_MACS // per_row + 1, SamplingConfig()) is None
    assert decode_threads(pol.model, 8, SamplingConfig(decode_threads=3)) == 3
    seen = []
    hook = pol.model.get_base_model().lm_head.register_forward_hook(
        lambda *a: seen.append(torch.get_num_threads())
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = SamplingConfig(num_generations=2, max_new_tokens=3, ignore_eos=True)
        generate_rollouts(pol.model, pol.processor, encode_prompts(pol.processor, ["Fever."]), cfg)
        assert torch.get_num_threads() == 2
        assert seen[0] == 2 and set(seen[1:]) == {1}  # the prefill on the process's threads, decode on one
    finally:
        hook.remove()
        torch.set_num_threads(before)
    with threads.intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
