"""`medrl dermiq synth`: KG-driven synthetic lesion images + RL records, optionally a contact sheet;
`medrl dermiq import`: HAM10000 / Fitzpatrick17k / SCIN / DermNet / JSONL -> RL records split into train/val/test;
`medrl dermiq train`: warm-up -> GRPO++ -> SFT -> KG-DPO, one run per stage (`dermiq.pipeline`); `medrl dermiq eval`:
balanced accuracy, ISIC-style class probabilities, format and KG-faithfulness (`dermiq.evaluate`);
`medrl dermiq ablate`: GRPO vs the GRPO++ readings from one start at G=3 (`dermiq.ablate`)."""

from __future__ import annotations

import argparse

from training.trainers import pipeline_cli as cli


def register(subparsers) -> None:
    p = subparsers.add_parser("dermiq", help="DermIQ dermatology data and pipeline")
    sub = p.add_subparsers(dest="dermiq_command", metavar="DERMIQ_COMMAND", required=True)
    s = sub.add_parser("synth", help="write synthetic lesion images + records.jsonl from the dermatology KG")
    s.add_argument("--out", required=True, help="output folder (images/, records.jsonl, contact_sheet.png)")
    s.add_argument("--n-per-class", type=int, default=20, help="images per condition")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=112, help="image side in pixels")
    s.add_argument(
        "--conditions", default=None, help="comma-separated condition names or ids (default: 13 classes)"
    )
    s.add_argument(
        "--kg", default="derm", help="'derm' or a KG file whose conditions/features drive the images"
    )
    s.add_argument(
        "--preview", action="store_true", help="also write contact_sheet.png (one row per condition)"
    )
    s.set_defaults(handler=_synth)
    i = sub.add_parser(
        "import", help="convert HAM10000 / Fitzpatrick17k / SCIN / DermNet / JSONL into RL records"
    )
    i.add_argument("format", choices=["ham10000", "fitzpatrick17k", "scin", "dermnet", "jsonl"])
    i.add_argument("path", help="the data set's folder (or its metadata CSV; for jsonl the file)")
    i.add_argument(
        "--out", required=True, help="output folder: train.jsonl, val.jsonl, test.jsonl (images referenced)"
    )
    i.add_argument("--val-frac", type=float, default=0.1, help="share of lesions/cases for val")
    i.add_argument(
        "--test-frac", type=float, default=0.1, help="share for test (unless the source has a test split)"
    )
    i.add_argument("--seed", type=int, default=0, help="split seed")
    i.add_argument("--kg", default="derm", help="'derm' or a KG file whose conditions the labels map to")
    i.add_argument(
        "--max-pixels", type=int, default=None, help="skip images with more pixels (default 40,000,000)"
    )
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(handler=_import)
    t = sub.add_parser("train", help="warm-up -> GRPO++ -> SFT -> KG-DPO, each stage its own run and adapter")
    _recipe_args(t, "runs/dermiq")
    cli.add_train_args(
        t,
        "comma-separated stages, e.g. grpo++,sft,dpo or dpo (default: the recipe's; a stage starts "
        "from the nearest earlier stage's adapter in --out)",
    )
    t.add_argument(
        "--pairs",
        default=None,
        help="DPO stage: train on this pair file (e.g. from `medrl feedback export`) instead of the KG-judged pairs",
    )
    t.set_defaults(handler=_train, accepts_overrides=True)
    pr = sub.add_parser(
        "pairs",
        help="write the KG-judged DPO pairs from the SFT stage in --out, to review with "
        "`medrl kg audit` before `train --stages dpo`",
    )
    _recipe_args(pr, "runs/dermiq")
    pr.set_defaults(handler=_pairs, accepts_overrides=True)
    e = sub.add_parser(
        "eval", help="a run's adapter on held-out lesions: balanced accuracy, ISIC CSV -> RUN/eval/"
    )
    cli.add_eval_args(
        e, "runs/dermiq/dpo", "RL records (JSONL), e.g. DIR/test.jsonl from medrl dermiq import", 160
    )
    e.add_argument("--vote", type=int, default=0, help="also the majority answer of K samples (K >= 2)")
    e.add_argument("--vote-temperature", type=float, default=0.7)
    e.set_defaults(handler=_eval)
    a = sub.add_parser(
        "ablate", help="plain GRPO to GRPO++ and its variants, one change per arm, from the same start at G=3"
    )
    _recipe_args(a, "runs/dermiq_ablation")
    cli.add_ablate_args(a, "0,1,2", "all", "dermiq/ablate.py")
    a.add_argument("--group-size", type=int, default=3, help="G, samples per prompt")
    a.set_defaults(handler=_ablate, accepts_overrides=True)


