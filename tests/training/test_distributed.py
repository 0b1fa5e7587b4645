"""Data parallel through `torchrun`: 2 real processes over gloo on the CPU, each running the real CLI.

For SFT, DPO and the RL loop: the 2-process run's adapter equals a 1-process run of the same global batch (the
replica check at the end of a multi-process run already makes its rank 0 and rank 1 weights identical, logged as
`replicas_max_abs_diff`), and only rank 0 writes the run folder. The RL run samples greedily (top_k 1) with the
`binary` estimator, so both runs see the same completions and the advantages are not all zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from training.data.records import write_jsonl

pytestmark = pytest.mark.slow  # torchrun subprocesses (~55 s)


TOL = 2e-5  # fp32, the sum of two ranks' gradients vs one process's accumulation: rounding only
# Adam's first steps are lr * g / (|g| + eps): with eps 1e-8 a gradient element that is rounding noise (1e-9 in one
# run, -1e-9 in the other) moves by +-lr. A larger eps keeps the update linear in small gradients, so the
# comparison tests the gradients, not Adam's sign of noise.
ADAM = "--optim.eps=1e-3"


def torchrun(*args: object, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDRL_PROGRESS": "0", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "app.cli",
        *map(str, args),
    ]
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[2]
    )


def adapter(run_dir: Path) -> dict:
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def assert_same_adapter(a: Path, b: Path) -> None:
    wa, wb = adapter(a), adapter(b)
    assert wa.keys() == wb.keys() and wa
    moved = 0
    for k in wa:
        assert (wa[k] - wb[k]).abs().max().item() < TOL, k
        moved += int((wa[k] != 0).any())
    assert moved, "the adapters are all zeros: nothing was trained"


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def check_multi_process_run(run_dir: Path, max_steps: int) -> dict:
    """One metrics row per step (rank 0 alone logs), replicas identical at the end, one set of checkpoints."""
    got = rows(run_dir)
    steps = [r["step"] for r in got if "event" not in r]
    assert steps == list(range(1, max_steps + 1))
    finish = [r for r in got if r.get("event") == "finish"]
    assert len(finish) == 1 and finish[0]["processes"] == 2
    assert finish[0]["replicas_max_abs_diff"] == 0.0
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"step-{max_steps}"]
    return got[-2]


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ddp_pairs")
    recs = [
        {
            "prompt": [{"role": "user", "content": f"Case {i}: fever and cough. Diagnosis?"}],
            "chosen": [{"role": "assistant", "content": f"<answer>pneumonia {i}</answer>"}],
            "rejected": [{"role": "assistant", "content": f"<answer>fracture {i}</answer>"}],
        }
        for i in range(8)
    ]
    write_jsonl(d / "pairs.jsonl", recs)
    return d / "pairs.jsonl"


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory) -> Path:
    from training.objectives.toy_task import write_records

    return write_records(tmp_path_factory.mktemp("ddp_toy") / "toy.jsonl", 8, seed=0)


def two_vs_one(
    cli, tmp_path, recipe: str, data: Path, one_extra: list[str], ddp_extra: list[str], common: list[str]
) -> tuple[dict, dict]:
    """The same global batch through 2 processes (torchrun) and 1 (in-process); (last row of each)."""
    args = [
        recipe,
        f"--data.train={data}",
        f"--run.output_dir={tmp_path}",
        "--run.max_steps=2",
        "--run.save_every=0",
        "--optim.lr=1e-2",
        ADAM,
        *common,
    ]
    res = torchrun("train", *args, "--run.name=ddp", *ddp_extra)
    assert res.returncode == 0, res.stderr[-3000:]
    assert cli("train", *args, "--run.name=one", *one_extra) == 0
    assert_same_adapter(tmp_path / "ddp", tmp_path / "one")
    return check_multi_process_run(tmp_path / "ddp", 2), rows(tmp_path / "one")[-1]


PER_RANK = [
    "--batch_size=1",
    "--model.lora.dropout=0.0",
]  # grad_accum 1 on each of 2 ranks = 2 in one process


def test_sft_two_processes_equal_one_with_the_same_global_batch(cli, tmp_path, text_sft_file, one_thread):
    last, one = two_vs_one(
        cli,
        tmp_path,
        "configs/sft_qwen2_tiny.yaml",
        text_sft_file,
        ["--grad_accum=2"],
        ["--grad_accum=1"],
        PER_RANK,
    )
    assert last["loss"] == pytest.approx(one["loss"], rel=1e-4)
    assert last["label_tokens"] == one["label_tokens"]  # the global batch's tokens, not rank 0's


def test_dpo_two_processes_equal_one_with_the_same_global_batch(cli, tmp_path, pairs_file, one_thread):
    last, one = two_vs_one(
        cli,
        tmp_path,
        "configs/dpo_qwen2_tiny.yaml",
        pairs_file,
        ["--grad_accum=2"],
        ["--grad_accum=1"],
        PER_RANK,
    )
    for key in ("loss", "rewards/margins", "logps/chosen"):
        assert last[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key


def test_rl_two_processes_equal_one_with_the_same_global_batch(cli, tmp_path, toy_file, one_thread):
    # prompts_per_step is global: 1 prompt on each of 2 ranks = 2 in one process
    last, one = two_vs_one(
        cli,
        tmp_path,
        "configs/grpopp_qwen2_toy.yaml",
        toy_file,
        [],
        [],
        [
            "--prompts_per_step=2",
            "--rollout.num_generations=2",
            "--rollout.top_k=1",
            "--advantages.estimator=binary",
            "--reference.kind=base",
        ],
    )
    # the rewards and advantages are of the global batch on every rank
    for key in ("reward/mean", "loss"):
        assert last[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key


def test_prompts_that_do_not_split_over_the_processes_are_refused(tmp_path, toy_file):
    res = torchrun(
        "train",
        "configs/grpopp_qwen2_toy.yaml",
        f"--data.train={toy_file}",
        f"--run.output_dir={tmp_path}",
        "--run.name=odd",
        "--prompts_per_step=3",
        "--run.max_steps=1",
    )
    assert res.returncode != 0
    assert "prompts_per_step=3 does not split over 2 processes" in res.stderr
