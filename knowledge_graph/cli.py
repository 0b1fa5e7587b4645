"""`medrl kg stats|check|claims|score|audit`: inspect our KGs, validate a user's own, and see how a text is judged."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def register(subparsers) -> None:
    kg = subparsers.add_parser(
        "kg", help="knowledge graphs: stats, validate a user's KG, check and score text"
    )
    sub = kg.add_subparsers(dest="kg_command", metavar="KG_COMMAND", required=True)
    stats = sub.add_parser("stats", help="count nodes per type, edges per relation and specific citations")
    stats.add_argument("--kg", default="derm", help="'derm', 'clinical' or a KG file (.json/.graphml/.csv)")
    stats.add_argument(
        "--extend", action="store_true", help="with a file: merge it into the built-in --base KG"
    )
    stats.add_argument("--base", default="derm", help="built-in KG that --extend merges into")
    stats.set_defaults(handler=_stats)
    check = sub.add_parser("check", help="validate a KG file (JSON node-link, GraphML or CSV triples)")
    check.add_argument("file", help="path to the KG file")
    check.set_defaults(handler=_check)
    audit = sub.add_parser(
        "audit", help="review a DPO pair file (or a run's) pair by pair: axes, parts, deciding sentences"
    )
    audit.add_argument(
        "path", metavar="RUN_OR_PAIRS_FILE", help="a dpo_pairs.jsonl, or a run folder holding one"
    )
    audit.add_argument("--html", metavar="OUT", help="also write the review as an HTML page")
    audit.set_defaults(handler=_audit)
    for name, handler, text in (
        ("claims", _claims, "each claim in TEXT with its node, polarity and verdict"),
        ("score", _score, "the preference score of TEXT and its parts"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("text", metavar="TEXT", help="the answer to check (quote it)")
        p.add_argument("--kg", default="derm", help="'derm', 'clinical' or a KG file")
        p.add_argument("--condition", required=True, help="the true condition (id, label or alias)")
        p.add_argument("--case", help='JSON file with the case\'s findings, e.g. {"colour": ["colour:red"]}')
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.set_defaults(handler=handler)


def _load(name: str):
    from .io import BUILTIN, load, load_builtin

    return load_builtin(name) if name in BUILTIN else load(name)


def _case(path: str | None) -> dict | None:
    from .errors import KGError

    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KGError(f"{path}: no such case file") from None
    except json.JSONDecodeError as e:
        raise KGError(f"{Path(path).name} line {e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise KGError(
            f'{Path(path).name}: expected an object of finding lists, e.g. {{"colour": ["colour:red"]}}'
        )
    return data.get("findings", data) if isinstance(data.get("findings"), dict) else data


def _print_counts(kg) -> None:
    from .citations import citation_counts, management_source_counts

    counts = kg.counts()
    for title, key in (("nodes", "nodes"), ("edges", "edges")):
        total = sum(counts[key].values())
        print(f"{title}: {total}")
        for name, n in sorted(counts[key].items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {name:<22} {n:>5}")
    specific, total = citation_counts(kg.edges())
    print(f"specific citations: {specific}/{total} edges ({100 * specific / max(1, total):.0f}%)")
    print("management edges with a checkable source (guideline id + year + section, or PMID/DOI):")
    for rel, (ok, n) in management_source_counts(kg).items():
        print(f"  {rel:<22} {ok:>5}/{n:<5} without: {n - ok}")


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


def _audit(args: argparse.Namespace) -> int:
    from .audit import audit

    print(audit(args.path, args.html))
    if args.html:
        print(f"wrote {args.html}")
    return 0


def _claims(args: argparse.Namespace) -> int:
    from .claims import check_text, diagnosis

    kg = _load(args.kg)
    cond = kg.require(args.condition, "condition")
    verdicts = check_text(args.text, kg, cond, _case(args.case))
    dx = diagnosis([v.claim for v in verdicts])
    if args.json:
        print(
            json.dumps(
                {"condition": cond, "diagnosis": dx, "claims": [v.to_dict() for v in verdicts]},
                ensure_ascii=False,
            )
        )
        return 0
    print(f"condition: {kg.label(cond)} ({cond})")
    print(f"diagnosis: {dx or 'none'}")
    for v in verdicts:
        c = v.claim
        print(f"  {c.kind:<12} {c.node_id:<44} {c.polarity:<8} {v.verdict:<13} {v.reason}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from .preference import score_response

    kg = _load(args.kg)
    cond = kg.require(args.condition, "condition")
    s = score_response(args.text, kg, cond, _case(args.case))
    if args.json:
        print(json.dumps({"condition": cond, **asdict(s)}, ensure_ascii=False))
        return 0
    print(f"condition: {kg.label(cond)} ({cond})")
    print(f"score: {s.total}  correct: {s.correct}  safe: {s.safe}  diagnosis: {s.diagnosis or 'none'}")
    for name, value in s.parts.items():
        print(f"  {name:<13} {value:+.2f}")
    return 0