def _recipe_args(p, out: str) -> None:
    cli.add_recipe_args(
        p,
        out,
        "tiny (embedded Qwen2.5-VL, CPU), 3b (Qwen2.5-VL-3B, QLoRA, 12 GB GPU), a shipped "
        "pipeline recipe's name (`medrl recipes`) or a pipeline YAML",
        "folder from `medrl dermiq import` (train.jsonl, test.jsonl); default: the recipe's "
        "('synthetic': KG-driven lesions)",
        "GRPO++ steps (of the stage, or of each ablation arm)",
    )


def _recipe(args: argparse.Namespace, extra: dict | None = None) -> dict:
    from .pipeline import PIPELINE

    settings = ("data", "seed", "pairs") if hasattr(args, "pairs") else ("data", "seed")
    return cli.recipe_from_args(PIPELINE, args, settings, {"grpo++": args.steps}, extra)


def _train(args: argparse.Namespace) -> int:
    from .evaluate import metrics_table
    from .pipeline import PIPELINE

    return cli.train(PIPELINE, args, _recipe, metrics_table)


def _pairs(args: argparse.Namespace) -> int:
    from .pipeline import write_pairs

    path = write_pairs(_recipe(args), args.out)
    print(f"review them: medrl kg audit {path}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from training.errors import DataError

    from .evaluate import evaluate_run, metrics_table

    if args.vote == 1 or args.vote < 0:
        raise DataError(f"--vote: expected 0 (off) or K >= 2 samples, got {args.vote}")
    m = evaluate_run(
        args.run,
        args.data,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        tag=args.tag,
        vote=args.vote,
        vote_temperature=args.vote_temperature,
    )
    return cli.show(m, args.json, metrics_table)


def _ablate(args: argparse.Namespace) -> int:
    from training.config import parse_seeds
    from training.errors import DataError

    from .ablate import ARMS, run_ablation, table

    seeds = parse_seeds(args.seeds)
    arms = cli.parse_arms(args.arms, ARMS)
    if args.group_size < 2:
        raise DataError(f"--group-size: expected an integer >= 2, got {args.group_size}")
    result = run_ablation(_recipe(args), args.out, seeds, arms, args.group_size, limit=args.limit)
    return cli.show(result, args.json, table)


def _synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from knowledge_graph.io import BUILTIN, load, load_builtin
    from training.errors import DataError

    from .synthetic import contact_sheet, generate_dataset

    if args.n_per_class < 1 or args.size < 16:
        raise DataError(f"--n-per-class must be >= 1 and --size >= 16 (got {args.n_per_class}, {args.size})")
    kg = load_builtin(args.kg) if args.kg in BUILTIN else load(args.kg)
    conds = [c.strip() for c in args.conditions.split(",")] if args.conditions else None
    records = generate_dataset(args.out, conds, args.n_per_class, args.seed, args.size, kg=kg)
    print(f"wrote {len(records)} images and {Path(args.out) / 'records.jsonl'}")
    if args.preview:
        sheet = contact_sheet(Path(args.out) / "contact_sheet.png", conds, seed=args.seed, kg=kg)
        print(f"wrote {sheet}")
    return 0


def _import(args: argparse.Namespace) -> int:
    import json

    from knowledge_graph.io import BUILTIN, load, load_builtin

    from .data import MAX_PIXELS, import_data, summary_table

    kg = load_builtin(args.kg) if args.kg in BUILTIN else load(args.kg)
    summary = import_data(
        args.format,
        args.path,
        args.out,
        val_frac=args.val_frac,
        test_frac=args.test_frac,
        seed=args.seed,
        kg=kg,
        max_pixels=args.max_pixels or MAX_PIXELS,
    )
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else summary_table(summary))
    return 0
