"""`medrl bench ...`: side-by-side benchmarks. Registration imports no torch; handlers import what they need."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks: prefix (Prefix-Grouper vs naive), grpo-step (vs TRL), "
        "head (output-head memory), rollout (vs generate)",
    )
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCH")
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])

    prefix = sub.add_parser(
        "prefix", help="forward+backward of completion log-probs: naive vs Prefix-Grouper"
    )
    prefix.add_argument("--p", type=int, default=1024, help="prompt tokens (headline config)")
    prefix.add_argument("--s", type=int, default=128, help="tokens per completion")
    prefix.add_argument("--g", type=int, default=8, help="completions per prompt")
    prefix.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median)")
    prefix.add_argument(
        "--sweep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also P in {256,512,1024} x G in {4,8} at --s",
    )
    prefix.add_argument(
        "--vlm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the VLM row: embedded Qwen2.5-VL, one 448x448 image and a short text, --s, --g",
    )
    prefix.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    prefix.add_argument("--threads", type=int, default=None, help="torch threads (default: available CPUs)")
    prefix.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    prefix.add_argument("--json", action="store_true", help="print JSON instead of a table")
    prefix.set_defaults(handler=_prefix)

    step = sub.add_parser("grpo-step", help="one full RL step: ours vs TRL's GRPOTrainer")
    step.add_argument("--p", type=int, default=512)
    step.add_argument("--g", type=int, default=8)
    step.add_argument("--s", type=int, default=64)
    step.add_argument("--steps", type=int, default=5)
    step.add_argument("--warmup", type=int, default=1)
    step.add_argument("--threads", type=int, default=None)
    step.add_argument("--model", default="embedded:qwen2")
    step.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (both sides)")
    step.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="weights and autocast precision (both sides)",
    )
    step.add_argument("--trl", action=argparse.BooleanOptionalAction, default=True, help="also run TRL")
    step.add_argument("--prompts", type=int, default=1, help="prompts per step (TRL: the same global batch)")
    step.add_argument(
        "--vlm",
        action="store_true",
        help="the VLM row: embedded Qwen2.5-VL (unless --model names another VLM), one 448x448 image per prompt",
    )
    step.add_argument(
        "--profile",
        action="store_true",
        help="also time our step's phases (prefill, decode, rewards, reference, loss forward, "
        "backward, optimizer)",
    )
    step.add_argument("--json", action="store_true")
    step.set_defaults(handler=_grpo_step)

    roll = sub.add_parser("rollout", help="sampling tokens/s: our rollout engine vs model.generate")
    roll.add_argument("--p", type=int, default=512, help="prompt tokens")
    roll.add_argument("--g", type=int, default=8, help="completions per prompt")
    roll.add_argument("--s", type=int, default=128, help="new tokens per completion")
    roll.add_argument("--prompts", type=int, nargs="+", default=[1, 8], help="prompts per call, one row each")
    roll.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up (median)")
    roll.add_argument("--model", default="embedded:qwen2")
    roll.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (both sides)")
    roll.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    roll.add_argument("--threads", type=int, default=None, help="torch threads (default: available CPUs)")
    roll.add_argument(
        "--compile", default="auto", choices=["auto", "on", "off"], help="ours: rollout.compile"
    )
    roll.add_argument("--json", action="store_true", help="print JSON instead of a table")
    roll.set_defaults(handler=_rollout)

    tree = sub.add_parser(
        "tree",
        help="Tree-GRPO: trajectories per generated token (trees vs chains) and the "
        "tree-packed loss forward vs duplicated rows",
    )
    tree.add_argument("--prompts", type=int, default=4, help="case prompts")
    tree.add_argument("--s", type=int, default=32, help="sampled tokens per turn")
    tree.add_argument("--m", type=int, default=2, help="trees per prompt")
    tree.add_argument("--n", type=int, default=2, help="nodes expanded per tree per round")
    tree.add_argument("--l", type=int, default=1, help="expansion rounds")
    tree.add_argument("--k", type=int, default=3, help="leaves kept per tree")
    tree.add_argument("--turns", type=int, default=3, help="turns per trajectory")
    tree.add_argument(
        "--repeats", type=int, default=3, help="timed forward+backward runs after one warm-up (fastest)"
    )
    tree.add_argument(
        "--sweep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure bench.tree.SWEEP's shapes (shorter and longer turns, two rounds)",
    )
    tree.add_argument("--threads", type=int, default=None, help="torch threads (default: available CPUs)")
    tree.add_argument("--seed", type=int, default=0)
    tree.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tree.set_defaults(handler=_tree)

    head = sub.add_parser(
        "head", help="peak memory of the RL loss with the lean output head vs full head vs TRL"
    )
    head.add_argument("--p", type=int, default=512, help="prompt tokens")
    head.add_argument("--s", type=int, default=256, help="tokens per completion")
    head.add_argument("--g", type=int, default=8, help="completions per prompt")
    head.add_argument("--vocab", type=int, default=151936, help="vocabulary of the big-vocabulary model")
    head.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    head.add_argument("--threads", type=int, default=None, help="torch threads (default: available CPUs)")
    head.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    head.add_argument("--json", action="store_true", help="print JSON instead of a table")
    head.set_defaults(handler=_head)

    gpu = sub.add_parser("gpu", help="3B shapes in 4-bit on a CUDA GPU: peak memory, step time, vs TRL")
    gpu.add_argument("--device", default="cuda", help="cuda or cuda:N (cpu only with --shape tiny)")
    gpu.add_argument(
        "--shape", default="3b", choices=["3b", "tiny"], help="tiny: the embedded sizes, a smoke run"
    )
    gpu.add_argument("--steps", type=int, default=4, help="RL steps per run, the first --warmup untimed")
    gpu.add_argument("--warmup", type=int, default=1)
    gpu.add_argument("--g", type=int, default=8, help="completions per prompt")
    gpu.add_argument("--p", type=int, default=512, help="prompt tokens (plus the image's on the VLM)")
    gpu.add_argument("--s", type=int, default=128, help="new tokens per completion")
    gpu.add_argument("--prompts", type=int, default=1, help="prompts per step")
    gpu.add_argument("--quantization", default="4bit", choices=["4bit", "8bit", "none"])
    gpu.add_argument("--trl", action=argparse.BooleanOptionalAction, default=True, help="also run TRL (text)")
    gpu.add_argument("--json", action="store_true")
    gpu.set_defaults(handler=_gpu)

    rep = sub.add_parser(
        "report",
        help="run the CPU benchmarks and write their tables, JSON and this machine into docs/benchmarks.md",
    )
    rep.add_argument(
        "--out", default="docs/benchmarks.md", help="the file whose section for this CPU kind is replaced"
    )
    rep.add_argument("--only", default=None, help="comma-separated bench names (default: all)")
    rep.add_argument("--json", action="store_true", help="print the report as JSON too")
    rep.set_defaults(handler=_report)

    cont = sub.add_parser(
        "contention", help="a short RL run alone, then two at once on the same cores, per OpenMP wait policy"
    )
    cont.add_argument("--steps", type=int, default=8, help="RL steps per job (the first untimed)")
    cont.add_argument(
        "--policies",
        default="PASSIVE,ACTIVE,default",
        help="comma-separated: PASSIVE, ACTIVE (OMP_WAIT_POLICY), default (OpenMP's own), spin:N (GOMP_SPINCOUNT), "
        "threads:N (OMP_NUM_THREADS)",
    )
    cont.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cont.set_defaults(handler=_contention)


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_positive(**values: int) -> None:
    from training.errors import ConfigError

    for key, v in values.items():
        if v is not None and v < 1:
            raise ConfigError(f"--{key}: must be >= 1, got {v}")


def _prefix(args: argparse.Namespace) -> int:
    from bench import prefix

    _check_positive(p=args.p, s=args.s, g=args.g, repeats=args.repeats, threads=args.threads)
    result = prefix.run(
        p=args.p,
        s=args.s,
        g=args.g,
        repeats=args.repeats,
        sweep=args.sweep,
        vlm=args.vlm,
        device=_device(args.device),
        threads=args.threads,
        dtype=args.dtype,
    )
    print(json.dumps(result, indent=2) if args.json else prefix.table(result))
    return 0


def _grpo_step(args: argparse.Namespace) -> int:
    from bench import grpo_step
    from bench.common import available_cpus, resolve_device

    _check_positive(
        p=args.p, g=args.g, s=args.s, steps=args.steps, threads=args.threads, prompts=args.prompts
    )
    result = grpo_step.run(
        p=args.p,
        g=args.g,
        s=args.s,
        steps=args.steps,
        warmup=args.warmup,
        threads=args.threads or available_cpus(),
        model="embedded:qwen25vl" if args.vlm and args.model == "embedded:qwen2" else args.model,
        with_trl=args.trl,
        device=resolve_device(args.device),
        dtype=args.dtype,
        prompts=args.prompts,
        profile=args.profile,
        images=args.vlm,
    )
    print(json.dumps(result, indent=2) if args.json else grpo_step.table(result))
    return 0


def _rollout(args: argparse.Namespace) -> int:
    from bench import rollout
    from bench.common import resolve_device

    _check_positive(
        p=args.p, g=args.g, s=args.s, repeats=args.repeats, threads=args.threads, prompts=min(args.prompts)
    )
    result = rollout.run(
        p=args.p,
        g=args.g,
        s=args.s,
        prompts=tuple(args.prompts),
        repeats=args.repeats,
        threads=args.threads,
        model=args.model,
        device=resolve_device(args.device),
        dtype=args.dtype,
        compile=args.compile,
    )
    print(json.dumps(result, indent=2) if args.json else rollout.table(result))
    return 0


def _gpu(args: argparse.Namespace) -> int:
    """Without CUDA: one line saying so, exit 0 (the figures need a GPU)."""
    import torch

    from bench import gpu

    _check_positive(steps=args.steps, g=args.g, p=args.p, s=args.s, prompts=args.prompts)
    if args.warmup >= args.steps:
        from training.errors import ConfigError

        raise ConfigError(f"--warmup: must be below --steps ({args.steps}), got {args.warmup}")
    if not torch.cuda.is_available() and not (args.shape == "tiny" and args.device == "cpu"):
        result = gpu.run(device="cuda")  # says there is no CUDA device
    else:
        from bench.common import resolve_device

        result = gpu.run(
            shape=args.shape,
            device=resolve_device(args.device),
            steps=args.steps,
            warmup=args.warmup,
            g=args.g,
            p=args.p,
            s=args.s,
            prompts=args.prompts,
            quantization=args.quantization,
            with_trl=args.trl,
        )
    print(json.dumps(result, indent=2) if args.json else gpu.table(result))
    return 0


def _head(args: argparse.Namespace) -> int:
    from bench import head
    from bench.common import resolve_device

    _check_positive(p=args.p, s=args.s, g=args.g, vocab=args.vocab, threads=args.threads)
    result = head.run(
        p=args.p,
        s=args.s,
        g=args.g,
        vocab=args.vocab,
        device=resolve_device(args.device),
        threads=args.threads,
        dtype=args.dtype,
    )
    print(json.dumps(result, indent=2) if args.json else head.table(result))
    return 0


def _tree(args: argparse.Namespace) -> int:
    from bench import tree

    _check_positive(
        prompts=args.prompts,
        s=args.s,
        m=args.m,
        k=args.k,
        turns=args.turns,
        repeats=args.repeats,
        threads=args.threads,
    )
    result = tree.run(
        prompts=args.prompts,
        s=args.s,
        m=args.m,
        n=args.n,
        l=args.l,
        k=args.k,
        turns=args.turns,
        repeats=args.repeats,
        seed=args.seed,
        threads=args.threads,
        sweep=args.sweep,
    )
    print(json.dumps(result, indent=2) if args.json else tree.table(result))
    return 0


def _contention(args: argparse.Namespace) -> int:
    from bench import contention
    from training.errors import ConfigError

    if args.steps < 2:
        raise ConfigError(f"--steps: must be >= 2 (the first is untimed), got {args.steps}")
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    policies = tuple(p.upper() if p.upper() in ("PASSIVE", "ACTIVE") else p for p in policies)
    for p in policies or ("",):
        try:
            contention.policy_env(p)
        except ValueError:
            raise ConfigError(
                f"--policies: expected PASSIVE, ACTIVE, default, spin:N or threads:N, got {args.policies!r}"
            ) from None
    result = contention.run(steps=args.steps, policies=policies)
    print(json.dumps(result, indent=2) if args.json else contention.table(result))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import report

    only = {x.strip() for x in args.only.split(",") if x.strip()} if args.only else None
    result = report.run_all(only, log=lambda line: print(line, file=sys.stderr))
    path = report.write(result, Path(args.out))
    print(json.dumps(result, indent=2) if args.json else report.section(result))
    print(f"medrl bench report: written to {path}", file=sys.stderr)
    return 0 if all("result" in r for r in result["benches"]) else 1
