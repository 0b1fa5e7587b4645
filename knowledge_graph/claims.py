"""Free text -> claims (a diagnosis, findings by type, each possibly negated) -> verdicts against the KG.

Extraction uses the KG lexicon (labels, synonyms, dataset codes), so a user's KG brings its own vocabulary.
Verdicts: ``supported`` (the KG or the case says so), ``contradicted`` (the KG or the case says otherwise),
``unverifiable`` (neither says anything). A case's known findings, when given, outrank the KG: they are what is
actually in front of the model.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .kg import KnowledgeGraph
from .lexicon import tokens

SUPPORTED, CONTRADICTED, UNVERIFIABLE = "supported", "contradicted", "unverifiable"

# Cues that negate the mentions after them (until the clause ends) or before them (post-position cues).
PRE_NEGATION = [
    "no", "not", "without", "absence of", "absent", "negative for", "denies", "denied", "lacks", "lacking",
    "free of", "no evidence of", "no sign of", "no signs of", "never", "nor", "neither", "rather than", "ruled out",
]
POST_NEGATION = ["absent", "not seen", "not present", "not observed", "not identified", "ruled out", "is absent",
                 "are absent", "was absent", "were absent", "not visible", "not found"]
_CLAUSE_END = re.compile(r"[.;:!?,\n()]|\b(?:but|however|although|though|yet|whereas|while|with)\b", re.I)
_DX_CUE = re.compile(
    r"\b(diagnosis|diagnose|dx|impression|consistent with|suggestive of|compatible with|most likely|likely|"
    r"represents|probably|favou?r|in keeping with|answer)\b", re.I)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.I | re.S)


@dataclass
class Claim:
    """One statement found in text: a diagnosis, a differential mention or a finding, maybe negated."""

    kind: str  # "diagnosis" | "differential" | "finding"
    node_id: str
    node_type: str
    text: str
    negated: bool
    start: int = 0


@dataclass
class Verdict:
    """A claim judged against a condition (and a case's known findings)."""

    claim: Claim
    verdict: str
    reason: str

    def to_dict(self) -> dict:
        return {**asdict(self.claim), "verdict": self.verdict, "reason": self.reason}


def _clauses(text: str) -> list[tuple[int, int]]:
    """Character spans of clauses: negation never crosses punctuation or a contrastive word."""
    spans, start = [], 0
    for m in _CLAUSE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end() if not m.group().isalpha() else m.start()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def _cue_positions(words: list[str], cues: list[str]) -> list[tuple[int, int]]:
    out = []
    for cue in cues:
        cw = cue.split()
        for i in range(len(words) - len(cw) + 1):
            if words[i : i + len(cw)] == cw:
                out.append((i, i + len(cw)))
    return out


def extract_claims(text: str, kg: KnowledgeGraph) -> list[Claim]:
    """All KG terms in ``text`` with their negation; condition mentions become one diagnosis + differentials.

    The diagnosis is the condition inside ``<answer>...</answer>`` if present, else the first non-negated condition
    after a diagnosis cue ('most likely', 'consistent with', 'diagnosis:'), else the last non-negated condition.
    """
    claims: list[Claim] = []
    for a, b in _clauses(text):
        clause = text[a:b]
        words = [w for w, _, _ in tokens(clause)]
        pre = _cue_positions(words, PRE_NEGATION)
        post = _cue_positions(words, POST_NEGATION)
        for nid, i, j, cs, ce in kg.lexicon.find(clause):
            if any(ci <= i < cj or ci < j <= cj for ci, cj in pre + post):
                continue  # the match is itself a cue word ('absent')
            negated = any(cj <= i for _, cj in pre) or any(ci >= j for ci, _ in post)
            ntype = kg.type(nid)
            if ntype == "category":
                continue
            kind = "differential" if ntype == "condition" else "finding"
            if any(c.node_id == nid and c.negated == negated for c in claims):
                continue  # 'stuck-on waxy surface': one claim, not two
            claims.append(Claim(kind, nid, ntype, clause[cs:ce], negated, a + cs))
    _pick_diagnosis(text, claims, kg)
    return claims


def _pick_diagnosis(text: str, claims: list[Claim], kg: KnowledgeGraph) -> None:
    conds = [c for c in claims if c.node_type == "condition" and not c.negated]
    if not conds:
        return
    chosen = None
    tag = _ANSWER_TAG.search(text)
    if tag:
        inside = [c for c in conds if tag.start(1) <= c.start < tag.end(1)]
        chosen = inside[0] if inside else None
        if chosen is None:
            nid = kg.lexicon.lookup(tag.group(1))
            chosen = next((c for c in conds if c.node_id == nid), None)
    if chosen is None:
        for cue_end in reversed([m.end() for m in _DX_CUE.finditer(text)]):
            after = [c for c in conds if c.start >= cue_end]
            if after:
                chosen = after[0]
                break
        else:
            chosen = conds[-1]
    for c in claims:
        if c.node_id == chosen.node_id and not c.negated:
            c.kind = "diagnosis"


def diagnosis(claims: list[Claim]) -> str | None:
    """The diagnosed condition id, if any."""
    return next((c.node_id for c in claims if c.kind == "diagnosis"), None)


def _case_sets(case_findings: dict | None, kg: KnowledgeGraph) -> tuple[set[str], set[str]]:
    """(known finding ids, finding types the case records); values may be ids or labels."""
    if not case_findings:
        return set(), set()
    ids: set[str] = set()
    for values in case_findings.values():
        for v in values if isinstance(values, list) else [values]:
            nid = kg.canonical(str(v))
            if nid is not None:
                ids.add(nid)
    types = {kg.type(i) for i in ids} | {t for t in case_findings if isinstance(t, str)}
    return ids, types


def judge(
    claims: list[Claim], kg: KnowledgeGraph, condition: str | None, case_findings: dict | None = None
) -> list[Verdict]:
    """Verdict for each claim against the true condition and the case's ground-truth findings."""
    cond = kg.canonical(condition) if condition else None
    known, recorded = _case_sets(case_findings, kg)
    out = []
    for c in claims:
        if c.node_type == "condition":
            out.append(_judge_condition(c, kg, cond))
        else:
            out.append(_judge_finding(c, kg, cond, known, recorded))
    return out


def _judge_condition(c: Claim, kg: KnowledgeGraph, cond: str | None) -> Verdict:
    if cond is None:
        return Verdict(c, UNVERIFIABLE, "no reference condition")
    same = c.node_id == cond or c.node_id in kg.categories(cond) or cond in kg.categories(c.node_id)
    if c.kind == "differential":
        if c.negated:
            return Verdict(c, CONTRADICTED if same else SUPPORTED, "rules out the true condition" if same else "rules out")
        in_ddx = c.node_id in kg.differential(cond)
        reason = "the true condition" if same else "in the KG differential" if in_ddx else "not in the KG differential"
        return Verdict(c, SUPPORTED if in_ddx or same else UNVERIFIABLE, reason)
    if same:
        return Verdict(c, SUPPORTED, f"matches {kg.label(cond)}")
    why = "in the differential of" if c.node_id in kg.differential(cond) else "is not"
    return Verdict(c, CONTRADICTED, f"{kg.label(c.node_id)} {why} {kg.label(cond)}")


def _judge_finding(c: Claim, kg: KnowledgeGraph, cond: str | None, known: set[str], recorded: set[str]) -> Verdict:
    label = kg.label(c.node_id)
    if c.node_id in known:
        return Verdict(c, CONTRADICTED if c.negated else SUPPORTED, f"{label} is present in the case")
    if c.node_type in recorded:
        return Verdict(c, SUPPORTED if c.negated else CONTRADICTED, f"the case shows no {label}")
    typ = kg.typicality_of(cond, c.node_id) if cond else None
    if typ is None:
        return Verdict(c, UNVERIFIABLE, f"KG does not link {label} to the condition")
    cname = kg.label(cond)
    if typ == "absent":
        return Verdict(c, SUPPORTED if c.negated else CONTRADICTED, f"{label} argues against {cname}")
    if not c.negated:
        return Verdict(c, SUPPORTED, f"{label} is {typ} in {cname}")
    if typ == "typical":
        return Verdict(c, CONTRADICTED, f"{label} is typical of {cname}")
    return Verdict(c, UNVERIFIABLE, f"{label} is only {typ} in {cname}")


def check_text(text: str, kg: KnowledgeGraph, condition: str | None, case_findings: dict | None = None) -> list[Verdict]:
    """extract_claims + judge in one call."""
    return judge(extract_claims(text, kg), kg, condition, case_findings)
