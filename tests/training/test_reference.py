"""Runs that start from an adapter, and the reference kinds that mean something then (`start`, `base`, `lagged`)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from training.objectives.toy_task import write_records

TOY = "configs/grpopp_qwen2_toy.yaml"


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("toy") / "toy.jsonl", 16, seed=0)


def rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def rl(cli, tmp_path, toy_file, name, *extra):
    return cli(
        "train",
        TOY,
        f"--data.train={toy_file}",
        f"--run.output_dir={tmp_path}",
        f"--run.name={name}",
        "--run.max_steps=2",
        "--run.save_every=0",
        "--prompts_per_step=2",
        "--rollout.num_generations=3",
        *extra,
    )


def test_rl_starts_from_an_sft_adapter_with_the_start_reference(cli, tmp_path, toy_file, sft_adapter):
    """SFT -> RL: the run trains the SFT adapter further; `start` is that adapter, so the first KL is 0, while
    `base` (adapter off) already differs from the policy at step 1."""
    assert (
        rl(
            cli,
            tmp_path,
            toy_file,
            "start",
            f"--model.adapter={sft_adapter}",
            "--reference.kind=start",
            "--loss.beta=0.1",
        )
        == 0
    )
    assert (
        rl(
            cli,
            tmp_path,
            toy_file,
            "base",
            f"--model.adapter={sft_adapter}",
            "--reference.kind=base",
            "--loss.beta=0.1",
        )
        == 0
    )
    kl_start = [r["loss/kl/mean"] for r in rows(tmp_path / "start") if "loss/kl/mean" in r]
    kl_base = [r["loss/kl/mean"] for r in rows(tmp_path / "base") if "loss/kl/mean" in r]
    assert abs(kl_start[0]) < 1e-6, kl_start
    assert kl_base[0] > 1e-4, kl_base
    start = load_file(str(sft_adapter / "adapter_model.safetensors"))
    final = load_file(str(tmp_path / "start" / "adapter" / "adapter_model.safetensors"))
    assert start.keys() == final.keys()  # the SFT adapter's LoRA layout, continued
    assert any(not torch.equal(start[k], final[k]) for k in start)  # and trained further
    assert (tmp_path / "start" / "config.yaml").read_text().count(str(sft_adapter)) == 1


def test_as_old_policy_uses_the_lagged_copy(cli, tmp_path, toy_file):
    """With the lagged copy synced at the start as the ratio's denominator, step 1's ratio is exactly 1."""
    assert (
        rl(
            cli,
            tmp_path,
            toy_file,
            "old",
            "--reference.kind=lagged",
            "--reference.as_old_policy=true",
            "--reference.sync_every=5",
        )
        == 0
    )
    first = next(r for r in rows(tmp_path / "old") if "loss/ratio/mean" in r)
    assert first["loss/ratio/mean"] == pytest.approx(1.0, abs=1e-5)
    assert first["loss/ratio/min"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", ["base", "start", "none"])
def test_as_old_policy_is_refused_with_a_kind_it_cannot_mean(cli, tmp_path, toy_file, kind, capsys):
    rc = rl(
        cli,
        tmp_path,
        toy_file,
        "bad",
        f"--reference.kind={kind}",
        "--reference.as_old_policy=true",
        "--loss.beta=0.0",
    )
    assert rc == 2
    assert "reference.kind: expected lagged when reference.as_old_policy is true" in capsys.readouterr().err


def test_adapter_that_is_not_one_is_a_clear_error(cli, tmp_path, toy_file, capsys):
    assert rl(cli, tmp_path, toy_file, "x", f"--model.adapter={tmp_path}") == 2
    assert "model.adapter: expected an adapter folder" in capsys.readouterr().err


def test_one_completion_per_group_is_a_config_error(cli, tmp_path, toy_file, capsys):
    assert rl(cli, tmp_path, toy_file, "g1", "--rollout.num_generations=1") == 2
    assert "rollout.num_generations: expected an integer >= 2" in capsys.readouterr().err
