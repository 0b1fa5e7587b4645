"""DermIQ rewards: rule-based and verifiable, one float per completion (``reward_modules: [dermiq.rewards]``).

Record fields arrive as lists, one entry per completion: ``answer`` (the true label) and ``meta`` (``condition_id``;
``members`` for a DermNet group folder).

========================  ===========  ===========================================================================
``derm_accuracy``         {7, -1}      +7 when the ``<answer>`` names the true condition, -1 otherwise (the first
                                       author's earlier code); no ``<answer>`` tag is wrong too
``derm_format``           [0, 1]       0.5 the tags (one ``<think>`` then one ``<answer>``, nothing outside, neither
                                       blank) + 0.1 per analysis heading with text in ``<think>`` (4 headings) + 0.1
                                       when the answer is written as one of the prompt's labels
``derm_kg_consistency``   [-1, 1]      of the findings the response describes, share the KG supports for the
                                       *answered* condition minus share it contradicts; 0 without an answer that
                                       names a KG condition or without any finding; an answered DermNet group
                                       folder is judged against its best-agreeing member
========================  ===========  ===========================================================================

Correct means: the answer resolves through the KG lexicon (label, alias, dataset code; punctuation and case aside;
else the one condition the answer mentions, none when it mentions two) to the record's condition, a group it belongs
to or one of its subtypes (HAM10000 ``akiec`` is the group of actinic keratosis and Bowen's disease), or, for a
DermNet group folder, to one of its members (``meta.members``) or theirs. KG consistency rewards a reasoning that
agrees with its own conclusion (it is judged against the answered condition, not the true one): accuracy decides
whether the conclusion is right. Findings are read by the claim checker (``knowledge_graph.claims``: KG lexicon and
ConText polarity); a finding stated as absent counts for or against like any other claim.

Recommended weights: ``{derm_accuracy: 1, derm_format: 1, derm_kg_consistency: 1}`` with
``advantages.correct_reward: derm_accuracy`` (threshold 1). Everything is built once per process (KG, lexicon,
medspaCy pipeline) and answers and analyses are cached, so a group's repeated answers cost one lookup.
"""

from __future__ import annotations

import functools

from knowledge_graph.claims import CONTRADICTED, SUPPORTED, extract_claims, judge
from knowledge_graph.kg import KnowledgeGraph
from knowledge_graph.lexicon import normalize
from training.objectives.rewards import reward

from .prompts import SECTIONS, in_label_set, labels_of, parse_response

CORRECT, WRONG = 7.0, -1.0
PARTIAL = (CORRECT + WRONG) / 2  # a parent group: halfway
W_TAGS, W_SECTION, W_LABEL = 0.5, 0.1, 0.1
_ANSWERABLE = ("condition", "category")
_KG: list[KnowledgeGraph] = []


def kg() -> KnowledgeGraph:
    """The KG the rewards read with: the built-in dermatology one unless ``use_kg`` set another."""
    if not _KG:
        from knowledge_graph.io import load_builtin

        _KG.append(load_builtin("derm"))
    return _KG[0]


def use_kg(graph: KnowledgeGraph) -> None:
    """Score with a user's KG (a pipeline's ``--kg``); clears every cache built on the old one."""
    _KG[:] = [graph]
    for fn in (resolve_answer, truth_set, partial_set, _consistency):
        fn.cache_clear()


# ---------------------------------------------------------------------------------------------- names
@functools.lru_cache(maxsize=16384)
def resolve_answer(answer: str | None) -> str | None:
    """The condition (or DermNet group) an answer names; None when it names none, an unmodelled one, or two."""
    g = kg()
    key = normalize(answer or "")
    if not key:
        return None
    padded = f" {key} "
    if any(f" {u} " in padded for u in g.lexicon.unlisted):  # 'viral wart' is not 'wart'
        return None
    nid = g.canonical(answer)
    if nid is None:
        found = {n for n, *_ in g.lexicon.find(answer) if n in g and g.type(n) in _ANSWERABLE}
        nid = found.pop() if len(found) == 1 else None
    return nid if nid is not None and g.type(nid) in _ANSWERABLE else None


@functools.lru_cache(maxsize=4096)
def truth_set(condition: str | None, members: tuple[str, ...] = ()) -> frozenset[str]:
    """Every node whose naming is the right answer: the condition and its subtypes; a group folder's members.

    A parent group of the condition (naming 'acute coronary syndrome' for a STEMI) is a partial answer
    (``partial_set``), and a sibling in the group is a wrong one."""
    g = kg()
    out: set[str] = set()
    for term in (condition, *members):
        nid = g.canonical(term) if term else None
        if nid is None:
            continue
        out.add(nid)
        if g.type(nid) == "condition":
            out |= set(g.members(nid))
        elif g.type(nid) == "category":
            inner = members or tuple(g.members(nid))
            out |= {r for m in inner if m in g for r in (m, *g.members(m))}
    return frozenset(out)


