"""`medrl clinical synth`: MedQA-format synthetic vignettes from the clinical KG; `medrl clinical import`: clinical QA
data sets (or the vignette bank) -> RL records split into train/val/test."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("clinical", help="Clinical-R1 data and pipeline")
    sub = p.add_subparsers(dest="clinical_command", metavar="CLINICAL_COMMAND", required=True)
    s = sub.add_parser("synth", help="write MedQA-format vignettes (JSONL) from the clinical KG")
    s.add_argument("--out", required=True, help="output JSONL file")
    s.add_argument("--n", type=int, default=200, help="number of vignettes")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--kg", default="clinical", help="'clinical' or a KG file")
    s.set_defaults(handler=_synth)
    i = sub.add_parser("import", help="convert MedQA / MedMCQA / PubMedQA / MedXpertQA / vignettes into RL records")
    i.add_argument("format", choices=["medqa", "medmcqa", "pubmedqa", "medxpertqa", "vignettes"])
    i.add_argument("path", nargs="?", default=None,
                   help="a file or a folder of .json/.jsonl files; for vignettes 'embedded' (default) or a synth JSONL")
    i.add_argument("--out", required=True, help="output folder: train.jsonl, val.jsonl, test.jsonl")
    i.add_argument("--val-frac", type=float, default=0.1, help="share of pooled rows for val (if no file is a val split)")
    i.add_argument("--test-frac", type=float, default=0.1,
                   help="share of pooled rows for test (if no file is a test split)")
    i.add_argument("--seed", type=int, default=0, help="split seed (and the vignette bank's seed)")
    i.add_argument("--n", type=int, default=500, help="vignettes to generate for 'vignettes embedded'")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(handler=_import)


def _synth(args: argparse.Namespace) -> int:
    from knowledge_graph.io import BUILTIN, load, load_builtin
    from training.data import write_jsonl
    from training.errors import DataError

    from .synthetic import generate_vignettes

    if args.n < 1:
        raise DataError(f"--n must be >= 1 (got {args.n})")
    kg = load_builtin(args.kg) if args.kg in BUILTIN else load(args.kg)
    path = Path(args.out)
    write_jsonl(path, generate_vignettes(args.n, args.seed, kg))
    print(f"wrote {args.n} vignettes to {path}")
    return 0


def _import(args: argparse.Namespace) -> int:
    import json

    from training.errors import DataError

    from .data import import_data, summary_table

    if args.path is None and args.format != "vignettes":
        raise DataError(f"clinical import {args.format}: give the PATH of the data file or folder")
    summary = import_data(args.format, args.path or "embedded", args.out, val_frac=args.val_frac,
                          test_frac=args.test_frac, seed=args.seed, n=args.n)
    print(json.dumps(summary, indent=2) if args.json else summary_table(summary))
    return 0
