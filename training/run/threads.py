"""How a medrl process's CPU threads wait, so two jobs can share one machine.

PyTorch's CPU kernels run on OpenMP threads. With OpenMP's default wait policy, a thread that reaches a barrier
spins for a while before sleeping; alone on its cores that saves a wake-up, but beside another job the spinning
threads take the cores the other job's threads are waiting for, and a tiny model's step (thousands of small ops,
each ending at a barrier) measured up to 30x slower instead of about 2x (issue 30: a second `medrl demo` on the
same 2 cores). A clinician's app beside a training run is the normal case on one workstation, so medrl starts
every command with ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at barriers) unless the environment already chose (a
policy, ``GOMP_SPINCOUNT``, or ``MEDRL_OMP=default`` for OpenMP's own default); `medrl bench contention` measures both policies alone and side by side. The variable is read when the
OpenMP runtime loads (with torch), so `configure` runs before any torch import; a program that imported torch
first keeps the policy it started with, and `describe` says which one is in force.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

DEFAULT_WAIT_POLICY = "PASSIVE"
_SET_BY_MEDRL = "MEDRL_SET_OMP_WAIT_POLICY"  # marks a policy medrl chose (children inherit it and the mark)


OPT_OUT = "MEDRL_OMP"  # MEDRL_OMP=default: leave OpenMP's own default (spin a while, then sleep) in force


def configure(environ: dict | None = None) -> str:
    """Set ``OMP_WAIT_POLICY`` to PASSIVE unless the environment already chose how threads wait (a policy, a
    ``GOMP_SPINCOUNT``, or ``MEDRL_OMP=default``); returns the policy in force ("default": OpenMP's own)."""
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in env:
        return env["OMP_WAIT_POLICY"]
    if "GOMP_SPINCOUNT" in env or env.get(OPT_OUT) == "default":
        return "default"
    env["OMP_WAIT_POLICY"] = DEFAULT_WAIT_POLICY
    env[_SET_BY_MEDRL] = "1"
    return DEFAULT_WAIT_POLICY


def describe() -> str:
    """One line: torch's intra-op threads, the CPUs this process may use, and the OpenMP wait policy (and whether
    medrl or the user chose it)."""
    import torch

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    policy = os.environ.get("OMP_WAIT_POLICY")
    if not policy:
        spin = os.environ.get("GOMP_SPINCOUNT")
        policy, who = "unset", f"OpenMP's default: spin{' ' + spin + ' times' if spin else ''}, then sleep"
    else:
        who = "medrl's default" if os.environ.get(_SET_BY_MEDRL) else "from the environment"
    return (
        f"medrl: threads: {torch.get_num_threads()} intra-op of {cpus} CPUs, OMP_WAIT_POLICY={policy} ({who}; "
        "PASSIVE shares the cores with other jobs, ACTIVE can be faster alone)"
    )


def without_medrl_policy(env: dict) -> dict:
    """``env`` less the wait policy medrl chose (a user's own choice stays): for a child that runs alone and is
    fastest with OpenMP's default spin, the embedded models' build (the same bits either way; the rebuild test took
    342 s before medrl chose PASSIVE and 396 s after, in CI on 2 vCPUs)."""
    if env.get(_SET_BY_MEDRL):
        env = {k: v for k, v in env.items() if k not in ("OMP_WAIT_POLICY", _SET_BY_MEDRL)}
    return env


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block (None: unchanged), restored after: for a loop of
    operations too small to share (a small model's decode step), where waking a second thread for each one costs
    more than it saves, most of all under PASSIVE waiting, where the woken thread was asleep."""
    import torch

    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
