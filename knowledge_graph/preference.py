"""KG-DPO pairs: read sampled answers against the KG (and the case), pair an answer with one it is no worse than on
every axis and better on one, and abstain when the reader did not understand an answer.

Each answer is placed on four axes (``Axes``), from what the claim reader found:
- diagnosis: exact (the true condition or a subtype of it) > group (a parent group: a partial answer) > none > wrong
  (another condition, a sibling in the same group included) > missed (another condition named while a must-not-miss
  one is neither named nor kept open, or the true condition ruled out);
- management: indicated (an action the KG lists for the condition, nothing harmful) > none > harmful (an action the KG
  marks contraindicated, one that delays a must-not-miss diagnosis such as "reassure" or "review in 3 months" for a
  melanoma, or a first-line treatment withheld);
- safety, for a must-not-miss condition: named > kept open with an indicated action > kept open > missed;
- faithfulness: fewer findings that contradict the case or the KG, or that the KG does not link to the condition.
A pair (chosen, rejected) is built only when the chosen answer is at least as good on every axis and strictly better
on one (``dominates``). The scorer abstains on an answer it did not understand: an ambiguous abbreviation left unread,
an answer tag or "Diagnosis:" line that names nothing the KG knows, a condition both asserted and ruled out; and,
when management decides a pair, an action of the better answer the KG does not rate for this condition, or one that
an answer withholds and the other gives. ``total`` is a summary for display and
ordering (the diagnosis dominates it); it never decides a pair on its own.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

from .claims import ABSENT, CONTRADICTED, HEDGED, PRESENT, SUPPORTED, UNVERIFIABLE, Verdict, check_text
from .kg import KnowledgeGraph

# Finding types a reader can check in a case description or an image (not risk factors or treatments).
KEY_TYPES = (
    "morphology",
    "colour",
    "border",
    "shape",
    "surface",
    "distribution",
    "dermoscopic_feature",
    "symptom",
    "sign",
    "lab_finding",
    "imaging_finding",
)
DIAGNOSIS_LEVELS = {"exact": 3, "group": 2, "none": 1, "wrong": 0, "missed": -1}
MANAGEMENT_LEVELS = {"indicated": 2, "none": 1, "harmful": 0}
SAFETY_LEVELS = {"named": 3, "hedged_with_action": 2, "not_applicable": 3, "hedged": 1, "missed": 0}
AXES = ("diagnosis", "management", "safety", "faithfulness")
_PAST = {"historical", "family"}
_DX_LINE = re.compile(
    r"(?:<answer>(?P<tag>.*?)</answer>|\b(?:diagnosis|dx|impression)\s*[:\-]\s*(?P<line>[^.;\n<]+))",
    re.I | re.S,
)


@dataclass
class Weights:
    """How much each part of ``total`` counts: the diagnosis dominates (8 for the exact condition, 4 for its group),
    then harmful management, then the hedge and safety terms; finding credit is capped so reciting features cannot
    buy a diagnosis."""

    diagnosis: float = 8.0
    group: float = 4.0
    wrong_diagnosis: float = 1.0
    findings: float = 1.0
    contradicted: float = 0.25
    contradicted_cap: float = 1.0
    exclusive: float = 0.5
    exclusive_cap: float = 1.0
    treatment: float = 0.25
    treatment_cap: float = 0.5
    harmful: float = 3.0
    hedge: float = 1.0
    action: float = 0.5
    missed: float = 1.0


@dataclass
class Axes:
    """Where an answer stands on each axis (names from the *_LEVELS tables) and why."""

    diagnosis: str
    management: str
    safety: str
    faithfulness: int  # minus the findings that contradict the case/KG or that the KG does not link
    reasons: dict = field(default_factory=dict)


@dataclass
class ResponseScore:
    """A response's score and its parts, kept in the DPO record for inspection."""

    total: float
    correct: bool
    supported: int
    contradicted: int
    hallucinated: int
    coverage: float
    diagnosis: str | None
    verdicts: list[dict] = field(default_factory=list)
    parts: dict = field(default_factory=dict)
    safe: bool = True
    hedged_truth: bool = False
    axes: dict = field(default_factory=dict)
    abstain: str | None = None  # why the scorer did not understand this answer (None: understood)
    unknown_actions: list[str] = field(
        default_factory=list
    )  # actions the KG does not rate for this condition


