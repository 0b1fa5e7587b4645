"""The step skeleton SFT, DPO and RL share: a NaN in any trainer's loss is skipped, counted, checkpointed and,
repeated, stops the run with the same one-line error (the real CLI, the tiny model, real files)."""

from __future__ import annotations

import json

import pytest

import training.trainers.dpo_trainer
import training.trainers.rl_trainer
import training.trainers.sft_trainer
from training.data.records import write_jsonl
from training.errors import MedrlError
from training.objectives.toy_task import write_records
from training.trainers.step_loop import NonFinite, WeightedMeans

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    recs = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus 1?"}],
            "chosen": [{"role": "assistant", "content": f"{i + 1}"}],
            "rejected": [{"role": "assistant", "content": f"{i + 3}, I think."}],
        }
        for i in range(4)
    ]
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    write_jsonl(path, recs)
    return path


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("toy") / "toy.jsonl", 8, seed=0)


def nan_loss(fn):
    """`fn` with its loss (the first thing it returns) times NaN: loss and gradient both non-finite."""

    def wrapped(*args, **kwargs):
        loss, *rest = fn(*args, **kwargs)
        return (loss * float("nan"), *rest)

    return wrapped


# trainer module, the loss it calls, recipe, its data fixture, extra overrides (small and fast)
TRAINERS = {
    "sft": (
        training.trainers.sft_trainer,
        "sft_micro_loss",
        "configs/sft_qwen2_tiny.yaml",
        "text_sft_file",
        ["--batch_size=1", "--grad_accum=1"],
    ),
    "dpo": (
        training.trainers.dpo_trainer,
        "dpo_loss",
        "configs/dpo_qwen2_tiny.yaml",
        "pairs_file",
        ["--batch_size=1", "--grad_accum=1"],
    ),
    "rl": (
        training.trainers.rl_trainer,
        "policy_loss",
        "configs/grpopp_qwen2_toy.yaml",
        "toy_file",
        ["--prompts_per_step=2", "--rollout.num_generations=2", "--rollout.max_new_tokens=3"],
    ),
}


@pytest.mark.parametrize("kind", sorted(TRAINERS))
def test_a_nan_loss_is_skipped_counted_and_repeated_stops_every_trainer(
    kind, cli, tmp_path, monkeypatch, capsys, request
):
    module, loss_name, recipe, data_fixture, extra = TRAINERS[kind]
    monkeypatch.setattr(module, loss_name, nan_loss(getattr(module, loss_name)))
    data = request.getfixturevalue(data_fixture)
    rc = cli(
        "train",
        recipe,
        f"--data.train={data}",
        f"--run.output_dir={tmp_path}",
        "--run.name=nan",
        "--run.max_steps=3",
        "--run.save_every=1",
        "--run.tensorboard=false",
        "--max_nonfinite_in_a_row=1",
        *extra,
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].endswith(
        "2 policy updates in a row had a non-finite loss or gradient (step 2); lower optim.lr, "
        "raise optim.max_grad_norm clipping, or "
        + ("check the rewards" if kind == "rl" else "check the data")
    ), err
    run = tmp_path / "nan"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1]  # step 2 stopped before its row
    assert steps[0]["loss"] == "nan" and steps[0]["skipped_nonfinite"] == 1
    state = json.loads((run / "checkpoints" / "step-1" / "trainer_state.json").read_text())
    assert state["skipped_nonfinite"] == 1 and state["nonfinite_in_a_row"] == 1  # a resume counts on
    assert not (run / "adapter").exists()


def test_nonfinite_counts_a_streak_and_a_total():
    guard = NonFinite(limit=2)
    for stepped in (False, True, False, False):
        guard.record(stepped, "runs/x", 1, "check the data")
    assert (guard.in_a_row, guard.total) == (2, 3)
    assert guard.state() == {"nonfinite_in_a_row": 2, "skipped_nonfinite": 3}
    with pytest.raises(MedrlError, match=r"runs/x: 3 policy updates in a row .* \(step 7\)"):
        guard.record(False, "runs/x", 7, "check the data")
    assert NonFinite(limit=3).state() == {}  # nothing skipped: nothing written


def test_weighted_means_keep_extremes():
    means = WeightedMeans()
    means.add({"kl/mean": 1.0, "ratio/max": 2.0, "ratio/min": 0.5, "tokens": 3.0}, 3.0)
    means.add({"kl/mean": 3.0, "ratio/max": 1.5, "ratio/min": 0.25, "tokens": 1.0}, 1.0)
    assert means.result() == {"kl/mean": pytest.approx(1.5), "ratio/max": 2.0, "ratio/min": 0.25}
