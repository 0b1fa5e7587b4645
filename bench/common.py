"""Shared benchmark plumbing: fresh child processes (so peak memory is one path's own), medians, tables."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def omp_wait_policy() -> str:
    """Children sleep rather than spin at OpenMP barriers unless told otherwise: on a shared CPU, spinning threads
    of a 2-thread job measured up to 30x slower on small ops, which would benchmark the neighbours, not the code."""
    return os.environ.get("OMP_WAIT_POLICY", "PASSIVE")


def resolve_device(name: str) -> str:
    """`auto | cpu | cuda | cuda:N` -> `cpu` or `cuda:N` (an index always), refusing what this machine lacks."""
    import torch

    from training.errors import ConfigError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise ConfigError(f"--device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device: '{name}' requested but no CUDA device is available")
    index = dev.index or 0
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device: '{name}' requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return f"cuda:{index}"


def pin_device_env(device: str) -> dict[str, str]:
    """Environment for a child that must see exactly `device` (from `resolve_device`) and nothing else.

    Children of a side-by-side benchmark get one GPU, as their `cuda:0`, or none for `cpu`: a framework that picks
    its own device (HF Trainer takes cuda:0 and DataParallel over every visible GPU) then cannot run elsewhere."""
    if device == "cpu":
        return {"CUDA_VISIBLE_DEVICES": ""}
    index = int(device.split(":")[1])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(index + 1)]
    return {"CUDA_VISIBLE_DEVICES": ids[index]}


def peak_rss_bytes() -> int:
    """This process's high-water RSS (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def time_median(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of `repeats` calls (the caller runs its own warm-up first)."""
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run_child(module: str, payload: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """`python -m module <json>` in a fresh interpreter (`env` added to ours); its last stdout line is its JSON
    result."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(
        os.environ, **(env or {}), PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    )
    env.setdefault("OMP_WAIT_POLICY", omp_wait_policy())
    r = subprocess.run(
        [sys.executable, "-m", module, json.dumps(payload)], capture_output=True, text=True, env=env
    )
    if r.returncode != 0:
        raise RuntimeError(f"{module} child failed ({payload}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """columns: (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append([format(row[k], f) if row.get(k) is not None else "-" for k, _, f in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c[i].rjust(widths[i]) for i in range(len(columns))) for c in cells)
