"""Rule-based reading of a Clinical-R1 response against its question: what the CRPO rewards and the evaluation count.

`analyse(completion, options, gold, case, case_findings)` finds: the boxed letter, the option the reasoning concludes
for, the case findings it cites and the findings it asserts that the case does not hold, which wrong options it rules
out with a reason, which kinds of case finding it covers, and its verification and backtracking sentences.
Options are recognised by letter ('option B', '(B)', 'B)'), by their text, and through the KG (an option naming a KG
node is also found by that node's aliases). Pure functions of their inputs; compiled patterns are cached per
option set, KG matching per text (`clinical.mentions`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from knowledge_graph.kg import KnowledgeGraph
from knowledge_graph.lexicon import normalize

from .mentions import ABSENT, FINDING_TYPES, Mention, finder
from .prompts import Response, parse_response

_SENT = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
# A conclusion: an answer statement, or failing one, an option the evidence is said to point to or fit ('consistent
# with' is also how a check sentence speaks, so it names the conclusion only where no answer statement does).
STRONG_CONCLUDE = re.compile(
    r"\b(?:most likely|most consistent|most probable|best (?:answer|explains|explanation|fits|option|choice)|"
    r"(?:correct|right|best|final) (?:answer|option|choice)|answer (?:is|would be)|diagnosis (?:is|would be)|"
    r"therefore|thus|hence|in conclusion|i (?:choose|select|pick|will go with)|so (?:the|it|this))\b",
    re.I,
)
WEAK_CONCLUDE = re.compile(r"\b(?:points? (?:to|towards)|consistent with|in keeping with)\b", re.I)
CONCLUDE = re.compile(f"{STRONG_CONCLUDE.pattern}|{WEAK_CONCLUDE.pattern}", re.I)
REJECT = re.compile(
    r"\b(?:unlikely|less likely|not likely|improbable|rules? out|ruled out|excluded?|excludes|eliminat\w*|"
    r"(?:does not|doesn't|do not|don't|would not|wouldn't|cannot|can't) (?:fit|explain|account|match|support|cause)\w*|"
    r"not (?:consistent|compatible|supported|typical|the answer|correct|likely|right)|inconsistent|incompatible|"
    r"argues? against|goes against|incorrect|wrong|rather than|instead of|no evidence (?:of|for))\b",
    re.I,
)
REASON = re.compile(
    r"\b(?:because|since|given|due to|as (?:there|the|it|this|she|he|they|we)|without|absence of|lack of|"
    r"which would|would (?:cause|present|show|expect|give|produce)|typically|usually|classically|requires?|"
    r"presents? with|characteri[sz]ed by)\b|:",
    re.I,
)
VERIFY = re.compile(
    r"\b(?:consistent with|in keeping with|confirm\w*|support\w*|fits?|explains?|explained|accounts? for|verif\w*|"
    r"check\w*|double-check\w*|matches|corroborat\w*|agrees? with|compatible with)\b",
    re.I,
)
BACKTRACK = re.compile(
    r"\b(?:wait|on second thought|let me reconsider|reconsider\w*|re-?evaluat\w*|let me re-?check|i was wrong|"
    r"that(?:'s| is) not right|let me rethink|i made (?:a|an) (?:mistake|error))\b",
    re.I,
)
_NEG_BEFORE = re.compile(
    r"\b(?:not|no|rather than|instead of|against|exclude|excluding|unlike)\s+(?:\w+\s+){0,2}$", re.I
)
_NEG_AFTER = re.compile(
    r"^\W*(?:(?:is|are|was|seems|appears|would be)\s+)?(?:unlikely|less likely|not likely|"
    r"ruled out|excluded|incorrect|wrong|not\b)",
    re.I,
)
_STOP = frozenset(
    "which what with that this from have their there these those were been being into most following patient "
    "presents presented history year years old male female woman women child about after before also than then "
    "when where while does doing would could should other some such only very more less each both shows showed "
    "likely diagnosis options answer best following".split()
)


@dataclass
class OptionMention:
    letter: str
    start: int
    end: int
    negated: bool


@dataclass
class Analysis:
    """Everything the CRPO objectives and the evaluation read off one response (ids are KG node ids)."""

    response: Response
    boxed: str | None  # the letter in the single \boxed{}, else None
    concluded: str | None  # the option the reasoning concludes for
    case_findings: set[str] = field(default_factory=set)  # findings present in the case
    cited: set[str] = field(default_factory=set)  # case findings the reasoning uses
    asserted: set[str] = field(default_factory=set)  # findings the reasoning says this patient has
    hallucinated: set[str] = field(default_factory=set)  # asserted but not in the case
    misreported: set[str] = field(default_factory=set)  # said to be absent although the case has them
    case_words: int = 0  # salient case words (the evidence fallback when the KG finds no finding in the case)
    cited_words: int = 0
    considered: set[str] = field(default_factory=set)  # options the reasoning mentions
    rejected: set[str] = field(default_factory=set)  # wrong options ruled out with a reason
    self_rejected: bool = False  # the response rules out an option it answers (boxed or concluded)
    types_case: set[str] = field(default_factory=set)
    types_cited: set[str] = field(default_factory=set)
    verifications: int = 0
    backtracks: int = 0


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line, blank ones dropped."""
    return [(m.start(), m.end()) for m in _SENT.finditer(text) if m.group().strip()]