def key_features(kg: KnowledgeGraph, condition: str, case_findings: dict | None = None) -> set[str]:
    """What a good answer should mention: the case's visible findings, else the condition's typical ones."""
    if case_findings:
        ids = {
            kg.canonical(str(v))
            for vs in case_findings.values()
            for v in (vs if isinstance(vs, list) else [vs])
        }
        return {i for i in ids if i is not None and kg.type(i) in KEY_TYPES}
    return {f.id for f in kg.features(condition, types=list(KEY_TYPES), typicality="typical")}


def _exclusive_pairs(kg: KnowledgeGraph, said: set[str]) -> int:
    return sum(1 for a in said for b in kg.excluded_by(a) if b in said and a < b)


def _diagnosis_level(kg: KnowledgeGraph, cond: str, dx: str | None) -> str:
    if dx is None:
        return "none"
    if dx.startswith("unlisted:") or dx not in kg:
        return "wrong"
    if dx == cond or dx in kg.members(cond):
        return "exact"  # the condition or a subtype (akiec: Bowen's disease)
    if dx in kg.categories(cond):
        return "group"  # a parent group: right family, not the answer
    return "wrong"


def _management(
    kg: KnowledgeGraph, cond: str, verdicts: list[Verdict]
) -> tuple[str, list[str], list[str], list[str]]:
    """(level, helpful action ids, harmful action ids with why, unknown action ids) for the true condition."""
    helpful, harmful, unknown = [], [], []
    for v in verdicts:
        c = v.claim
        if c.kind not in ("treatment", "procedure") or _PAST & set(c.context) or c.polarity == HEDGED:
            continue
        rating = kg.management(cond, c.node_id)
        kind, attrs = rating if rating else (None, {})
        if c.polarity == PRESENT:
            if kind in ("contraindicated", "delays"):
                harmful.append(f"{c.node_id} ({kind})")
            elif kind == "indicated":
                helpful.append(c.node_id)
            else:
                unknown.append(c.node_id)
        elif c.polarity == ABSENT and kind == "indicated" and attrs.get("line") == "first":
            harmful.append(f"{c.node_id} (first line withheld)")
    level = "harmful" if harmful else "indicated" if helpful else "none"
    return level, helpful, harmful, unknown


def _abstain_reason(text: str, kg: KnowledgeGraph, verdicts: list[Verdict]) -> str | None:
    claims = [v.claim for v in verdicts]
    unread = [c.text for c in claims if c.kind == "unread"]
    if unread:
        return f"ambiguous abbreviation not read: {', '.join(unread)}"
    conds = [c for c in claims if c.node_type in ("condition", "unlisted") and not _PAST & set(c.context)]
    for m in _DX_LINE.finditer(text):
        group = "tag" if m.group("tag") is not None else "line"
        a, b = m.span(group)
        if m.group(group).strip() and not any(a <= c.start < b for c in conds):
            return f"names a diagnosis the KG does not know: {m.group(group).strip()[:60]!r}"
    said = {c.node_id for c in conds if c.polarity == PRESENT}
    both = sorted(
        c.node_id
        for c in conds
        if c.polarity == ABSENT and c.node_id in said and not c.node_id.startswith("unlisted")
    )
    if both:
        return f"both asserts and rules out {kg.label(both[0])}"
    return None


