"""`medrl dermiq synth`: KG-driven synthetic lesion images + RL records, optionally a contact sheet;
`medrl dermiq import`: HAM10000 / Fitzpatrick17k / SCIN / DermNet / JSONL -> RL records split into train/val/test."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("dermiq", help="DermIQ dermatology data and pipeline")
    sub = p.add_subparsers(dest="dermiq_command", metavar="DERMIQ_COMMAND", required=True)
    s = sub.add_parser("synth", help="write synthetic lesion images + records.jsonl from the dermatology KG")
    s.add_argument("--out", required=True, help="output folder (images/, records.jsonl, contact_sheet.png)")
    s.add_argument("--n-per-class", type=int, default=20, help="images per condition")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=112, help="image side in pixels")
    s.add_argument("--conditions", default=None, help="comma-separated condition names or ids (default: 13 classes)")
    s.add_argument("--kg", default="derm", help="'derm' or a KG file whose conditions/features drive the images")
    s.add_argument("--preview", action="store_true", help="also write contact_sheet.png (one row per condition)")
    s.set_defaults(handler=_synth)
    i = sub.add_parser("import", help="convert HAM10000 / Fitzpatrick17k / SCIN / DermNet / JSONL into RL records")
    i.add_argument("format", choices=["ham10000", "fitzpatrick17k", "scin", "dermnet", "jsonl"])
    i.add_argument("path", help="the data set's folder (or its metadata CSV; for jsonl the file)")
    i.add_argument("--out", required=True, help="output folder: train.jsonl, val.jsonl, test.jsonl (images referenced)")
    i.add_argument("--val-frac", type=float, default=0.1, help="share of lesions/cases for val")
    i.add_argument("--test-frac", type=float, default=0.1, help="share for test (unless the source has a test split)")
    i.add_argument("--seed", type=int, default=0, help="split seed")
    i.add_argument("--kg", default="derm", help="'derm' or a KG file whose conditions the labels map to")
    i.add_argument("--max-pixels", type=int, default=None, help="skip images with more pixels (default 40,000,000)")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(handler=_import)


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
    summary = import_data(args.format, args.path, args.out, val_frac=args.val_frac, test_frac=args.test_frac,
                          seed=args.seed, kg=kg, max_pixels=args.max_pixels or MAX_PIXELS)
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else summary_table(summary))
    return 0
