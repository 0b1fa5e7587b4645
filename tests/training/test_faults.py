"""Runs die and users press Ctrl-C: neither may cost them work. Real subprocesses, real signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.objectives.toy_task import write_records
from training.run.rundir import RunDir

pytestmark = pytest.mark.slow  # real subprocesses killed mid-run (~25 s)


TOY = "configs/grpopp_qwen2_toy.yaml"
ROOT = Path(__file__).resolve().parents[2]
COMMON = [
    "--prompts_per_step=2",
    "--rollout.num_generations=3",
    "--reference.kind=lagged",
    "--reference.sync_every=2",
    "--run.keep_checkpoints=0",
    "--run.tensorboard=false",
    "--rollout.max_new_tokens=3",
]


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("toy") / "toy.jsonl", 16, seed=0)


def medrl(*args: str) -> subprocess.Popen:
    # one intra-op thread, as the in-process runs here (`one_thread`): bit-equal results need the same reductions
    env = {**os.environ, "MEDRL_PROGRESS": "0", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.time()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(
                f"the run ended before the condition (rc {proc.returncode}): {proc.stderr.read()}"
            )
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.05)


def adapter(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "adapter_model.safetensors"))


def test_sigkill_mid_run_then_resume_equals_the_uninterrupted_run(cli, tmp_path, toy_file, one_thread):
    args = [
        f"--data.train={toy_file}",
        f"--run.output_dir={tmp_path}",
        "--run.max_steps=3",
        "--run.save_every=1",
        *COMMON,
    ]
    assert cli("train", TOY, "--run.name=full", *args) == 0
    proc = medrl("train", TOY, "--run.name=killed", *args)
    run = RunDir(tmp_path / "killed")
    wait_for(lambda: len(run.checkpoints()) >= 1, proc)
    proc.send_signal(signal.SIGKILL)  # wherever it is: in a step, or writing the next checkpoint
    proc.wait(timeout=60)
    assert not run.is_finished()
    published = run.checkpoints()
    assert all((p / "trainer_state.safetensors").is_file() for _, p in published)  # never half-written
    assert cli("train", TOY, "--run.name=killed", *args, "--resume") == 0
    want, got = adapter(RunDir(tmp_path / "full").adapter_dir), adapter(run.adapter_dir)
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(cli, tmp_path, toy_file):
    args = [
        f"--data.train={toy_file}",
        f"--run.output_dir={tmp_path}",
        "--run.name=int",
        "--run.save_every=0",
        *COMMON,
    ]
    proc = medrl("train", TOY, "--run.max_steps=200", *args)
    metrics = RunDir(tmp_path / "int").metrics_path

    def steps_logged() -> int:
        return (
            sum(1 for line in metrics.read_text().splitlines() if '"loss"' in line) if metrics.exists() else 0
        )

    wait_for(lambda: steps_logged() >= 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint" in err and "--resume" in err, err
    run = RunDir(tmp_path / "int")
    ((step, _),) = run.checkpoints()
    assert step >= 1 and not run.is_finished()
    assert cli("train", TOY, f"--run.max_steps={step + 1}", *args, "--resume") == 0
    assert run.is_finished()


def test_an_unwritable_run_folder_is_an_error_before_training(cli, tmp_path, toy_file, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = cli("train", TOY, f"--data.train={toy_file}", f"--run.output_dir={blocker}", "--run.name=x", *COMMON)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(blocker) in err, err


@pytest.mark.parametrize("bars", ["0", "1"])
def test_a_reward_that_raises_is_named(cli, tmp_path, toy_file, capsys, monkeypatch, bars):
    """The error is the last line, also with progress bars on (an open bar used to print after it)."""
    monkeypatch.setenv("MEDRL_PROGRESS", bars)
    rc = cli(
        "train",
        TOY,
        f"--data.train={toy_file}",
        f"--run.output_dir={tmp_path}",
        "--run.name=r",
        "--rewards={builtins:len: 1.0}",
        "--advantages.estimator=grpo",
        "--advantages.correct_reward=null",
        *COMMON,
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.splitlines()[-1].startswith(
        "medrl: error: reward 'builtins:len' raised TypeError"
    ), err


OVERFLOW = '''
def huge(prompts, completions, **fields):
    """Finite per completion, but the weighted sum overflows to +-inf: the advantages become NaN."""
    return [1e308 if i % 2 else -1e308 for i in range(len(completions))]
'''


def test_non_finite_updates_are_skipped_counted_and_stop_the_run(
    cli, tmp_path, toy_file, capsys, monkeypatch
):
    (tmp_path / "overflow_rewards.py").write_text(OVERFLOW)
    monkeypatch.syspath_prepend(str(tmp_path))
    base = [
        f"--data.train={toy_file}",
        f"--run.output_dir={tmp_path}",
        "--rewards={overflow_rewards:huge: 10.0}",
        "--advantages.estimator=grpo",
        "--advantages.correct_reward=null",
        *COMMON,
    ]
    assert cli("train", TOY, "--run.name=skip", "--run.max_steps=2", "--max_nonfinite_in_a_row=5", *base) == 0
    rows = [json.loads(x) for x in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert last["step"] == 2 and last["skipped_nonfinite"] == 2 and last["loss"] == "nan"
    capsys.readouterr()
    assert cli("train", TOY, "--run.name=stop", "--run.max_steps=3", "--max_nonfinite_in_a_row=0", *base) == 2
    assert "1 policy updates in a row had a non-finite loss or gradient (step 1)" in capsys.readouterr().err


def test_a_failed_run_leaves_no_progress_bar_open(tmp_path, toy_file, monkeypatch):
    """The trainer closes its bar however the loop ends, so nothing prints after the error a caller reports."""
    from tqdm import tqdm

    from training.cli import run_recipe
    from training.errors import MedrlError

    monkeypatch.setenv("MEDRL_PROGRESS", "1")
    before = set(tqdm._instances)
    with pytest.raises(MedrlError, match="raised TypeError"):
        run_recipe(
            TOY,
            [
                f"--data.train={toy_file}",
                f"--run.output_dir={tmp_path}",
                "--run.name=r",
                "--rewards={builtins:len: 1.0}",
                "--advantages.estimator=grpo",
                "--advantages.correct_reward=null",
                *COMMON,
            ],
        )
    assert [b for b in tqdm._instances if b not in before] == []
