"""`medrl train RECIPE [--key=value ...] [--resume]`, `medrl recipes [--data]` and `medrl export RUN_DIR --out DIR
[--merge]`. RECIPE is a shipped recipe's name or a YAML path (`training.recipes.resolve`)."""

from __future__ import annotations

import argparse
import json


def run_recipe(path: str | None, overrides: list[str], resume: bool = False) -> dict:
    """Load a recipe, pick its trainer, train; returns the last metrics."""
    from training.config import load_config, merge, parse_overrides, read_yaml
    from training.recipes import resolve
    from training.trainers.trainer_kinds import check_trainer, config_class, train_function

    path = str(resolve(path)) if path else None
    raw = merge(read_yaml(path) if path else {}, parse_overrides(overrides))
    name = check_trainer(raw.get("trainer", "sft"), str(path))
    cfg = load_config(config_class(name), path, overrides)
    return train_function(name)(cfg, resume=resume)


def _train(args: argparse.Namespace) -> int:
    from training.trainers.session import graceful_interrupt

    with graceful_interrupt():
        last = run_recipe(args.config, args.overrides, resume=args.resume)
    print(json.dumps({k: v for k, v in last.items() if isinstance(v, (int, float, str))}))
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from training import recipes

    if args.data:
        written = recipes.write_data(args.out, seed=args.seed)
        print(
            f"wrote {len(written)} files under {args.out}/ (the single-stage tiny recipes read {recipes.DATA_DIR}/):"
        )
        for name in written:
            print(f"  {name}")
        return 0
    paths = recipes.recipe_paths()
    width = max(len(p.stem) for p in paths)
    for p in paths:
        print(f"{p.stem:<{width}}  {recipes.header(p)}")
    print(
        f"\n{len(paths)} recipes in {recipes.RECIPES_DIR}; `medrl train NAME` runs one (a pipeline recipe: "
        "`medrl dermiq train --recipe NAME`, `medrl clinical train --recipe NAME`, "
        "`medrl clinical tree-ablate --recipe NAME` for the case pipeline)."
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.export import export_run

    result = export_run(args.run_dir, args.out, merge=args.merge, dtype=args.dtype)
    print(json.dumps(result, indent=2))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train from a YAML recipe (--key=value overrides, --resume)")
    p.add_argument(
        "config",
        metavar="RECIPE",
        help="a shipped recipe's name (`medrl recipes` lists them, e.g. sft_qwen2_tiny) or a YAML file",
    )
    p.add_argument("--resume", action="store_true", help="continue runs/<name>/ from its latest checkpoint")
    p.set_defaults(handler=_train, accepts_overrides=True)

    p = sub.add_parser(
        "recipes",
        help="list the shipped recipes with their first header line (--data: write the "
        "data the tiny recipes read)",
    )
    p.add_argument(
        "--data",
        action="store_true",
        help="write the data the single-stage tiny recipes read "
        "(toy prompts, SFT records, DPO pairs, cases, synthetic lesions) instead of listing",
    )
    p.add_argument(
        "--out", default="runs/demo_data", help="where --data writes (the recipes read runs/demo_data)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data --data writes")
    p.set_defaults(handler=_recipes)

    p = sub.add_parser("export", help="export a run's LoRA adapter (and optionally a merged 16-bit model)")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="folder to write the adapter (and merged/) into")
    p.add_argument("--merge", action="store_true", help="also merge onto a 16-bit copy of the base")
    p.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32"],
        help="dtype of the merged model",
    )
    p.set_defaults(handler=_export)