@functools.lru_cache(maxsize=4096)
def _option_patterns(options: tuple[tuple[str, str], ...]) -> tuple[re.Pattern, dict[str, re.Pattern]]:
    letters = "".join(k for k, _ in options)
    cls = f"[{re.escape(letters)}]"
    letter = re.compile(
        rf"(?:\b(?:[Oo]ption|[Cc]hoice|[Aa]nswer)s?\s*\(?({cls})\b\)?|\(({cls})\)|(?<![\w\\{{(])({cls})\)|"
        rf"(?m:^)[ \t]*[-*]?[ \t]*({cls})[.:][ \t]|\b(?:is|be|choose|select|pick)\s+({cls})\b(?![\w'-]))"
    )
    texts = {}
    for k, v in options:
        words = normalize(v).split()
        if words:
            texts[k] = re.compile(
                r"(?i)(?<!\w)" + r"\W+".join(re.escape(w) for w in words) + r"(?:e?s)?(?!\w)"
            )
    return letter, texts


def option_mentions(
    text: str, options: dict[str, str], kg: KnowledgeGraph | None = None, mentions: tuple[Mention, ...] = ()
) -> list[OptionMention]:
    """Every place ``text`` names an option, by letter, by its text or by a KG alias, in order of position."""
    letter_re, text_res = _option_patterns(tuple(sorted(options.items())))
    found: dict[tuple[int, int], OptionMention] = {}
    for m in letter_re.finditer(text):
        k = next(g for g in m.groups() if g)
        found[m.span()] = OptionMention(k, m.start(), m.end(), _negated_near(text, m.start(), m.end()))
    for k, rx in text_res.items():
        for m in rx.finditer(text):
            found.setdefault(
                m.span(), OptionMention(k, m.start(), m.end(), _negated_near(text, m.start(), m.end()))
            )
    if kg is not None and mentions:
        ids = {k: kg.canonical(v) for k, v in options.items()}
        by_id = {nid: k for k, nid in ids.items() if nid is not None}
        for mt in mentions:
            if mt.node_id in by_id and not any(a <= mt.start < b for a, b in found):
                neg = mt.polarity == ABSENT or _negated_near(text, mt.start, mt.end)
                found[(mt.start, mt.end)] = OptionMention(by_id[mt.node_id], mt.start, mt.end, neg)
    # 'ST-elevation myocardial infarction' inside 'non-ST-elevation myocardial infarction' names only the longer one
    spans = list(found.values())
    kept = [
        o
        for o in spans
        if not any(p.start <= o.start and o.end <= p.end and p.end - p.start > o.end - o.start for p in spans)
    ]
    return sorted(kept, key=lambda o: o.start)


def _negated_near(text: str, start: int, end: int) -> bool:
    return bool(
        _NEG_BEFORE.search(text[max(0, start - 30) : start]) or _NEG_AFTER.search(text[end : end + 30])
    )


def concluded_option(text: str, mentions: list[OptionMention]) -> str | None:
    """The option named (not negated) after the last answer-statement cue of the last sentence that has one; else the
    same with the weak cues ('So the answer is A. Check: ... consistent with E.' concludes A)."""
    spans = sentences(text)
    for cue_re in (STRONG_CONCLUDE, WEAK_CONCLUDE):
        for a, b in reversed(spans):
            cues = [m.end() for m in cue_re.finditer(text, a, b)]
            for cue in reversed(cues):
                after = [o for o in mentions if cue <= o.start < b and not o.negated]
                if after:
                    return after[0].letter
    return None


def salient_words(text: str) -> set[str]:
    """Content words of a case (4+ letters, not stop words): what a non-KG question's evidence is matched on."""
    return {w for w in normalize(text).split() if len(w) >= 4 and w.isalpha() and w not in _STOP}


