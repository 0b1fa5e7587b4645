"""`medrl bench contention`: a short RL run alone, then two of them at once on the same cores, per OpenMP wait policy.

Each job is the real command (`medrl train grpopp_qwen2_toy`: the embedded tiny Qwen2, G=8, 4-token answers: the
small-op shape where spinning threads hurt most) in its own process with the default thread count; its speed is
the sum of its steps' `step_time_s` after the first (start-up and model loading left out). "Beside" starts two such
jobs together and reports the slower one. Two jobs sharing the cores should each take about twice as long as one
alone; the goal (issue 30) is at most 2.5x. `OMP_WAIT_POLICY` is given to each child explicitly (PASSIVE, medrl's
default: threads sleep at barriers; ACTIVE: they spin), so the table shows what the default buys and costs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import available_cpus, format_table

RECIPE = "grpopp_qwen2_toy"
GOAL_RATIO = 2.5


def policy_env(policy: str) -> dict[str, str]:
    """A policy's OpenMP settings: PASSIVE or ACTIVE (`OMP_WAIT_POLICY`), `default` (unset: libgomp spins a while,
    then sleeps), `spin:N` (unset policy, `GOMP_SPINCOUNT=N`: a bounded spin), or `threads:N` (N threads a job)."""
    if policy in ("PASSIVE", "ACTIVE"):
        return {"OMP_WAIT_POLICY": policy}
    if policy == "default":
        return {"MEDRL_OMP": "default"}
    if policy.startswith("spin:") and policy[5:].isdigit():
        return {"GOMP_SPINCOUNT": policy[5:]}
    if policy.startswith("threads:") and policy[8:].isdigit() and int(policy[8:]) >= 1:
        return {"OMP_NUM_THREADS": policy[8:]}  # fewer threads per job, OpenMP's wait policy as medrl sets it
    raise ValueError(f"policy: expected PASSIVE, ACTIVE, default, spin:N or threads:N, got {policy!r}")


def _start(out: Path, name: str, data: Path, steps: int, policy: str) -> subprocess.Popen:
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    for key in (
        "OMP_WAIT_POLICY",
        "GOMP_SPINCOUNT",
        "OMP_NUM_THREADS",
        "MEDRL_OMP",
        "MEDRL_SET_OMP_WAIT_POLICY",
    ):
        env.pop(key, None)
    env.update(policy_env(policy))
    args = [
        sys.executable,
        "-m",
        "app.cli",
        "train",
        RECIPE,
        f"--data.train={data}",
        f"--run.output_dir={out}",
        f"--run.name={name}",
        f"--run.max_steps={steps}",
        "--run.save_every=0",
        "--run.tensorboard=false",
        "--run.progress=false",
    ]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _step_seconds(run: Path) -> float:
    from training.run.tracking import read_metrics

    rows = read_metrics(run)
    times = [r["step_time_s"] for r in rows if "step_time_s" in r]
    return sum(times[1:])  # the first step pays one-off costs (allocations, first kernels)


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"{RECIPE} child failed (exit {p.returncode}):\n{err[-3000:]}")


def run(steps: int = 8, policies: tuple[str, ...] = ("PASSIVE", "ACTIVE")) -> dict:
    """Per policy: one job alone, then two together; seconds of steps 2..N and the ratio beside / alone."""
    import torch

    from training.recipes import write_data

    rows = []
    with tempfile.TemporaryDirectory(prefix="medrl-contention-") as tmp:
        out = Path(tmp)
        data = write_data(out / "data")["toy_numbers.jsonl"]
        for policy in policies:
            t0 = time.time()
            alone = _start(out, f"alone_{policy}", data, steps, policy)
            _wait([alone])
            pair = [_start(out, f"beside{i}_{policy}", data, steps, policy) for i in (0, 1)]
            _wait(pair)
            a = _step_seconds(out / f"alone_{policy}")
            b = [_step_seconds(out / f"beside{i}_{policy}") for i in (0, 1)]
            rows.append(
                {
                    "policy": policy,
                    "alone_s": a,
                    "beside_s": max(b),
                    "beside_each_s": b,
                    "ratio": max(b) / a,
                    "meets_goal": max(b) / a <= GOAL_RATIO,
                    "wall_s": time.time() - t0,
                }
            )
    return {
        "config": {
            "recipe": RECIPE,
            "steps_timed": steps - 1,
            "cpus": available_cpus(),
            "torch_threads_per_job": torch.get_num_threads(),
            "device": "cpu",
            "precision": "fp32",
            "goal_ratio": GOAL_RATIO,
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "default"),
        },
        "rows": rows,
    }


def table(result: dict) -> str:
    c = result["config"]
    head = (
        f"{c['recipe']}: {c['steps_timed']} timed steps per job, {c['torch_threads_per_job']} threads per job on "
        f"{c['cpus']} CPUs, fp32 (goal: two jobs each at most {c['goal_ratio']}x their alone time)"
    )
    cols = [
        ("policy", "threads wait", "s"),
        ("alone_s", "alone s", ".2f"),
        ("beside_s", "beside s (slower)", ".2f"),
        ("ratio", "ratio", ".2f"),
        ("meets_goal", "<= goal", ""),
    ]
    return head + "\n" + format_table(result["rows"], cols)
