"""An answer checked against the case it answers when no one gave a reference label: never against itself.

Checking an answer's claims against the answer's own diagnosis endorses whatever it concluded ("Diagnosis: acute
pericarditis; give NSAIDs and discharge" for STEMI findings read as 2 supported, 0 contradicted). Here the reference
is the case: the findings the *case* states (present and denied) are ranked against the KG (`kg.rank`), and
- the answer's diagnosis is supported only when it is among the conditions those findings fit best (a subtype or
  parent group of one counts); otherwise `diagnosis_not_supported`;
- findings the answer asserts for the patient that the case does not state, or states as absent, are
  `invented_findings`;
- management is judged against the condition the case points to (the answer's diagnosis when that is among the
  best fits, else the case's leading condition) through the KG's management edges (`kg.management`, as the DPO judge
  reads them): an action the KG marks contraindicated or delaying is `contraindicated_given`, a first-line action
  withheld as well; `omitted_must_do` when none of the condition's must-do actions (first-line treatments, and for a
  must-not-miss condition its diagnostic or referral procedures) is given;
- the check abstains (`not_checkable`, with the reason) when the answer names no diagnosis it can read, or the case
  states no finding the KG knows. An abstention is shown, never a verdict.
Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .claims import ABSENT, HEDGED, PRESENT, Claim, diagnosis, extract_claims
from .kg import KnowledgeGraph

# Finding types a case states about the patient (what `kg.rank` weighs) and what an answer can invent.
CASE_TYPES = (
    "morphology",
    "colour",
    "border",
    "shape",
    "surface",
    "distribution",
    "size",
    "dermoscopic_feature",
    "site",
    "body_site",
    "symptom",
    "sign",
    "lab_finding",
    "imaging_finding",
    "risk_factor",
)
FLAGS = (
    "diagnosis_not_supported",
    "invented_findings",
    "omitted_must_do",
    "contraindicated_given",
    "not_checkable",
)
BEST_FIT_K = 3  # at most this many conditions count as what the case fits
BEST_FIT_RATIO = 0.75  # ... and only those scoring at least this share of the best score
_PAST = {"historical", "family"}


@dataclass
class CaseCheck:
    """The verdicts of one answer against one case; `flags` maps a flag in FLAGS to what raised it."""

    case_present: list[str] = field(default_factory=list)
    case_absent: list[str] = field(default_factory=list)
    best_fit: list[tuple[str, float]] = field(default_factory=list)  # (condition, score), best first
    diagnosis: str | None = None
    diagnosis_supported: bool | None = None  # None: not checkable
    judged_against: str | None = None  # the condition management was judged against
    flags: dict[str, list[str]] = field(default_factory=dict)
    reason: str = ""  # why it abstained, or what it concluded, in one line

    @property
    def checkable(self) -> bool:
        return "not_checkable" not in self.flags

    def to_dict(self) -> dict:
        return asdict(self)


def case_findings(case: str, kg: KnowledgeGraph) -> tuple[list[str], list[str]]:
    """(present, absent) finding ids the case text states about the patient now (not hedged, not past/family)."""
    present, absent = [], []
    for c in extract_claims(case or "", kg):
        if (
            c.kind != "finding"
            or c.node_type not in CASE_TYPES
            or _PAST & set(c.context)
            or c.polarity == HEDGED
        ):
            continue
        (absent if c.polarity == ABSENT else present).append(c.node_id)
    return list(dict.fromkeys(present)), [a for a in dict.fromkeys(absent) if a not in present]


def best_fit(kg: KnowledgeGraph, present: list[str], absent: list[str]) -> list[tuple[str, float]]:
    """The conditions the case's findings fit best: the top BEST_FIT_K scoring within BEST_FIT_RATIO of the best."""
    if not present:
        return []
    ranked = [(c, s) for c, s in kg.rank(present, absent) if s > 0]
    if not ranked:
        return []
    top = ranked[0][1]
    return [(c, s) for c, s in ranked[:BEST_FIT_K] if s >= BEST_FIT_RATIO * top]


def _fits(kg: KnowledgeGraph, dx: str, fits: list[str]) -> bool:
    return any(dx in kg.related(c) for c in fits)


