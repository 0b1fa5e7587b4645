"""`medrl clinical synth`: MedQA-format synthetic vignettes from the clinical KG."""

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
