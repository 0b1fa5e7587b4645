"""`medrl kg stats` and `medrl kg check FILE`: inspect our KGs and validate a user's own."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    kg = subparsers.add_parser("kg", help="knowledge graphs: stats, validate a user's KG")
    sub = kg.add_subparsers(dest="kg_command", metavar="KG_COMMAND", required=True)
    stats = sub.add_parser("stats", help="count nodes per type and edges per relation")
    stats.add_argument("--kg", default="derm", help="'derm', 'clinical' or a KG file (.json/.graphml/.csv)")
    stats.add_argument("--extend", action="store_true", help="with a file: merge it into the built-in --base KG")
    stats.add_argument("--base", default="derm", help="built-in KG that --extend merges into")
    stats.set_defaults(handler=_stats)
    check = sub.add_parser("check", help="validate a KG file (JSON node-link, GraphML or CSV triples)")
    check.add_argument("file", help="path to the KG file")
    check.set_defaults(handler=_check)


def _load(name: str):
    from .io import BUILTIN, load, load_builtin

    return load_builtin(name) if name in BUILTIN else load(name)


def _print_counts(kg) -> None:
    counts = kg.counts()
    for title, key in (("nodes", "nodes"), ("edges", "edges")):
        total = sum(counts[key].values())
        print(f"{title}: {total}")
        for name, n in sorted(counts[key].items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {name:<22} {n:>5}")


def _stats(args: argparse.Namespace) -> int:
    kg = _load(args.kg)
    if args.extend:
        from .io import load_builtin, merge

        kg = merge(load_builtin(args.base), kg)
    print(f"KG {kg.name}")
    _print_counts(kg)
    return 0


def _check(args: argparse.Namespace) -> int:
    from .io import load

    kg = load(args.file)  # raises KGError with the offending row; the CLI prints it and exits 2
    print(f"OK {args.file}")
    _print_counts(kg)
    return 0
