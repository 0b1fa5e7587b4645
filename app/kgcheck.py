"""An answer's claims checked against the KG, in the shape the tabs show: each claim with its verdict, polarity and
the KG path behind it, the diagnosis, the KG differential, and the conditions the stated findings fit best.

The *reference* a claim is judged against is the best truth at hand, and the page says which: a synthetic
sample's label or an answer key; otherwise the condition the case's stated findings point to
(`knowledge_graph.case_check`), with flags for a diagnosis the findings do not support, invented findings, must-do
steps omitted and harmful ones given. It is never the answer's own diagnosis: that endorsed any answer by itself.
With no reference and no case text the diagnosis is left unchecked, visibly. Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from knowledge_graph.case_check import CASE_TYPES, check_case, invented
from knowledge_graph.claims import CONTRADICTED, HEDGED, Verdict, diagnosis, extract_claims, judge
from knowledge_graph.kg import KnowledgeGraph

# The finding types a claim about the patient can be checked on: the case's (`CASE_TYPES`) but body site, which
# says where a lesion is, not what it is (one list, so the two checks cannot drift apart).
FINDING_TYPES = tuple(t for t in CASE_TYPES if t != "body_site")
REFERENCE_LABEL = {
    "sample": "the synthetic sample's true label",
    "key": "the answer key",
    "given": "the reference you gave",
    "case": "the condition the case's stated findings point to (no reference label given)",
    None: "nothing: no reference label and no case findings, so the diagnosis is not checked",
}
FLAG_TITLES = {
    "diagnosis_not_supported": "Diagnosis not supported by the case's findings",
    "invented_findings": "Findings the case does not state",
    "omitted_must_do": "Must-do steps omitted",
    "contraindicated_given": "Harmful or contraindicated steps given",
    "not_checkable": "Not checkable",
}


@dataclass
class ClaimRow:
    kind: str
    text: str
    node_id: str
    label: str
    polarity: str  # present | absent | hedged
    verdict: str  # supported | contradicted | unverifiable
    reason: str
    kg_path: str  # the KG facts linking the reference to this claim, with their sources

    @property
    def badge(self) -> str:
        """What the page shows: the verdict, or 'hedged' for a hedged claim the KG can say nothing against."""
        return "hedged" if self.polarity == HEDGED and self.verdict != "contradicted" else self.verdict


@dataclass
class KGCheck:
    kg: str
    reference: str | None
    reference_source: str | None  # sample | key | model | None
    diagnosis: str | None
    claims: list[ClaimRow] = field(default_factory=list)
    reference_label: str = ""
    diagnosis_label: str = ""
    differential: list[dict] = field(default_factory=list)  # of the diagnosis (else the reference)
    best_fit: list[dict] = field(default_factory=list)  # conditions the stated findings fit best
    best_fit_source: str = ""  # case | sample | answer: whose findings the best fit is of
    flags: dict[str, list[str]] = field(default_factory=dict)  # knowledge_graph.case_check.FLAGS -> details
    case_reason: str = ""

    def counts(self) -> dict[str, int]:
        out = {"supported": 0, "contradicted": 0, "unverifiable": 0, "hedged": 0}
        for c in self.claims:
            out[c.badge] += 1
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "badges": [c.badge for c in self.claims], "counts": self.counts()}


def path_text(kg: KnowledgeGraph, reference: str | None, node: str) -> str:
    if reference is None or node not in kg or reference not in kg or node == reference:
        return ""
    steps = kg.explain_path(reference, node)
    return " ; ".join(f"{kg.label(s.head)} —{s.relation}→ {kg.label(s.tail)} [{s.source}]" for s in steps)


def check(
    text: str,
    kg: KnowledgeGraph,
    reference: str | None = None,
    source: str | None = None,
    case_findings: dict | None = None,
    case_text: str | None = None,
) -> KGCheck:
    """Judge every claim of `text` against the best truth at hand, never against the text itself.

    With a reference (a sample's label, an answer key) the claims are judged against it. Without one, the case's
    stated findings are (`knowledge_graph.case_check`): the reference is the answer's diagnosis only when it is among
    the conditions those findings fit best, else the case's leading condition, and the flags say what is wrong.
    With neither a reference nor a case text, the diagnosis is left unverified and said so.
    """
    claims = extract_claims(text, kg)
    dx = diagnosis(claims)
    case = None
    if reference is None and (case_text or "").strip():
        case = check_case(text, case_text, kg)
        if case.best_fit:
            reference, source = (dx if case.diagnosis_supported else case.judged_against), "case"
    verdicts = judge(claims, kg, reference, case_findings)
    if (
        case is not None and case.best_fit
    ):  # the case is the truth for the patient: what it does not state is not so
        unstated = {id(c) for c in invented(case, claims)}
        verdicts = [
            Verdict(
                v.claim,
                CONTRADICTED,
                "not in the case"
                if v.claim.node_id not in case.case_absent
                else "the case says it is absent",
            )
            if id(v.claim) in unstated
            else v
            for v in verdicts
        ]
    rows = [
        ClaimRow(
            v.claim.kind,
            v.claim.text,
            v.claim.node_id,
            f"{v.claim.text} (ambiguous: not read)"
            if v.claim.kind == "unread"
            else kg.label(v.claim.node_id)
            if v.claim.node_id in kg
            else v.claim.text,
            v.claim.polarity,
            v.verdict,
            v.reason,
            path_text(kg, reference, v.claim.node_id),
        )
        for v in verdicts
    ]
    result = KGCheck(
        kg.name,
        reference,
        source if reference else None,
        dx,
        rows,
        kg.label(reference) if reference in kg else "",
        kg.label(dx) if dx in kg else (dx or ""),
    )
    if case is not None:
        result.flags = {k: v for k, v in case.flags.items()}
        result.case_reason = case.reason
    elif reference is None:
        result.flags = {
            "not_checkable": [
                "no reference label and no case text: the diagnosis cannot be checked, only "
                "whether the findings the answer states fit it"
            ]
        }
    focus = dx if dx in kg else reference
    if focus is not None and kg.type(focus) == "condition":
        result.differential = [
            {"id": c, "label": kg.label(c), "must_not_miss": kg.must_not_miss(c)}
            for c in kg.differential(focus)
        ]
    if case is not None and case.best_fit:
        result.best_fit = [_fit(kg, c, s) for c, s in case.best_fit]
        result.best_fit_source = "case"
    else:
        truth = sorted(_case_sets_ids(case_findings, kg))
        present = truth or [
            r.node_id
            for r in rows
            if r.polarity == "present" and r.node_id in kg and kg.type(r.node_id) in FINDING_TYPES
        ]
        absent = (
            []
            if truth
            else [
                r.node_id
                for r in rows
                if r.polarity == "absent" and r.node_id in kg and kg.type(r.node_id) in FINDING_TYPES
            ]
        )
        if present:
            result.best_fit = [_fit(kg, c, s) for c, s in kg.rank(present, absent)[:5] if s > 0]
            result.best_fit_source = "sample" if truth else "answer"
    return result


def _fit(kg: KnowledgeGraph, c: str, s: float) -> dict:
    return {"id": c, "label": kg.label(c), "score": s, "must_not_miss": kg.must_not_miss(c)}


def _case_sets_ids(case_findings: dict | None, kg: KnowledgeGraph) -> set[str]:
    """The finding ids of a sample's ground truth (values are ids or labels)."""
    out = set()
    for values in (case_findings or {}).values():
        for v in values if isinstance(values, list) else [values]:
            nid = kg.canonical(str(v))
            if nid is not None and kg.type(nid) in FINDING_TYPES:
                out.add(nid)
    return out


def condition_in(text: str, kg: KnowledgeGraph) -> str | None:
    """The condition a short text names ('inferior STEMI', an option's text), read as the claim reader reads it."""
    dx = diagnosis(extract_claims(text or "", kg))
    return dx if dx in kg and kg.type(dx) == "condition" else kg.canonical(text or "")
