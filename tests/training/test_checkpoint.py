"""Checkpoints hold everything a resume needs, inside the atomically published folder."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from training.objectives.toy_task import write_records
from training.run.rundir import RunDir

TOY = "configs/grpopp_qwen2_toy.yaml"
COMMON = [
    "--prompts_per_step=2",
    "--rollout.num_generations=3",
    "--reference.kind=lagged",
    "--reference.sync_every=2",
    "--run.save_every=1",
    "--run.keep_checkpoints=0",
]


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("toy") / "toy.jsonl", 16, seed=0)


def adapter(path):
    return load_file(str(path / "adapter_model.safetensors"))


@pytest.mark.slow
def test_every_published_checkpoint_resumes_exactly(cli, tmp_path, toy_file):
    """Resuming from step-k and running one step gives the uninterrupted run's step-(k+1) adapter, bit for bit:
    the sampling generator and the lagged reference are inside every checkpoint, not written beside it."""
    full = tmp_path / "full"
    assert (
        cli(
            "train",
            TOY,
            f"--data.train={toy_file}",
            f"--run.output_dir={tmp_path}",
            "--run.name=full",
            "--run.max_steps=3",
            *COMMON,
        )
        == 0
    )
    published = RunDir(full).checkpoints()
    assert [s for s, _ in published] == [1, 2, 3]
    for step, path in published[:-1]:
        assert (path / "trainer_state.safetensors").is_file()
        name = f"from{step}"
        part = tmp_path / name
        (part / "checkpoints").mkdir(parents=True)
        shutil.copytree(path, part / "checkpoints" / path.name)
        shutil.copy(full / "config.yaml", part / "config.yaml")
        assert (
            cli(
                "train",
                TOY,
                f"--data.train={toy_file}",
                f"--run.output_dir={tmp_path}",
                f"--run.name={name}",
                f"--run.max_steps={step + 1}",
                *COMMON,
                "--resume",
            )
            == 0
        )
        want = adapter(full / "checkpoints" / f"step-{step + 1}" / "adapter")
        got = adapter(part / "adapter")
        for k in want:
            assert torch.equal(want[k], got[k]), (step, k)


def test_a_checkpoint_without_rl_state_is_a_clear_error(cli, tmp_path, toy_file, capsys):
    assert (
        cli(
            "train",
            TOY,
            f"--data.train={toy_file}",
            f"--run.output_dir={tmp_path}",
            "--run.name=r",
            "--run.max_steps=1",
            *COMMON,
        )
        == 0
    )
    run = RunDir(tmp_path / "r")
    (run.checkpoint_dir(1) / "trainer_state.safetensors").unlink()
    shutil.rmtree(run.adapter_dir)
    rc = cli(
        "train",
        TOY,
        f"--data.train={toy_file}",
        f"--run.output_dir={tmp_path}",
        "--run.name=r",
        "--run.max_steps=2",
        *COMMON,
        "--resume",
    )
    assert rc != 0
    assert "has no RL state" in capsys.readouterr().err


def test_unpublished_folders_are_not_checkpoints(tmp_path):
    run = RunDir(tmp_path)
    (run.checkpoints_dir / ".step-5.tmp-abc").mkdir(parents=True)  # a write in progress
    (run.checkpoints_dir / "step-4").mkdir()  # no trainer_state.json: never published
    (run.checkpoints_dir / "step-3").mkdir()
    (run.checkpoints_dir / "step-3" / "trainer_state.json").write_text("{}")
    assert [s for s, _ in run.checkpoints()] == [3]
    assert run.latest_checkpoint() == run.checkpoint_dir(3)