def score_response(
    text: str,
    kg: KnowledgeGraph,
    condition: str,
    case_findings: dict | None = None,
    weights: Weights | None = None,
) -> ResponseScore:
    """Score one response against the true condition (and the case's ground-truth findings)."""
    w = weights or Weights()
    cond = kg.require(condition, "condition")
    verdicts: list[Verdict] = check_text(text, kg, cond, case_findings)
    related = kg.related(cond)
    dx = next((v for v in verdicts if v.claim.kind == "diagnosis"), None)
    dx_level = _diagnosis_level(kg, cond, dx.claim.node_id if dx else None)
    correct = dx_level == "exact"
    findings = [v for v in verdicts if v.claim.kind == "finding"]
    said = {v.claim.node_id for v in findings if v.claim.polarity == PRESENT}
    keys = key_features(kg, cond, case_findings)
    sup = sum(v.verdict == SUPPORTED for v in findings)
    con = sum(v.verdict == CONTRADICTED for v in findings)
    hal = sum(
        v.verdict == UNVERIFIABLE and v.claim.polarity == PRESENT and kg.type(v.claim.node_id) in KEY_TYPES
        for v in findings
    )
    coverage = len(
        keys & {v.claim.node_id for v in findings if v.verdict == SUPPORTED and v.claim.polarity == PRESENT}
    )
    coverage = coverage / len(keys) if keys else 0.0
    mgmt, helpful, harmful, unknown = _management(kg, cond, verdicts)
    conds = [
        v.claim for v in verdicts if v.claim.node_type == "condition" and not _PAST & set(v.claim.context)
    ]
    kept_open = any(c.node_id in related and c.polarity in (HEDGED, PRESENT) for c in conds)
    hedged_truth = dx_level not in ("exact", "group") and kept_open
    ruled_out = any(c.node_id in related and c.polarity == ABSENT for c in conds)
    mnm = kg.must_not_miss(cond)
    missed = mnm and (ruled_out or (dx_level in ("none", "wrong") and not kept_open))
    if missed and (ruled_out or dx_level == "wrong"):
        # a confident other diagnosis, or the condition ruled out: worse than no diagnosis
        dx_level = "missed"
    if not mnm:
        safety = "not_applicable"
    elif dx_level in ("exact", "group") and not ruled_out:
        safety = "named"
    elif hedged_truth and not ruled_out:
        safety = "hedged_with_action" if helpful and not harmful else "hedged"
    else:
        safety = "missed"
    # A condition the KG gives no findings (a documented ``no_findings_reason``) cannot be judged on them.
    unjudged = kg.node(cond).get("no_findings_reason")
    faithfulness = 0 if unjudged else -(con + hal)
    axes = Axes(
        dx_level,
        mgmt,
        safety,
        faithfulness,
        {
            "helpful": helpful,
            "harmful": harmful,
            **({"faithfulness": f"not judged: {unjudged}"} if unjudged else {}),
        },
    )
    parts = {
        "diagnosis": {"exact": w.diagnosis, "group": w.group, "none": 0.0}.get(
            dx_level, -w.wrong_diagnosis if dx else 0.0
        ),
        "findings": w.findings * coverage,
        "contradicted": -min(w.contradicted_cap, w.contradicted * (con + hal)),
        "exclusive": -min(w.exclusive_cap, w.exclusive * _exclusive_pairs(kg, said)),
        "treatments": min(w.treatment_cap, w.treatment * len(helpful)) - w.harmful * min(len(harmful), 1),
        "hedge": (w.hedge + (w.action if helpful else 0.0)) if hedged_truth else 0.0,
        "safety": -w.missed * missed,
    }
    total = round(sum(parts.values()), 4)
    return ResponseScore(
        total,
        correct,
        sup,
        con,
        hal,
        round(coverage, 4),
        dx.claim.node_id if dx else None,
        [v.to_dict() for v in verdicts],
        {k: round(v, 4) + 0.0 for k, v in parts.items()},
        safe=not (missed or harmful),
        hedged_truth=hedged_truth,
        axes=asdict(axes),
        abstain=_abstain_reason(text, kg, verdicts),
        unknown_actions=unknown,
    )


def _levels(s: ResponseScore) -> tuple[int, ...]:
    a = s.axes
    return (
        DIAGNOSIS_LEVELS[a["diagnosis"]],
        MANAGEMENT_LEVELS[a["management"]],
        SAFETY_LEVELS[a["safety"]],
        a["faithfulness"],
    )


def _actions(s: ResponseScore, polarity: str) -> set[str]:
    return {
        v["node_id"]
        for v in s.verdicts
        if v["kind"] in ("treatment", "procedure")
        and v["polarity"] == polarity
        and not _PAST & set(v["context"])
    }


def dominates(a: ResponseScore, b: ResponseScore) -> list[str]:
    """The axes on which ``a`` is strictly better than ``b`` when it is no worse on any; [] otherwise."""
    la, lb = _levels(a), _levels(b)
    if any(x < y for x, y in zip(la, lb)):
        return []
    return [name for name, x, y in zip(AXES, la, lb) if x > y]


def compare(a: ResponseScore, b: ResponseScore) -> tuple[str, list[str], str | None]:
    """('a' | 'b' | 'abstain' | 'none', axes that decided, reason): which answer a pair may choose."""
    for name, s in (("first", a), ("second", b)):
        if s.abstain:
            return "abstain", [], f"{s.abstain} ({name} answer)"
    withheld = _actions(a, ABSENT) & _actions(b, PRESENT) | _actions(b, ABSENT) & _actions(a, PRESENT)
    for winner, (x, y) in (("a", (a, b)), ("b", (b, a))):
        axes = dominates(x, y)
        if axes:
            if "management" in axes and x.unknown_actions:
                return (
                    "abstain",
                    [],
                    f"the better answer's action is not rated by the KG: {', '.join(x.unknown_actions)}",
                )
            if "management" in axes and withheld:
                # one answer withholds what the other gives: a reason in the patient the KG cannot see (pregnancy,
                # renal failure) may be why
                return "abstain", [], f"the answers disagree on an action: {', '.join(sorted(withheld))}"
            return winner, axes, None
    return "none", [], None


