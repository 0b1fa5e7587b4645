import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from training.objectives.toy_task import write_records


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("toy") / "toy.jsonl", 64, seed=0)


def rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_grpopp_raises_mean_reward(cli, tmp_path, toy_file):
    """Fixed seed: the mean reward of the last steps beats the first steps (the toy task is verifiable)."""
    assert (
        cli(
            "train",
            "configs/grpopp_qwen2_toy.yaml",
            f"--data.train={toy_file}",
            f"--run.output_dir={tmp_path}",
            "--run.name=toy",
            "--run.save_every=0",
        )
        == 0
    )
    r = [x["reward/mean"] for x in rows(tmp_path / "toy") if "reward/mean" in x]
    assert len(r) == 24
    first, last = sum(r[:4]) / 4, sum(r[-8:]) / 8
    assert last > first + 0.05, (first, last, r)
    row = rows(tmp_path / "toy")[-1]
    for key in (
        "reward/toy_correct/mean",
        "reward/toy_digits/weighted_mean",
        "adv/frac_binary_groups",
        "loss/clip/frac",
        "loss/kl/mean",
        "loss/entropy/mean",
        "completion_len_mean",
        "tokens_per_s",
    ):
        assert key in row, key


def test_rl_resume_is_exact(cli, tmp_path, toy_file):
    common = [
        f"--data.train={toy_file}",
        f"--run.output_dir={tmp_path}",
        "--run.max_steps=4",
        "--run.save_every=2",
        "--prompts_per_step=2",
        "--rollout.num_generations=3",
        "--reference.sync_every=3",
    ]
    assert cli("train", "configs/grpopp_qwen2_toy.yaml", "--run.name=full", *common) == 0
    assert cli("train", "configs/grpopp_qwen2_toy.yaml", "--run.name=part", *common) == 0
    import shutil

    shutil.rmtree(tmp_path / "part" / "checkpoints" / "step-4")
    shutil.rmtree(tmp_path / "part" / "adapter")
    assert cli("train", "configs/grpopp_qwen2_toy.yaml", "--run.name=part", *common, "--resume") == 0
    a = load_file(str(tmp_path / "full" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "part" / "adapter" / "adapter_model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra = [x["reward/mean"] for x in rows(tmp_path / "full") if "reward/mean" in x]
    rb = [x["reward/mean"] for x in rows(tmp_path / "part") if "reward/mean" in x]
    assert ra == rb  # same samples after resume: the sampling generator was restored


@pytest.mark.parametrize(
    "extra",
    [
        ["--loss.forward=naive"],
        ["--num_iterations=2", "--grad_accum=2", "--reference.kind=base", "--loss.aggregation=sequence_mean"],
    ],
)
def test_rl_variants_run(cli, tmp_path, toy_file, extra):
    assert (
        cli(
            "train",
            "configs/grpopp_qwen2_toy.yaml",
            f"--data.train={toy_file}",
            f"--run.output_dir={tmp_path}",
            "--run.name=v",
            "--run.max_steps=2",
            "--prompts_per_step=2",
            "--rollout.num_generations=3",
            *extra,
        )
        == 0
    )
    last = rows(tmp_path / "v")[-1]
    assert last["step"] == 2 and last["skipped_nonfinite"] == 0


def test_reward_errors_are_clear(cli, tmp_path, toy_file, capsys):
    rc = cli(
        "train",
        "configs/grpopp_qwen2_toy.yaml",
        f"--data.train={toy_file}",
        f"--run.output_dir={tmp_path}",
        "--run.name=e",
        "--rewards={nope: 1.0}",
        "--advantages.estimator=grpo",
        "--advantages.correct_reward=null",
    )
    assert rc == 2
    assert "rewards: unknown reward 'nope'" in capsys.readouterr().err


def test_each_step_writes_a_sample_of_its_rollouts_with_reward_parts(cli, tmp_path, toy_file):
    """`run.log_rollouts: 1`: RUN/rollouts/step-N.jsonl holds the first group's G completions, each with its raw and
    weighted reward parts, their sum and its advantage; the group's advantages are its reward z-scores."""
    common = [f"--data.train={toy_file}", f"--run.output_dir={tmp_path}", "--run.name=r", "--run.max_steps=2"]
    opts = [
        "--prompts_per_step=2",
        "--rollout.num_generations=3",
        "--run.log_rollouts=1",
        "--rollout.max_new_tokens=4",
    ]
    assert cli("train", "configs/grpopp_qwen2_toy.yaml", *common, *opts) == 0
    weights = yaml.safe_load(open("configs/grpopp_qwen2_toy.yaml"))["rewards"]
    for step in (1, 2):
        got = [
            json.loads(x)
            for x in (tmp_path / "r" / "rollouts" / f"step-{step}.jsonl").read_text().splitlines()
        ]
        assert len(got) == 3 and {r["group"] for r in got} == {0} and {r["step"] for r in got} == {step}
        for r in got:
            assert set(r["rewards"]) == set(weights) and r["prompt"] and isinstance(r["completion"], str)
            assert r["weighted"] == {k: weights[k] * v for k, v in r["rewards"].items()}
            assert r["reward"] == pytest.approx(sum(r["weighted"].values()))
        totals = torch.tensor([r["reward"] for r in got])
        adv = torch.tensor([r["advantage"] for r in got])
        if totals.std() > 1e-3:  # a group with spread: the advantages are its z-scores (grpo++ keeps them)
            want = (totals - totals.mean()) / (totals.std() + 1e-4)
            torch.testing.assert_close(adv, want, atol=1e-4, rtol=0)
