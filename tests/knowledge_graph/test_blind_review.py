"""The blind review set: sentences and answer pairs written by a reviewer who saw only the KGs' node lists
and the defect classes, never the code (tests/knowledge_graph/blind/, committed before the scorer changed).

Sentences: what the claim reader must find (the diagnosis; ids present, absent, hedged; ids that must not read as
present). Pairs: the scorer may abstain, but must never choose the worse answer. Run this file directly for the table
per class and axis: ``python tests/knowledge_graph/test_blind_review.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from knowledge_graph.claims import extract_claims
from knowledge_graph.io import load_builtin
from knowledge_graph.preference import build_pairs

HERE = Path(__file__).parent / "blind"
SENTENCES = [
    json.loads(line) for line in (HERE / "sentences.jsonl").read_text(encoding="utf-8").splitlines() if line
]
PAIRS = [json.loads(line) for line in (HERE / "pairs.jsonl").read_text(encoding="utf-8").splitlines() if line]
_KGS: dict = {}


def kg(name: str):
    if name not in _KGS:
        _KGS[name] = load_builtin(name)
    return _KGS[name]


def sentence_errors(row: dict) -> list[str]:
    """What the reader got wrong in one sentence ([] = right)."""
    claims = [c for c in extract_claims(row["text"], kg(row["kg"])) if c.kind != "unread"]
    exp = row["expect"]
    errors = []
    if "diagnosis" in exp:
        dx = next((c.node_id for c in claims if c.kind == "diagnosis"), None)
        if dx != exp["diagnosis"]:
            errors.append(f"diagnosis {dx} != {exp['diagnosis']}")
    # A family member's or a past condition is not the patient's current one: the reader marks it in the context.
    read = {(c.node_id, "past" if {"historical", "family"} & set(c.context) else c.polarity) for c in claims}
    for pol, key in (("present", "present"), ("absent", "absent"), ("hedged", "hedged")):
        errors += [f"{nid} not read {pol}" for nid in exp.get(key, []) if (nid, pol) not in read]
    errors += [f"{nid} read present" for nid in exp.get("not_present", []) if (nid, "present") in read]
    return errors


def pair_outcome(row: dict) -> str:
    """'better', 'worse' or 'abstain': which answer the DPO pair builder would choose."""
    pairs = build_pairs("prompt", [row["worse"], row["better"]], kg(row["kg"]), row["condition"])
    if not pairs:
        return "abstain"
    return "better" if pairs[0]["chosen"] == row["better"] else "worse"


@pytest.fixture(scope="module")
def outcomes():
    return {
        "sentences": {r["id"]: sentence_errors(r) for r in SENTENCES},
        "pairs": {r["id"]: pair_outcome(r) for r in PAIRS},
    }


def test_the_set_is_big_enough():
    assert len(SENTENCES) >= 80 and len(PAIRS) >= 40
    assert {r["kg"] for r in SENTENCES} == {r["kg"] for r in PAIRS} == {"derm", "clinical"}


def test_no_pair_chooses_the_worse_answer(outcomes):
    worse = [(r["id"], r["better"], r["worse"]) for r in PAIRS if outcomes["pairs"][r["id"]] == "worse"]
    assert not worse, worse


def test_claim_sentences_at_least_90_percent_right(outcomes):
    wrong = {k: v for k, v in outcomes["sentences"].items() if v}
    assert 1 - len(wrong) / len(SENTENCES) >= 0.90, wrong


def test_the_scorer_decides_most_pairs(outcomes):
    """Abstaining is allowed, but a judge that abstains on everything teaches nothing."""
    n = Counter(outcomes["pairs"].values())
    assert n["better"] >= 0.6 * len(PAIRS), n


def report() -> dict:
    """Pass rates overall, per sentence class and per pair axis."""
    sent = {r["id"]: sentence_errors(r) for r in SENTENCES}
    pairs = {r["id"]: pair_outcome(r) for r in PAIRS}
    by_class: dict = {}
    for r in SENTENCES:
        c = by_class.setdefault(r["class"], [0, 0])
        c[0] += not sent[r["id"]]
        c[1] += 1
    by_axis: dict = {}
    for r in PAIRS:
        by_axis.setdefault(r["axis"], Counter())[pairs[r["id"]]] += 1
    return {
        "sentences_right": sum(not v for v in sent.values()),
        "sentences": len(SENTENCES),
        "pairs": dict(Counter(pairs.values())),
        "n_pairs": len(PAIRS),
        "by_class": by_class,
        "by_axis": {k: dict(v) for k, v in by_axis.items()},
        "wrong_sentences": {k: v for k, v in sent.items() if v},
        "worse_pairs": [k for k, v in pairs.items() if v == "worse"],
    }


if __name__ == "__main__":
    import sys

    r = report()
    if "--json" in sys.argv:
        print(json.dumps(r, indent=1))
    else:
        print(
            f"sentences right: {r['sentences_right']}/{r['sentences']} ({r['sentences_right'] / r['sentences']:.0%})"
        )
        print(f"pairs: {r['pairs']} of {r['n_pairs']}")
        for k, (ok, n) in sorted(r["by_class"].items()):
            print(f"  {k:<18} {ok}/{n}")
        for k, v in sorted(r["by_axis"].items()):
            print(f"  {k:<18} {v}")
        if "-v" in sys.argv:
            for k, v in r["wrong_sentences"].items():
                print(k, v)
            print("worse:", r["worse_pairs"])