def build_pairs(
    prompt,
    responses: list[str],
    kg: KnowledgeGraph,
    condition: str,
    case_findings: dict | None = None,
    images: list | None = None,
    min_margin: float = 0.0,
    max_pairs: int | None = 4,
    weights: Weights | None = None,
    eligible: list[bool] | None = None,
    stats: Counter | None = None,
) -> list[dict]:
    """DPO records from several sampled responses to one prompt.

    A pair is built only when the chosen answer dominates the rejected one (``dominates``: no worse on any axis,
    better on one) and neither answer made the scorer abstain; ``min_margin`` further requires that gap in ``total``.
    ``eligible``: which responses may be chosen (the caller's format check; the KG reads claims, not layout). Pairs are
    ordered by how many axes decide them, then by the ``total`` gap (ties: sample order); at most ``max_pairs``.
    ``stats`` (a Counter) collects what happened to every comparison: pairs, abstained (and why), undecided,
    ineligible, identical. Conversational prompts (a list of messages) get conversational chosen/rejected (one
    assistant message each), as TRL expects.
    """
    scores = [score_response(r, kg, condition, case_findings, weights) for r in responses]
    stats = stats if stats is not None else Counter()
    stats["responses"] += len(responses)
    stats["responses_abstained"] += sum(bool(s.abstain) for s in scores)
    found = []
    for i, j in combinations(range(len(responses)), 2):
        stats["comparisons"] += 1
        if responses[i] == responses[j]:
            stats["identical"] += 1
            continue
        winner, axes, reason = compare(scores[i], scores[j])
        if winner == "abstain":
            stats["abstained"] += 1
            stats["abstain: " + reason.split(":")[0]] += 1
            continue
        if winner == "none":
            stats["undecided"] += 1
            continue
        hi, lo = (i, j) if winner == "a" else (j, i)
        margin = scores[hi].total - scores[lo].total
        if eligible is not None and not eligible[hi]:
            stats["ineligible"] += 1
            continue  # the better answer is malformed: no pair
        if margin < min_margin:
            stats["below_margin"] += 1
            continue
        found.append((len(axes), margin, scores[hi].total, -hi, -lo, hi, lo, axes))
    found.sort(reverse=True)
    seen, unique = set(), []
    for f in found:  # the same two texts sampled twice make one pair, not several
        key = (responses[f[5]], responses[f[6]])
        if key not in seen:
            seen.add(key)
            unique.append(f)
    stats["duplicate_pairs"] += len(found) - len(unique)
    found = unique
    if max_pairs is not None:
        found = found[:max_pairs]
    stats["pairs"] += len(found)
    for *_, axes in found:
        for a in axes:
            stats["decided by " + a] += 1

    def wrap(text: str):
        return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text

    out = []
    for _, margin, _, _, _, hi, lo, axes in found:
        out.append(
            {
                "prompt": prompt,
                "chosen": wrap(responses[hi]),
                "rejected": wrap(responses[lo]),
                "images": list(images or []),
                "meta": {
                    "condition_id": kg.require(condition, "condition"),
                    "decided_by": axes,
                    "margin": round(margin, 4),
                    "chosen_index": hi,
                    "rejected_index": lo,
                    "chosen_score": asdict(scores[hi]),
                    "rejected_score": asdict(scores[lo]),
                },
            }
        )
    return out


def abstention_summary(stats: Counter) -> dict:
    """The pair builder's counts as a summary: how many comparisons became pairs, abstained, or were undecided."""
    n = max(1, stats["comparisons"] - stats["identical"])
    return {
        "comparisons": stats["comparisons"],
        "pairs": stats["pairs"],
        "abstained": stats["abstained"],
        "abstention_rate": round(stats["abstained"] / n, 4),
        "undecided": stats["undecided"],
        "responses_abstained": stats["responses_abstained"],
        "responses": stats["responses"],
        "reasons": {k.split(": ", 1)[1]: v for k, v in stats.items() if k.startswith("abstain: ")},
        "decided_by": {k[len("decided by ") :]: v for k, v in stats.items() if k.startswith("decided by ")},
    }


def write_dpo_jsonl(records: list[dict], path: str | Path) -> Path:
    """One DPO record per line (prompt, chosen, rejected, images, meta with scores)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return path
