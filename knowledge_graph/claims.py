"""Free text -> claims (a diagnosis, differentials, findings, treatments, procedures) -> verdicts against the KG.

Extraction runs medspaCy (``nlp.py``): the KG lexicon is the target matcher, ConText gives each mention a polarity:
``present``, ``absent`` (negated, also across lists: "no fever, cough or haemoptysis") or ``hedged`` ("melanoma cannot
be ruled out", "possible PE", "r/o"). Verdicts: ``supported`` (the KG or the case says so), ``contradicted`` (the KG or
the case says otherwise), ``unverifiable`` (neither says anything). A case's known findings, when given, outrank the
KG: they are what is actually in front of the model. A finding's absence contradicts a condition only where the KG
marks it required or highly sensitive; absent typical features are neutral.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .kg import KnowledgeGraph
from .lexicon import UNLISTED
from .nlp import ABSENT_MARK, CODE_MARK, pipeline
from .scope import FAMILY, HEDGE, HIST, HYPO, NEG, WITHHELD, categories, clause_break, fold

SUPPORTED, CONTRADICTED, UNVERIFIABLE = "supported", "contradicted", "unverifiable"
PRESENT, ABSENT, HEDGED = "present", "absent", "hedged"

_DX_CUE = re.compile(
    r"\b(diagnosis|diagnose|dx|impression|consistent with|suggestive of|compatible with|most likely|likely|"
    r"represents|probably|probable|favou?r|in keeping with|answer|now|this is|today)\b",
    re.I,
)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.I | re.S)
# ConText's FAMILY cue is lost when it overlaps a target ('family history' is itself a risk factor), so check it here.
_FAMILY = re.compile(
    r"\b(?:family history of|(?:mother|father|sister|brother|sibling|parent|aunt|uncle|grandmother|"
    r"grandfather|son|daughter|cousin|relatives?|grandparents?)(?:'s)?\b[^.;]*\b(?:had|has|with|died of))\b([^.;]*)$",
    re.I,
)
_KIND = {"condition": "differential", "treatment": "treatment", "procedure": "procedure"}
# An ambiguous abbreviation ('PE', 'RA', 'MS') is read by context (``_code_reading``): after a diagnostic or hedging
# cue ("possible PE", "Dx: RA", "r/o MS") or a qualifier ("massive PE", "inferior MI"), never in "SpO2 94% on RA"
# (room air) or "PE: chest clear" (physical examination).
_CODE_QUALIFIER = re.compile(
    r"\b(?:massive|submassive|saddle|segmental|subsegmental|bilateral|acute|chronic|suspected|confirmed|new|recent|"
    r"inferior|anterior|lateral|posterior|septal|severe|mild|moderate|active|relapsing|seropositive|seronegative|"
    r"negative for|positive for|treated|known|lobe|lobar|basal|multiple|several|numerous)\W+$",
    re.I,
)
_CODE_CUE = re.compile(
    r"\b(?:possible|probable|probably|likely|suspected|suspect|suspicion of|r/o|rule out|exclude|excluding|diagnosis|"
    r"dx|impression|consistent with|in keeping with|query|favou?r|treat(?:ed)? (?:as|for)|known|history of|"
    r"differential|ddx|vs|versus|than|not|no|of)\W+(?:\w+\W+){0,1}$|\?\s*$",
    re.I,
)


@dataclass
class Claim:
    """One statement found in text: a diagnosis, a differential mention, a finding, a treatment or a procedure.

    ``polarity`` is present / absent / hedged; ``negated`` (absent) is kept for older callers. ``context`` lists
    other ConText modifiers (historical, family, hypothetical).
    """

    kind: str  # "diagnosis" | "differential" | "finding" | "treatment" | "procedure"
    node_id: str
    node_type: str
    text: str
    negated: bool
    start: int = 0
    polarity: str = PRESENT
    context: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    """A claim judged against a condition (and a case's known findings)."""

    claim: Claim
    verdict: str
    reason: str

    def to_dict(self) -> dict:
        return {**asdict(self.claim), "verdict": self.verdict, "reason": self.reason}


def _polarity(ent, doc, node_type) -> tuple[str, list[str]]:
    """The ConText cues that reach the mention (``scope.categories``) -> polarity and the other contexts.

    A hedge beats a negation ('cannot be excluded'); a withheld action ('avoid X', 'X is contraindicated') is absent."""
    cats = categories(ent, doc, node_type)
    other = [
        name
        for name, cat in (("historical", HIST), ("family", FAMILY), ("hypothetical", HYPO))
        if cat in cats
    ]
    if HEDGE in cats or HYPO in cats:
        return HEDGED, other
    if NEG in cats or WITHHELD in cats:
        return ABSENT, other
    return PRESENT, other


def _in_parentheses_after_condition(text: str, start: int, previous_end: int | None) -> bool:
    """'Bowen's disease (SCC in situ)': a condition in brackets right after another one is an apposition."""
    if previous_end is None:
        return False
    between = text[previous_end:start]
    return bool(re.fullmatch(r"\s*\(\s*(?:[\w\s,'’-]*?\s)?", between)) and ")" in text[start:]


def extract_claims(text: str, kg: KnowledgeGraph) -> list[Claim]:
    """All KG terms in ``text`` with their polarity; condition mentions become one diagnosis + differentials.

    The diagnosis is the condition inside ``<answer>...</answer>`` if present, else the first present condition after
    the last diagnosis cue ('most likely', 'consistent with', 'diagnosis:'), else the first present condition.
    Conditions mentioned only as family history are dropped; unlisted names (diseases the KG does not model) are
    kept as conditions with an ``unlisted:`` id so they can be a (wrong) diagnosis but never match a modelled one.
    """
    original = text
    text = fold(text, _upper_codes(kg))
    doc = pipeline(kg)(text)
    claims: list[Claim] = []
    last_condition_end = None

    def node_type(label: str) -> str:
        label = label.split("#", 1)[0]
        return "unlisted" if label.startswith(UNLISTED) else kg.type(label) if label in kg else ""

    for ent in doc.ents:
        label = ent.label_
        if label.endswith(CODE_MARK):
            label = label[: -len(CODE_MARK)]
            reading = _code_reading(text, ent.start_char, ent.end_char)
            if reading == "other":
                continue
            if reading == "unread":
                claims.append(
                    Claim(
                        "unread",
                        label,
                        "unread",
                        original[ent.start_char : ent.end_char],
                        False,
                        ent.start_char,
                        HEDGED,
                        ["ambiguous abbreviation"],
                    )
                )
                continue
        polarity, other = _polarity(ent, doc, node_type)
        family = _FAMILY.search(text[ent.sent.start_char : ent.start_char])
        if "family" not in other and family and not clause_break(family.group(1)):
            other = [*other, "family"]
        if label.endswith(ABSENT_MARK):
            label = label[: -len(ABSENT_MARK)]
            polarity = {PRESENT: ABSENT, ABSENT: PRESENT}.get(polarity, polarity)  # 'not afebrile' is fever
        if label.startswith(UNLISTED):
            if label != UNLISTED + "condition":
                continue
            ntype = "unlisted"
        elif label in kg:
            ntype = kg.type(label)
        else:
            continue
        if ntype in ("category", "dataset_label") or (
            ntype in ("condition", "unlisted") and "family" in other
        ):
            continue
        kind = "differential" if ntype == "unlisted" else _KIND.get(ntype, "finding")
        if ntype in ("condition", "unlisted"):
            if _in_parentheses_after_condition(text, ent.start_char, last_condition_end):
                if any(c.node_id == label for c in claims):
                    continue  # a synonym in brackets: one claim
                other = [*other, "apposition"]
            last_condition_end = ent.end_char
        if any(c.node_id == label and c.polarity == polarity for c in claims):
            continue  # 'stuck-on waxy surface': one claim, not two
        claims.append(
            Claim(
                kind,
                label,
                ntype,
                original[ent.start_char : ent.end_char],
                polarity == ABSENT,
                ent.start_char,
                polarity,
                other,
            )
        )
    _pick_diagnosis(text, claims, kg)
    return claims


def _upper_codes(kg: KnowledgeGraph) -> frozenset[str]:
    codes = getattr(kg, "_upper_codes", None)
    if codes is None:
        codes = kg._upper_codes = frozenset(c.upper() for c in kg.lexicon.codes)
    return codes


def _code_reading(text: str, start: int, end: int) -> str:
    """How to read an ambiguous abbreviation ('PE', 'RA', 'LP'): 'read' as the KG's condition, 'other' (another sense:
    'PE: chest clear', 'SpO2 94% on RA') or 'unread' (no context says which: the scorer abstains on it)."""
    before, after = text[max(0, start - 40) : start], text[end : end + 4]
    if _CODE_CUE.search(before) or _CODE_QUALIFIER.search(before):
        return "read"
    if re.match(r"\s*:", after) or re.search(r"(?:\bon|\d%?)\s*$", before):
        return "other"
    if re.match(
        r"\s*(?:\?|(?:is|was)?\s*(?:likely|suspected|confirmed|possible|probable|unlikely|excluded|ruled out)\b)",
        text[end : end + 24],
        re.I,
    ):
        return "read"  # "PE likely", "RA confirmed", "PE?"
    if re.match(r"\s+(?:flare|lesions?|rash|exacerbation|relapse|crisis)\b", text[end : end + 16], re.I):
        return "read"  # "AD flare", "KS lesions on the palate"
    if re.search(r"(?:^|[.;:!?>\n])\s*$", before) and re.match(r"\s*(?:[.;,)!?<]|\s-\s|$)", after):
        return "read"  # the abbreviation is the whole answer: "CAP; amoxicillin."
    return "unread"


def _eligible(c: Claim) -> bool:
    return (
        c.node_type in ("condition", "unlisted")
        and c.polarity == PRESENT
        and not {"historical", "apposition"} & set(c.context)
    )


def _pick_diagnosis(text: str, claims: list[Claim], kg: KnowledgeGraph) -> None:
    conds = [c for c in claims if _eligible(c)]
    chosen = None
    tag = _ANSWER_TAG.search(text)
    if tag:
        inside = [
            c
            for c in claims
            if c.node_type in ("condition", "unlisted")
            and c.polarity != ABSENT
            and tag.start(1) <= c.start < tag.end(1)
        ]
        chosen = inside[0] if inside else None
    if chosen is None and conds:
        for cue_end in reversed([m.end() for m in _DX_CUE.finditer(text)]):
            after = [c for c in conds if c.start >= cue_end]
            if after:
                chosen = after[0]
                break
        else:
            chosen = conds[0]
    if chosen is not None:
        chosen.kind = "diagnosis"


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
        if c.kind == "unread":
            out.append(Verdict(c, UNVERIFIABLE, f"ambiguous abbreviation {c.text!r}: not read"))
        elif c.node_type in ("condition", "unlisted"):
            out.append(_judge_condition(c, kg, cond))
        elif c.node_type in ("treatment", "procedure"):
            out.append(_judge_action(c, kg, cond))
        else:
            out.append(_judge_finding(c, kg, cond, known, recorded))
    return out


def _judge_condition(c: Claim, kg: KnowledgeGraph, cond: str | None) -> Verdict:
    if cond is None:
        return Verdict(c, UNVERIFIABLE, "no reference condition")
    name = c.text if c.node_type == "unlisted" else kg.label(c.node_id)
    same = c.node_type == "condition" and c.node_id in kg.related(cond)
    group = same and c.node_id in kg.categories(cond)  # a parent group: a partial answer
    in_ddx = c.node_type == "condition" and c.node_id in kg.differential(cond)
    truth = kg.label(cond)
    if c.polarity == ABSENT:
        return (
            Verdict(c, CONTRADICTED, f"rules out the true condition {truth}")
            if same
            else Verdict(c, SUPPORTED, "rules out")
        )
    if c.polarity == HEDGED:
        if same:
            return Verdict(c, SUPPORTED, f"keeps the true condition {truth} open")
        return Verdict(
            c, SUPPORTED if in_ddx else UNVERIFIABLE, "in the KG differential" if in_ddx else "hedged"
        )
    if c.kind == "diagnosis":
        if group:
            return Verdict(c, SUPPORTED, f"names {name}, the group of {truth}: a partial answer")
        if same:
            return Verdict(c, SUPPORTED, f"matches {truth}")
        why = "in the differential of" if in_ddx else "is not"
        return Verdict(c, CONTRADICTED, f"{name} {why} {truth}")
    if same:
        return Verdict(c, SUPPORTED, "the true condition")
    return Verdict(
        c,
        SUPPORTED if in_ddx else UNVERIFIABLE,
        "in the KG differential" if in_ddx else "not in the KG differential",
    )


def _judge_action(c: Claim, kg: KnowledgeGraph, cond: str | None) -> Verdict:
    """A treatment or procedure against the KG's management edges for the condition (``kg.management``)."""
    label = kg.label(c.node_id)
    if cond is None:
        return Verdict(c, UNVERIFIABLE, "no reference condition")
    truth = kg.label(cond)
    if {"historical", "family"} & set(c.context):
        return Verdict(c, UNVERIFIABLE, f"{label} is not current management")
    rating = kg.management(cond, c.node_id)
    kind, attrs = rating if rating else (None, {})
    if c.polarity == HEDGED:
        return Verdict(c, UNVERIFIABLE, f"{label} only considered")
    if c.polarity == ABSENT:
        if kind in ("contraindicated", "delays"):
            return Verdict(
                c,
                SUPPORTED,
                f"{label} {'is contraindicated in' if kind == 'contraindicated' else 'delays care of'} {truth}",
            )
        if kind == "indicated" and attrs.get("line") == "first":
            return Verdict(c, CONTRADICTED, f"{label} is first line for {truth}")
        return Verdict(c, UNVERIFIABLE, f"withholding {label}")
    if kind == "contraindicated":
        return Verdict(c, CONTRADICTED, f"{label} is contraindicated in {truth}")
    if kind == "delays":
        return Verdict(c, CONTRADICTED, f"{label} delays the diagnosis or treatment of {truth}")
    if kind == "indicated":
        what = (
            f"{attrs['line']} line" if attrs.get("line") else f"part of the {attrs.get('purpose', 'work-up')}"
        )
        return Verdict(c, SUPPORTED, f"{label} is {what} for {truth}")
    return Verdict(c, UNVERIFIABLE, f"KG does not list {label} for {truth}")


def _judge_finding(
    c: Claim, kg: KnowledgeGraph, cond: str | None, known: set[str], recorded: set[str]
) -> Verdict:
    label = kg.label(c.node_id)
    if c.polarity == HEDGED:
        return Verdict(c, UNVERIFIABLE, f"{label} is only hedged")
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
    sens = kg.sensitivity_of(cond, c.node_id)
    if sens:
        return Verdict(
            c,
            CONTRADICTED,
            f"{label} is {'required for' if sens == 'required' else 'nearly always present in'} {cname}",
        )
    return Verdict(c, UNVERIFIABLE, f"{label} is {typ} in {cname} but its absence proves little")


def check_text(
    text: str, kg: KnowledgeGraph, condition: str | None, case_findings: dict | None = None
) -> list[Verdict]:
    """extract_claims + judge in one call."""
    return judge(extract_claims(text, kg), kg, condition, case_findings)
