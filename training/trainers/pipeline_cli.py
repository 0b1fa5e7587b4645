"""The commands every pipeline offers (`medrl <domain> train|eval|ablate`), wired once.

A domain's `cli.py` adds its subcommands with these argument groups and passes its pipeline (`training.trainers.pipeline`),
its evaluation and its tables to the handlers here, so the flags, the recipe they build (recipe file, `--key=value`
overrides, then the flags) and the printed result mean the same in every domain. Importing this module imports no
torch (command registration must stay fast); the handlers import what they run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from training.errors import DataError


def add_recipe_args(
    p: argparse.ArgumentParser, out: str, recipe_help: str, data_help: str, steps_help: str
) -> None:
    """The flags that pick and adjust a pipeline recipe: --recipe, --data, --out, --seed, --steps."""
    p.add_argument("--recipe", default="tiny", help=recipe_help)
    p.add_argument("--data", default=None, help=data_help)
    p.add_argument("--out", default=out, help="output folder: one run folder per stage")
    p.add_argument(
        "--seed", type=int, default=None, help="data and training seed (the recipe's pipeline.seed)"
    )
    p.add_argument("--steps", type=int, default=None, help=steps_help)


def add_train_args(p: argparse.ArgumentParser, stages_help: str) -> None:
    """--stages, --start-adapter, --eval (and --no-eval, the same as --eval none), --json."""
    p.add_argument("--stages", default=None, help=stages_help)
    p.add_argument(
        "--start-adapter",
        default=None,
        help="adapter the first stage starts from when no earlier stage is finished in --out",
    )
    p.add_argument(
        "--eval",
        choices=["last", "all", "none"],
        default="last",
        help="evaluate the last stage, every stage run, or none on the held-out test.jsonl",
    )
    p.add_argument(
        "--no-eval", dest="eval", action="store_const", const="none", help="the same as --eval none"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_eval_args(p: argparse.ArgumentParser, run_example: str, data_help: str, default_tokens: int) -> None:
    """RUN, --data, --limit, --max-new-tokens, --tag, --json."""
    p.add_argument("run", help=f"a run folder, e.g. {run_example}")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N records")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help=f"default: the run's task card or rollout length, else {default_tokens}",
    )
    p.add_argument(
        "--tag", default="metrics", help="file names under eval/: TAG.json and its tables (default: metrics)"
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def add_ablate_args(p: argparse.ArgumentParser, seeds: str, arms: str, where: str) -> None:
    """--seeds, --arms (default ``arms``; ``where`` says what each arm changes), --limit, --json."""
    p.add_argument("--seeds", default=seeds, help="comma-separated RL seeds")
    p.add_argument("--arms", default=arms, help=f"comma-separated arms, or all ({where}: what each changes)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="held-out records evaluated (default: the recipe's pipeline.eval_limit)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON (default: a table)")


def parse_arms(value: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """--arms as a tuple of known arm names, in the order given; ``all`` is every arm."""
    if value.strip() == "all":
        return names
    arms = tuple(a.strip() for a in value.split(",") if a.strip())
    unknown = [a for a in arms if a not in names]
    if not arms or unknown:
        raise DataError(f"--arms: expected arms from {', '.join(names)} (or all), got {value!r}")
    return arms


def recipe_from_args(
    pipeline,
    args: argparse.Namespace,
    settings: tuple[str, ...],
    steps: dict[str, int | None],
    extra: dict | None = None,
) -> dict:
    """The recipe the command runs: the file with its `--key=value` overrides, then the flags: each of
    ``settings`` (pipeline keys, same-named flags) that was given, ``steps`` ({stage: max_steps or None}), ``extra``."""
    from training.config import merge

    raw = pipeline.load_recipe(args.recipe, args.overrides)
    pipe = {k: getattr(args, k) for k in settings if getattr(args, k) is not None}
    runs = {stage: {"run": {"max_steps": n}} for stage, n in steps.items() if n}
    return merge(raw, merge({"pipeline": pipe, **runs}, extra or {}))


def train(
    pipeline,
    args: argparse.Namespace,
    recipe: Callable[[argparse.Namespace, dict], dict],
    metrics_table: Callable[[dict], str],
) -> int:
    """`train`: the recipe's stages (--stages, --start-adapter), then the evaluation --eval asks for; prints each
    stage's run and adapter and the metrics tables (or the whole result as JSON)."""
    extra: dict = {"pipeline": {}}
    if args.stages:
        extra["pipeline"]["stages"] = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.start_adapter:
        extra["pipeline"]["start_adapter"] = args.start_adapter
    result = pipeline.run(recipe(args, extra), args.out, evaluate=args.eval)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for stage, path in result["runs"].items():
        print(f"{stage}: {path} (adapter {result['adapters'][stage]})")
    for stage, m in (result.get("eval") or {}).items():
        print(f"\n[{stage}] " + metrics_table(m))
    return 0


def show(result: dict, as_json: bool, table: Callable[[dict], str]) -> int:
    """Print an evaluation's or an ablation's result: as JSON, or its table."""
    print(json.dumps(result, indent=2) if as_json else table(result))
    return 0
