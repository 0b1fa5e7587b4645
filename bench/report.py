"""`medrl bench report`: run every CPU benchmark as a user would and write their tables, JSON and the machine into
docs/benchmarks.md (`make bench` does this).

Figures move with the CPU (an AVX2-only CPU runs the same code 2-4x slower than one with AVX-512), so a table
without its machine misleads. Each run writes one section, keyed by the CPU's model and the kernels torch picked
(`torch.backends.cpu.get_cpu_capability()`, which `ATEN_CPU_CAPABILITY=avx2` lowers), between markers in the file:
a second run on the same kind replaces its section, a run on another kind adds one, and the prose around the
sections is left alone. Each benchmark runs as `medrl bench NAME --json` in a fresh process, exactly the command the
section prints.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

# (name, module, arguments): what `make bench` has always run, plus the 8-prompt and VLM RL steps and the tree bench
BENCHES = [
    ("prefix", "prefix", []),
    ("head", "head", []),
    ("grpo-step", "grpo_step", []),
    ("grpo-step", "grpo_step", ["--prompts", "8"]),
    ("grpo-step", "grpo_step", ["--vlm"]),
    ("rollout", "rollout", []),
    ("tree", "tree", []),
    ("contention", "contention", []),
]
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
BEGIN, END = "<!-- bench-report {key} begin -->", "<!-- bench-report {key} end -->"


def machine() -> dict:
    """The CPU, the kernels torch runs on it, threads and versions: what the figures depend on."""
    import torch

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    found = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    flags = set(found.group(1).split()) if found else set()
    versions = {}
    for dist in ("torch", "transformers", "peft", "trl", "bitsandbytes"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or platform.machine(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "flags": [f for f in FLAGS if f in flags],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "env": {
            k: os.environ[k]
            for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_WAIT_POLICY")
            if k in os.environ
        },
        "threads": torch.get_num_threads(),
        "versions": versions,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _commit(),
    }


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def key_of(m: dict) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", f"{m['cpu']} {m['torch_cpu_capability']}").strip("-").lower()


def run_all(only: set[str] | None = None, log=print) -> dict:
    """Every benchmark's JSON (or its one-line error), with the wall time of each; `only`: these names."""
    results = []
    for name, module, args in BENCHES:
        if only and name not in only:
            continue
        cmd = [sys.executable, "-m", "app.cli", "bench", name, *args, "--json"]
        log(f"medrl bench report: {' '.join(['medrl', 'bench', name, *args])} ...")
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        row = {"command": " ".join(["medrl", "bench", name, *args, "--json"]), "module": module}
        row["seconds"] = round(time.perf_counter() - start, 1)
        if done.returncode == 0:
            row["result"] = json.loads(done.stdout)
        else:
            row["error"] = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        results.append(row)
        log(f"medrl bench report: {name} {'done' if 'result' in row else 'FAILED'} in {row['seconds']} s")
    return {"machine": machine(), "benches": results}


def section(report: dict) -> str:
    m = report["machine"]
    key = key_of(m)
    env = ", ".join(f"{k}={v}" for k, v in m["env"].items()) or "none"
    lines = [
        BEGIN.format(key=key),
        f"### {m['cpu']}: {m['torch_cpu_capability']} kernels",
        "",
        f"{m['cpus']} CPUs, flags {', '.join(m['flags']) or 'none of ' + ', '.join(FLAGS)}; torch's CPU kernels "
        f"{m['torch_cpu_capability']} (environment: {env}); {m['threads']} torch threads; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + f"; Python {m['python']}; commit {m['commit']}; {m['date']}.",
        "",
    ]
    for row in report["benches"]:
        lines.append(f"`{row['command'].replace(' --json', '')}` ({row['seconds']} s)")
        lines.append("")
        if "error" in row:
            lines += [f"Failed: {row['error']}", ""]
            continue
        table = importlib.import_module(f"bench.{row['module']}").table(row["result"])
        lines += ["```text", table.rstrip(), "```", ""]
        lines += [
            "<details><summary>JSON</summary>",
            "",
            "```json",
            json.dumps(row["result"], indent=1),
            "```",
            "</details>",
            "",
        ]
    lines.append(END.format(key=key))
    return "\n".join(lines)


def write(report: dict, path: Path) -> Path:
    """Replace this machine kind's section of `path` (or add it at the end); everything else stays."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    key = key_of(report["machine"])
    new = section(report)
    begin, end = BEGIN.format(key=key), END.format(key=key)
    if begin in text and end in text:
        text = text[: text.index(begin)] + new + text[text.index(end) + len(end) :]
    else:
        if "## Generated reports" not in text:
            text = (
                text.rstrip()
                + "\n\n## Generated reports\n\nWritten by `make bench` (`medrl bench report`), one section per CPU kind.\n"
            )
        text = text.rstrip() + "\n\n" + new + "\n"
    from training.atomic import atomic_write_text

    atomic_write_text(path, text)
    return path