@functools.lru_cache(maxsize=4096)
def partial_set(condition: str | None, members: tuple[str, ...] = ()) -> frozenset[str]:
    """Parent groups of the right answer that are conditions themselves (a partial answer), minus the right answers."""
    g = kg()
    exact = truth_set(condition, members)
    out = {p for nid in exact for p in g.categories(nid) if g.type(p) == "condition"}
    return frozenset(out - exact)


def record_truth(answer: str | None, meta: dict | None) -> frozenset[str]:
    meta = meta or {}
    return truth_set(meta.get("condition_id") or answer, tuple(meta.get("members") or ()))


def record_partial(answer: str | None, meta: dict | None) -> frozenset[str]:
    meta = meta or {}
    return partial_set(meta.get("condition_id") or answer, tuple(meta.get("members") or ()))


# ---------------------------------------------------------------------------------------------- scores
def accuracy_score(text: str, answer: str | None, meta: dict | None = None) -> float:
    """+7 if the ``<answer>`` names the true condition (or a subtype, or a member of a group folder), +3 for a parent
    group of it (a partial answer), else -1."""
    said = resolve_answer(parse_response(text).answer)
    if said is None:
        return WRONG
    if said in record_truth(answer, meta):
        return CORRECT
    return PARTIAL if said in record_partial(answer, meta) else WRONG


def format_score(text: str, prompt: list[dict] | None = None) -> float:
    """0.5 tags + 0.1 per heading with text + 0.1 answer in the prompt's label set (any KG condition if none listed)."""
    r = parse_response(text)
    labels = labels_of(prompt)
    named = in_label_set(r.answer, labels) if labels else resolve_answer(r.answer) is not None
    return W_TAGS * r.well_formed + W_SECTION * sum(s in r.sections for s in SECTIONS) + W_LABEL * named


def well_formed(text: str, prompt: list[dict] | None = None) -> bool:
    """The full DermIQ layout: tags, four headings with text, an answer in the label set (format score 1.0)."""
    return format_score(text, prompt) >= 1.0 - 1e-9


def judged_against(node: str) -> list[str]:
    """The conditions a finding is judged against: the node itself, or (a DermNet group folder, a group without
    findings of its own) its members, the best-agreeing one counting."""
    g = kg()
    if g.type(node) == "condition" and g.features(node):
        return [node]
    return sorted(m for m in g.members(node) if g.features(m)) or [node]


@functools.lru_cache(maxsize=8192)
def _consistency(findings_text: str, condition: str) -> tuple[int, int, int]:
    claims = [c for c in extract_claims(findings_text, kg()) if c.kind == "finding"]
    if not claims:
        return (0, 0, 0)
    parts = []
    for target in judged_against(condition):
        verdicts = judge(claims, kg(), target)
        parts.append(
            (
                sum(v.verdict == SUPPORTED for v in verdicts),
                sum(v.verdict == CONTRADICTED for v in verdicts),
                len(verdicts),
            )
        )
    return max(parts, key=lambda p: p[0] - p[1])  # ties: the first member in name order


def consistency_parts(text: str) -> tuple[int, int, int]:
    """(supported, contradicted, all) findings of the response, judged against its own answer; zeros without one."""
    r = parse_response(text)
    said = resolve_answer(r.answer)
    return (0, 0, 0) if said is None else _consistency(r.findings_text, said)


def consistency_score(text: str) -> float:
    supported, contradicted, n = consistency_parts(text)
    return (supported - contradicted) / n if n else 0.0


# ---------------------------------------------------------------------------------------------- registered
def _each(values, n: int) -> list:
    return list(values) if values is not None else [None] * n


@reward("derm_accuracy")
def accuracy(prompts, completions, answer=None, meta=None, **_) -> list[float]:
    """{7, -1}: see accuracy_score."""
    n = len(completions)
    return [
        accuracy_score(c, a, m) for c, a, m in zip(completions, _each(answer, n), _each(meta, n), strict=True)
    ]


@reward("derm_format")
def format_reward(prompts, completions, **_) -> list[float]:
    """[0, 1]: see format_score."""
    return [format_score(c, p) for c, p in zip(completions, _each(prompts, len(completions)), strict=True)]


@reward("derm_kg_consistency")
def kg_consistency(prompts, completions, **_) -> list[float]:
    """[-1, 1]: see consistency_score."""
    return [consistency_score(c) for c in completions]
