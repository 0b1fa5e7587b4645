"""An answer's claims checked against the KG, in the shape the tabs show: each claim with its verdict, polarity and
the KG path behind it, the diagnosis, the KG differential, and the conditions the stated findings fit best.

The *reference* a claim is judged against is the best truth at hand, and the page says which: a synthetic
sample's label or an answer key; otherwise the model's own diagnosis (then the check says whether the findings it
states belong to what it concluded). Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from knowledge_graph.claims import HEDGED, diagnosis, extract_claims, judge
from knowledge_graph.kg import KnowledgeGraph

FINDING_TYPES = ("morphology", "colour", "border", "shape", "surface", "distribution", "size", "dermoscopic_feature",
                 "site", "symptom", "sign", "lab_finding", "imaging_finding", "risk_factor")
REFERENCE_LABEL = {"sample": "the synthetic sample's true label", "key": "the answer key", "given": "the reference you gave",
                   "model": "the model's own diagnosis (no reference label given)", None: "nothing (no diagnosis)"}


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


def check(text: str, kg: KnowledgeGraph, reference: str | None = None, source: str | None = None,
          case_findings: dict | None = None) -> KGCheck:
    """Judge every claim of `text`; with no reference, against the diagnosis the text itself makes."""
    claims = extract_claims(text, kg)
    dx = diagnosis(claims)
    if reference is None and dx is not None and dx in kg:
        reference, source = dx, "model"
    verdicts = judge(claims, kg, reference, case_findings)
    rows = [ClaimRow(v.claim.kind, v.claim.text, v.claim.node_id,
                     f"{v.claim.text} (ambiguous: not read)" if v.claim.kind == "unread"
                     else kg.label(v.claim.node_id) if v.claim.node_id in kg else v.claim.text, v.claim.polarity,
                     v.verdict, v.reason, path_text(kg, reference, v.claim.node_id)) for v in verdicts]
    result = KGCheck(kg.name, reference, source if reference else None, dx, rows,
                     kg.label(reference) if reference in kg else "", kg.label(dx) if dx in kg else (dx or ""))
    focus = dx if dx in kg else reference
    if focus is not None and kg.type(focus) == "condition":
        result.differential = [{"id": c, "label": kg.label(c), "must_not_miss": kg.must_not_miss(c)}
                               for c in kg.differential(focus)]
    present = [r.node_id for r in rows if r.polarity == "present" and r.node_id in kg and kg.type(r.node_id) in FINDING_TYPES]
    absent = [r.node_id for r in rows if r.polarity == "absent" and r.node_id in kg and kg.type(r.node_id) in FINDING_TYPES]
    if present:
        result.best_fit = [{"id": c, "label": kg.label(c), "score": s, "must_not_miss": kg.must_not_miss(c)}
                           for c, s in kg.rank(present, absent)[:5] if s > 0]
    return result