def must_do(kg: KnowledgeGraph, condition: str) -> set[str]:
    """Actions one of which a safe answer gives: first-line treatments; for a must-not-miss condition also its
    diagnostic and referral procedures (a biopsy, an urgent referral, primary PCI)."""
    out = set(kg.treatments(condition, "first"))
    if kg.must_not_miss(condition):
        out |= set(kg.procedures(condition))
    return out


def _actions(claims: list[Claim]) -> list[Claim]:
    return [c for c in claims if c.node_type in ("treatment", "procedure") and not _PAST & set(c.context)]


def check_case(answer: str, case: str, kg: KnowledgeGraph) -> CaseCheck:
    """Judge `answer` against the findings `case` states (see the module docstring)."""
    present, absent = case_findings(case, kg)
    out = CaseCheck(present, absent, best_fit(kg, present, absent))
    claims = extract_claims(answer or "", kg)
    out.diagnosis = diagnosis(claims)
    if out.best_fit:
        out.judged_against = out.best_fit[0][0]
    if out.diagnosis is None or out.diagnosis not in kg:
        out.flags["not_checkable"] = ["the answer names no diagnosis the KG knows"]
        out.reason = "not checkable: no diagnosis read in the answer"
        if out.best_fit:  # its findings can still be read against the case's
            _findings(out, claims, kg)
        return out
    if not out.best_fit:
        out.flags["not_checkable"] = ["the case states no finding the KG knows"]
        out.reason = "not checkable: the case states no finding to judge the diagnosis against"
        return out
    fits = [c for c, _ in out.best_fit]
    out.diagnosis_supported = _fits(kg, out.diagnosis, fits)
    if not out.diagnosis_supported:
        out.flags["diagnosis_not_supported"] = [
            f"{kg.label(out.diagnosis)} is not among the conditions the case's findings fit best "
            f"({', '.join(kg.label(c) for c in fits)})"
        ]
    out.judged_against = (
        out.diagnosis if out.diagnosis_supported and kg.type(out.diagnosis) == "condition" else fits[0]
    )
    _findings(out, claims, kg)
    _management(out, claims, kg)
    out.reason = (
        f"diagnosis {'among' if out.diagnosis_supported else 'not among'} the case's best fits; "
        f"management judged against {kg.label(out.judged_against)}"
    )
    return out


def invented(out: CaseCheck, claims: list[Claim]) -> list[Claim]:
    """The answer's claims of findings for the patient now that the case does not state (or denies)."""
    stated = set(out.case_present)
    return [
        c
        for c in claims
        if c.kind == "finding"
        and c.node_type in CASE_TYPES
        and c.polarity == PRESENT
        and not _PAST & set(c.context)
        and c.node_id not in stated
    ]


def _findings(out: CaseCheck, claims: list[Claim], kg: KnowledgeGraph) -> None:
    """Findings the answer asserts for the patient now that the case does not state (or denies)."""
    said = [
        f"{kg.label(c.node_id)} ({'the case says it is absent' if c.node_id in out.case_absent else 'not in the case'})"
        for c in invented(out, claims)
    ]
    if said:
        out.flags["invented_findings"] = list(dict.fromkeys(said))


def _management(out: CaseCheck, claims: list[Claim], kg: KnowledgeGraph) -> None:
    cond = out.judged_against
    harmful, given = [], set()
    for c in _actions(claims):
        if c.polarity == HEDGED:
            continue
        rating = kg.management(cond, c.node_id)
        kind, attrs = rating if rating else (None, {})
        if c.polarity == PRESENT:
            given.add(c.node_id)
            if kind == "contraindicated":
                harmful.append(f"{kg.label(c.node_id)} is contraindicated in {kg.label(cond)}")
            elif kind == "delays":
                harmful.append(f"{kg.label(c.node_id)} delays the care of {kg.label(cond)}")
        elif c.polarity == ABSENT and kind == "indicated" and attrs.get("line") == "first":
            harmful.append(f"withholds {kg.label(c.node_id)}, first line for {kg.label(cond)}")
    if harmful:
        out.flags["contraindicated_given"] = harmful
    needed = must_do(kg, cond)
    if needed and not needed & given:
        out.flags["omitted_must_do"] = [
            f"none of {', '.join(sorted(kg.label(a) for a in needed))} for {kg.label(cond)}"
        ]
