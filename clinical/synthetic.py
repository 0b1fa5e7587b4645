"""KG-driven clinical vignettes in MedQA format, with structured findings a case environment can reveal.

Record: ``{"question", "options": {"A".."E"}, "answer_idx", "answer", "meta_info": "synthetic",
"findings": {"history", "exam", "labs"}, "finding_ids": {...}, "condition_id", "seed"}``. Findings are sampled from
the condition's KG features (typical ones likely, possible ones sometimes); distractors come from its differential.
"""

from __future__ import annotations

import random

from knowledge_graph.kg import KnowledgeGraph

LETTERS = "ABCDE"
_P = {"typical": 0.85, "possible": 0.35, "atypical": 0.05}
# section -> (KG finding types, at most how many)
SECTIONS = {
    "history": (("symptom",), 4),
    "risk": (("risk_factor",), 2),
    "exam": (("sign",), 3),
    "labs": (("lab_finding", "imaging_finding"), 3),
}
QUESTION = "Which of the following is the most likely diagnosis?"


def _kg(kg: KnowledgeGraph | None) -> KnowledgeGraph:
    if kg is not None:
        return kg
    from knowledge_graph.io import load_builtin

    return load_builtin("clinical")


def _text(kg: KnowledgeGraph, nid: str) -> str:
    node = kg.node(nid)
    return node.get("value") or node["label"]


def _sample(kg: KnowledgeGraph, cid: str, types, k: int, rng: random.Random) -> list[str]:
    feats = kg.features(cid, types=list(types))
    kept = [f.id for f in feats if rng.random() < _P[f.typicality]]
    if not kept and feats:
        kept = [next((f.id for f in feats if f.typicality == "typical"), feats[0].id)]
    return kept[:k]


def _distractors(kg: KnowledgeGraph, cid: str, rng: random.Random, n: int = 4) -> list[str]:
    """Differential first, then same-specialty conditions, then any: plausible wrong answers."""
    ddx = kg.differential(cid)
    rng.shuffle(ddx)
    cats = set(kg.categories(cid))
    same = [c for c in kg.conditions() if c != cid and c not in ddx and cats & set(kg.categories(c))]
    rng.shuffle(same)
    rest = [c for c in kg.conditions() if c != cid and c not in ddx and c not in same]
    rng.shuffle(rest)
    return (ddx + same + rest)[:n]


def make_vignette(kg: KnowledgeGraph, condition: str, rng: random.Random) -> dict:
    """One MedQA-style question for ``condition`` with its structured findings."""
    cid = kg.require(condition, "condition")
    node = kg.node(cid)
    lo, hi = node.get("age", [25, 75])
    age = rng.randint(int(lo), int(hi))
    sex = node.get("sex", "any")
    sex = rng.choice(["female", "male"]) if sex == "any" else sex
    who = {"female": "woman", "male": "man"}[sex] if age >= 18 else {"female": "girl", "male": "boy"}[sex]
    ids = {s: _sample(kg, cid, types, k, rng) for s, (types, k) in SECTIONS.items()}
    hist = [_text(kg, i) for i in ids["history"]]
    risk = [_text(kg, i) for i in ids["risk"]]
    exam = [_text(kg, i) for i in ids["exam"]]
    labs = [_text(kg, i) for i in ids["labs"]]
    article = "An" if str(age).startswith("8") or age in (11, 18) else "A"
    parts = [f"{article} {age}-year-old {who} presents with {_join(hist) or 'nonspecific symptoms'}."]
    if risk:
        parts.append(f"Relevant history: {_join(risk)}.")
    if exam:
        parts.append(f"On examination: {_join(exam)}.")
    if labs:
        parts.append(f"Investigations: {'; '.join(labs)}.")
    parts.append(QUESTION)
    options = [cid, *_distractors(kg, cid, rng)]
    rng.shuffle(options)
    letter = LETTERS[options.index(cid)]
    return {
        "question": " ".join(parts),
        "options": {LETTERS[i]: kg.label(c) for i, c in enumerate(options)},
        "answer_idx": letter,
        "answer": kg.label(cid),
        "meta_info": "synthetic",
        "findings": {"history": hist + risk, "exam": exam, "labs": labs},
        "finding_ids": {"history": ids["history"] + ids["risk"], "exam": ids["exam"], "labs": ids["labs"]},
        "condition_id": cid,
        "age": age,
        "sex": sex,
    }


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def generate_vignettes(
    n: int, seed: int = 0, kg: KnowledgeGraph | None = None, conditions: list[str] | None = None
) -> list[dict]:
    """``n`` vignettes cycling through the conditions (balanced), each with its own seeded RNG."""
    kg = _kg(kg)
    conds = [kg.require(c, "condition") for c in (conditions or kg.conditions())]
    order = random.Random(seed).sample(conds, len(conds))
    out = []
    for i in range(n):
        rec = make_vignette(kg, order[i % len(order)], random.Random(f"{seed}/{i}"))
        rec["seed"] = seed
        out.append(rec)
    return out
