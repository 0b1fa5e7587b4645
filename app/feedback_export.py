"""`medrl feedback export | stats`: clinicians' verdicts back into training, and how often they agree with the KG.

export writes TRL-format DPO records (prompt, chosen, rejected, images), each with its provenance in
``meta.feedback`` (where the pair came from, who judged it, the votes), for `medrl dermiq train --stages dpo --pairs
FILE` or any DPO trainer:
- ``--source clinician``: the reviewed pairs as the reviewers decided them: the majority of the reviewers' verdicts on a
  pair (keep: as the KG had it; swap: reversed; reject: left out; a tie is left out), when at least
  ``--min-agreement`` reviewers gave that verdict; plus every live answer a reviewer corrected (the correction chosen
  over the model's answer);
- ``--source kg``: the same reviewed pairs as the KG judged them (the comparison set);
- ``--source both``: every pair of the pair files the reviews came from, reviewed ones as the reviewers decided
  them and the rest as the KG did, plus the corrections.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from .feedback import FeedbackStore

SOURCES = ("clinician", "kg", "both")
DEFAULT_DB = "runs/feedback.sqlite"


def _as_message(prompt, text: str):
    """A completion in the prompt's layout: a one-message assistant turn for a chat prompt, else the text."""
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def _pair(prompt, images, chosen: str, rejected: str, feedback: dict) -> dict:
    return {
        "prompt": prompt,
        "chosen": _as_message(prompt, chosen),
        "rejected": _as_message(prompt, rejected),
        "images": list(images or []),
        "meta": {"feedback": feedback},
    }


def decide(verdicts: list[str], min_agreement: int) -> str | None:
    """The reviewers' decision on one pair: the most common verdict, if no other ties it and at least
    ``min_agreement`` reviewers gave it; else None."""
    counts = Counter(verdicts).most_common()
    if not counts or counts[0][1] < min_agreement or (len(counts) > 1 and counts[1][1] == counts[0][1]):
        return None
    return counts[0][0]


def export_pairs(
    store: FeedbackStore, source: str = "clinician", min_agreement: int = 1
) -> tuple[list[dict], dict]:
    """(DPO records, counts) from the store; see the module docstring for what each source means."""
    if source not in SOURCES:
        raise ValueError(f"--source: expected one of {', '.join(SOURCES)}, got {source!r}")
    reviewed: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in store.rows("pair"):
        reviewed[(r["source"], r["line"])].append(r)
    out, counts = [], Counter()

    def reviewed_pair(rows: list[dict]) -> dict | None:
        first = rows[0]
        votes = Counter(r["verdict"] for r in rows)
        feedback = {
            "source": first["source"],
            "line": first["line"],
            "votes": dict(votes),
            "reviewers": sorted(r["reviewer"] for r in rows),
            "condition": first["condition"],
        }
        if source == "kg":
            counts["kg"] += 1
            return _pair(
                first["prompt"],
                first["images"],
                first["chosen"],
                first["rejected"],
                {**feedback, "from": "kg"},
            )
        decision = decide([r["verdict"] for r in rows], min_agreement)
        counts[f"decided {decision}" if decision else "undecided"] += 1
        if decision in (None, "reject"):
            return None
        chosen, rejected = (
            (first["chosen"], first["rejected"])
            if decision == "keep"
            else (first["rejected"], first["chosen"])
        )
        return _pair(
            first["prompt"],
            first["images"],
            chosen,
            rejected,
            {**feedback, "from": "clinician", "decision": decision},
        )

    if source == "both":
        for file in sorted({src for src, _ in reviewed}):
            path = Path(file)
            if not path.is_file():
                counts["pair file missing"] += 1
                continue
            for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if (file, line) in reviewed:
                    item = reviewed_pair(reviewed[(file, line)])
                else:
                    rec = json.loads(text)
                    meta = {
                        **(rec.get("meta") or {}),
                        "feedback": {"source": file, "line": line, "from": "kg"},
                    }
                    item = {**rec, "meta": meta}
                    counts["kg (unreviewed)"] += 1
                if item is not None:
                    out.append(item)
    else:
        for key in sorted(reviewed):
            item = reviewed_pair(reviewed[key])
            if item is not None:
                out.append(item)
    if source in ("clinician", "both"):
        for r in store.rows("answer"):
            if r["correction"] and r["verdict"] in ("wrong", "unsafe"):
                feedback = {
                    "source": r["source"],
                    "line": r["line"],
                    "from": "correction",
                    "verdict": r["verdict"],
                    "reviewers": [r["reviewer"]],
                    "adapter": r["adapter"],
                }
                out.append(_pair(r["prompt"], r["images"], r["correction"], r["rejected"], feedback))
                counts["corrections"] += 1
    return out, dict(counts)


def register(sub) -> None:
    p = sub.add_parser(
        "feedback", help="clinicians' verdicts: export them as DPO pairs, or their agreement with the KG"
    )
    s = p.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    e = s.add_parser("export", help="write the verdicts as TRL-format DPO pairs with their provenance")
    e.add_argument("--db", default=DEFAULT_DB, help=f"the app's feedback store (default {DEFAULT_DB})")
    e.add_argument("--out", required=True, help="the DPO JSONL to write")
    e.add_argument("--source", choices=SOURCES, default="clinician")
    e.add_argument(
        "--min-agreement", type=int, default=1, help="reviewers who must give the majority verdict"
    )
    e.set_defaults(handler=_export)
    st = s.add_parser("stats", help="how often the reviewers agreed with the KG, overall and per condition")
    st.add_argument("--db", default=DEFAULT_DB)
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=_stats)


def _store(args: argparse.Namespace) -> FeedbackStore:
    if not Path(args.db).is_file():
        raise FileNotFoundError(2, "no feedback store (review pairs in the app first)", args.db)
    return FeedbackStore(args.db)


def _export(args: argparse.Namespace) -> int:
    from training.data.records import write_jsonl
    from training.errors import DataError

    if args.min_agreement < 1:
        raise DataError(f"--min-agreement: expected an integer >= 1, got {args.min_agreement}")
    records, counts = export_pairs(_store(args), args.source, args.min_agreement)
    write_jsonl(args.out, records)
    print(
        f"{len(records)} pairs -> {args.out} ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items())) or 'none'})"
    )
    return 0


def _stats(args: argparse.Namespace) -> int:
    a = _store(args).agreement()
    if args.json:
        print(json.dumps(a, indent=1))
        return 0

    def line(name: str, s: dict) -> str:
        agree = "n/a" if s["agreement"] is None else f"{s['agreement']:.3f}"
        return f"{name:<28}{agree:>10}{s['keep']:>6}{s['swap']:>6}{s['reject']:>8}"

    print(f"{'':<28}{'agreement':>10}{'keep':>6}{'swap':>6}{'reject':>8}")
    print(line("all pairs", a["overall"]))
    for name, s in a["per_condition"].items():
        print(line(name, s))
    return 0