def case_findings(case: str, kg: KnowledgeGraph, known: dict | None = None) -> set[str]:
    """Findings present in the case: KG terms found in its text (not negated), plus ``known`` ids (vignettes)."""
    ids = {m.node_id for m in finder(kg).find(case) if m.node_type in FINDING_TYPES and m.polarity != ABSENT}
    for values in (known or {}).values():
        ids.update(
            v for v in (values if isinstance(values, list) else [values]) if isinstance(v, str) and v in kg
        )
    return {i for i in ids if kg.type(i) in FINDING_TYPES}


def analyse(
    completion: str,
    options: dict[str, str],
    gold: str | None,
    case: str,
    kg: KnowledgeGraph,
    known: dict | None = None,
    surfaces: dict[str, str] | None = None,
) -> Analysis:
    """Read one response. ``known``: finding ids the case is built from; ``surfaces``: id -> the text the case
    shows for it ('troponin I 2.1 ng/mL'), so a quoted value counts as citing that finding."""
    r = parse_response(completion)
    reasoning = r.reasoning
    boxed = r.boxes[0].strip() if r.box_count == 1 and len(r.boxes) == 1 else None
    boxed = boxed if boxed and len(boxed) == 1 and boxed in options else None
    f = finder(kg)
    in_case = case_findings(case, kg, known)
    ments = f.find(reasoning)
    findings = [m for m in ments if m.node_type in FINDING_TYPES]
    cited = {m.node_id for m in findings if m.node_id in in_case and m.polarity != ABSENT}
    low = normalize(reasoning)
    read = {m.node_id for m in findings}
    for nid, surface in (
        surfaces or {}
    ).items():  # a quoted value ('troponin I 2.1') the KG reader cannot see
        s = normalize(re.sub(r"\(.*?\)", " ", surface))
        if nid in in_case and nid not in read and s and re.search(rf"(?<!\w){re.escape(s)}(?!\w)", low):
            cited.add(nid)
    asserted = {m.node_id for m in findings if m.polarity == "present" and not m.general}
    misreported = {m.node_id for m in findings if m.polarity == ABSENT and m.node_id in in_case} - cited
    a = Analysis(
        response=r,
        boxed=boxed,
        concluded=None,
        case_findings=in_case,
        cited=cited,
        asserted=asserted,
        hallucinated=asserted - in_case,
        misreported=misreported,
    )
    words = salient_words(case) - set().union(*(salient_words(v) for v in options.values()))
    a.case_words, a.cited_words = len(words), len(words & set(low.split()))
    omen = option_mentions(reasoning, options, kg, ments)
    a.considered = {o.letter for o in omen}
    a.concluded = concluded_option(reasoning, omen)
    chosen = boxed or a.concluded
    owns = {x for x in (boxed, a.concluded) if x is not None}
    wrong = set(options) - {gold if gold in options else chosen}
    for s, e in sentences(reasoning):
        here = [o for o in omen if s <= o.start < e]
        if not here:
            continue
        sent = reasoning[s:e]
        has_reason = bool(REASON.search(sent)) or any(s <= m.start < e for m in findings)
        rejecting = bool(REJECT.search(sent))
        for o in here:
            if o.letter in wrong and has_reason and (rejecting or o.negated):
                a.rejected.add(o.letter)
        # Its own answer is ruled out when negated, or when it is what a rejecting sentence is about (named first:
        # 'C) less likely', not 'B is less likely than C'). Its own answer is the boxed option and the concluded one:
        # ruling out what it concludes and boxing another it left standing is no discrimination either (CRPO found
        # it: coverage credit for a box that contradicts the conclusion).
        if any(
            any(o.letter == own and o.negated for o in here)
            or (rejecting and here[0].letter == own and not CONCLUDE.search(sent))
            for own in owns
        ):
            a.self_rejected = True
    a.types_case = {kg.type(i) for i in in_case}
    a.types_cited = {kg.type(i) for i in cited}
    a.verifications = _verifications(r, options, chosen, in_case, words, kg, f)
    a.backtracks = len(BACKTRACK.findall(reasoning))
    return a


def _verifications(
    r: Response,
    options: dict[str, str],
    chosen: str | None,
    in_case: set[str],
    words: set[str],
    kg: KnowledgeGraph,
    f,
) -> int:
    """Sentences that check the chosen option against the case: a verification cue, the option, a case finding."""
    if chosen is None:
        return 0
    n = 0
    for text in (r.reasoning, r.summary):
        ments = f.find(text)
        omen = option_mentions(text, options, kg, ments)
        for s, e in sentences(text):
            sent = text[s:e]
            if not VERIFY.search(sent) or not any(o.letter == chosen and s <= o.start < e for o in omen):
                continue
            grounded = any(s <= m.start < e and m.node_id in in_case for m in ments) or (
                not in_case and len(words & set(normalize(sent).split())) >= 1
            )
            n += grounded
    return n
