"""CRPO objectives for Clinical-R1: separate, rule-based, verifiable rewards, one float per completion.

Registered names and ranges (record fields arrive as lists, one entry per completion: ``answer``, ``meta``):

=============================  ===========  =====================================================================
``clinical_accuracy``          {-n,..,1}    one ``\\boxed{}`` holding the gold letter 1, another letter 0, not a letter
                                            -0.5, no box parses -1, n > 1 boxes -n (the released rule)
``clinical_format``            [0, 1.5]     ``<think>..</think><answer>..</answer>`` and nothing else 1, +0.5 when the
                                            answer is a summary plus exactly one box (the released rule)
``clinical_language``          [0, 1]       share of English characters (the released rule, clinical symbols allowed)
``clinical_faithfulness``      [-1, 1]      0.5 evidence - 0.5 hallucination + 0.5 consistency
``clinical_comprehensiveness`` [0, 1]       0.5 distractor rejection + 0.25 finding-type coverage + 0.25 verification
=============================  ===========  =====================================================================

Faithfulness: *evidence* = case findings the reasoning cites / min(3, findings in the case), capped at 1 (a case the
KG finds no finding in falls back to its salient words: cited / min(5, words)); *hallucination* = (findings asserted
for this patient that the case does not hold + case findings called absent) / (findings asserted + those called
absent), 0 when none; *consistency* = +1 when the option the reasoning concludes for is the boxed one, -1 when it
concludes for another or for none, 0 when there is no single box. Comprehensiveness: *rejection* = wrong options
ruled out with a reason / wrong options, 0 when the response also rules out an option it answers (boxed or
concluded); *coverage* = kinds of case finding (symptom, sign, lab, imaging, risk factor) cited / kinds in the case
(left out, weights renormalised, when the case has none); *verification* = 1 if a sentence checks the chosen option
against a case finding. How each is read: `clinical.reasoning`.

Recommended weights (accuracy dominant, as the paper's code: accuracy 10, format 1, language 0.5):
``rewards: {clinical_accuracy: 10, clinical_format: 1, clinical_language: 0.5, clinical_faithfulness: 1,
clinical_comprehensiveness: 1}`` with ``reward_modules: [clinical.rewards]``. Plain GRPO for the ablation is the
same without the two CRPO objectives.

Differences from the released code, on purpose: a response with no ``\\boxed`` at all scores -1 (there ``-count``
gives 0, as good as a wrong letter, so nothing pushes a policy to answer); the box content is stripped of spaces
before the letter test; the format needs each tag exactly once and a non-blank think and answer (there a second
``<answer>`` or an empty ``<think></think>`` passed). Everything is built once per process (KG, lexicon, spaCy
pipeline, option patterns) and the analysis is cached per (completion, question), so the two CRPO objectives read
a completion once.
"""

from __future__ import annotations

import functools
import json
import re

from knowledge_graph.kg import KnowledgeGraph
from training.objectives.rewards import reward
from training.rollout.responses import box_count, boxes, strict_parts, without_boxes

from .reasoning import Analysis, analyse

EVIDENCE_FINDINGS, EVIDENCE_WORDS = 3, 5
W_REJECT, W_COVER, W_VERIFY = 0.5, 0.25, 0.25
# English letters, digits, ASCII punctuation and whitespace, plus symbols clinical English uses.
_ENGLISH = frozenset(chr(c) for c in range(32, 127)) | set("\n\t\r°µ±×÷≤≥–—‘’“”…·•→←↑↓")
_LETTER = re.compile(r"[A-Z]")
_KG: list[KnowledgeGraph] = []


def kg() -> KnowledgeGraph:
    """The KG the CRPO objectives read findings with: the built-in clinical one unless `use_kg` set another."""
    if not _KG:
        from knowledge_graph.io import load_builtin

        _KG.append(load_builtin("clinical"))
    return _KG[0]


def use_kg(graph: KnowledgeGraph) -> None:
    """Score with a user's KG (``--kg`` of the pipeline); clears the cached analyses."""
    _KG[:] = [graph]
    _cached.cache_clear()


# ---------------------------------------------------------------------------------------------- the released three
def accuracy_score(text: str, gold: str | None) -> float:
    """1 / 0 / -0.5 (not a letter) / -1 (no box parses) / -n (n boxes)."""
    n = box_count(text)
    if n > 1:
        return -float(n)
    found = boxes(text) if n == 1 else []
    if not found:
        return -1.0
    inside = found[0].strip()
    if len(inside) != 1 or not _LETTER.fullmatch(inside):
        return -0.5
    return 1.0 if gold is not None and inside == str(gold).strip().upper() else 0.0


def format_score(text: str) -> float:
    """1 for the tag structure alone, +0.5 when the answer holds a summary and exactly one box."""
    parts = strict_parts(text.strip(), ignore_case=False)
    if parts is None:
        return 0.0
    answer = parts[1].strip()
    return (
        1.5
        if len(boxes(answer)) == 1 and box_count(answer) == 1 and without_boxes(answer, "").strip()
        else 1.0
    )


def language_score(text: str) -> float:
    """Share of characters that are English text or clinical notation; 0 for an empty response."""
    return sum(c in _ENGLISH for c in text) / len(text) if text else 0.0


@reward("clinical_accuracy")
def accuracy(prompts, completions, answer=None, **_) -> list[float]:
    """Range {-n, ..., -1, -0.5, 0, 1}: see accuracy_score."""
    golds = answer if answer is not None else [None] * len(completions)
    return [accuracy_score(c, g) for c, g in zip(completions, golds, strict=True)]


@reward("clinical_format")
def format_reward(prompts, completions, **_) -> list[float]:
    """Range [0, 1.5]."""
    return [format_score(c) for c in completions]


@reward("clinical_language")
def language(prompts, completions, **_) -> list[float]:
    """Range [0, 1]."""
    return [language_score(c) for c in completions]


# ---------------------------------------------------------------------------------------------- CRPO objectives
def question_of(prompt: list | None, meta: dict | None) -> tuple[str, dict[str, str]]:
    """(case text, options) from the record's meta, else parsed back from the prompt's last user turn."""
    meta = meta or {}
    options = meta.get("options")
    case = meta.get("case")
    if isinstance(options, dict) and isinstance(case, str):
        return case, options
    user = next((m["content"] for m in reversed(prompt or []) if m.get("role") == "user"), "")
    if isinstance(user, list):
        user = " ".join(p.get("text", "") for p in user if isinstance(p, dict))
    head, _, tail = user.partition("\nOptions:\n")
    if not isinstance(options, dict):
        lines = re.findall(r"(?m)^([A-J])\) (.+)$", tail or user)
        options = dict(lines)
    if not isinstance(case, str):
        case = head if tail else re.split(r"(?m)^A\) ", user)[0]
    return case.strip(), options


def _frozen(v) -> str:
    return json.dumps(v, sort_keys=True, default=str)


@functools.lru_cache(maxsize=4096)
def _cached(
    completion: str, case: str, options: str, gold: str | None, known: str, surfaces: str
) -> Analysis:
    return analyse(
        completion,
        json.loads(options),
        gold,
        case,
        kg(),
        json.loads(known) or None,
        json.loads(surfaces) or None,
    )


def analysis(prompt: list | None, completion: str, gold: str | None, meta: dict | None) -> Analysis:
    """The (cached) reading of one completion of one record."""
    meta = meta or {}
    case, options = question_of(prompt, meta)
    known = meta.get("finding_ids") if isinstance(meta.get("finding_ids"), dict) else {}
    surfaces = {}
    if isinstance(meta.get("findings"), dict):
        for section, texts in meta["findings"].items():
            for nid, text in zip(
                known.get(section, []), texts if isinstance(texts, list) else [], strict=False
            ):
                surfaces[nid] = text
    return _cached(completion, case, _frozen(options), gold, _frozen(known), _frozen(surfaces))


def faithfulness_parts(a: Analysis) -> dict[str, float]:
    if a.case_findings:
        evidence = min(1.0, len(a.cited) / min(EVIDENCE_FINDINGS, len(a.case_findings)))
    elif a.case_words:
        evidence = min(1.0, a.cited_words / min(EVIDENCE_WORDS, a.case_words))
    else:
        evidence = 0.0
    claims = len(a.asserted) + len(a.misreported)
    halluc = (len(a.hallucinated) + len(a.misreported)) / claims if claims else 0.0
    # A box the reasoning does not conclude for is unsupported, whether it concluded another option or none (scoring
    # 'none' above 'another' would pay a policy to stop concluding); no single box is the accuracy objective's to punish.
    consistency = 0.0 if a.boxed is None else 1.0 if a.boxed == a.concluded else -1.0
    return {"evidence": evidence, "hallucination": halluc, "consistency": consistency}


def faithfulness_score(a: Analysis) -> float:
    p = faithfulness_parts(a)
    return 0.5 * p["evidence"] - 0.5 * p["hallucination"] + 0.5 * p["consistency"]


def comprehensiveness_parts(
    a: Analysis, options: dict[str, str], gold: str | None
) -> dict[str, float | None]:
    chosen = gold if gold in options else a.boxed or a.concluded
    wrong = set(options) - {chosen}
    # Ruling out the option it answers makes its rejections no evidence of discrimination ('every option is less
    # likely' would otherwise score full coverage without deciding anything).
    rejection = len(a.rejected & wrong) / len(wrong) if wrong and not a.self_rejected else 0.0
    coverage = len(a.types_cited) / len(a.types_case) if a.types_case else None
    return {"rejection": rejection, "coverage": coverage, "verification": 1.0 if a.verifications else 0.0}


def comprehensiveness_score(a: Analysis, options: dict[str, str], gold: str | None) -> float:
    p = comprehensiveness_parts(a, options, gold)
    if p["coverage"] is None:
        return (W_REJECT * p["rejection"] + W_VERIFY * p["verification"]) / (W_REJECT + W_VERIFY)
    return W_REJECT * p["rejection"] + W_COVER * p["coverage"] + W_VERIFY * p["verification"]


def _rows(prompts, completions, answer, meta):
    n = len(completions)
    prompts = prompts if prompts is not None else [None] * n
    answer = answer if answer is not None else [None] * n
    meta = meta if meta is not None else [None] * n
    return zip(prompts, completions, answer, meta, strict=True)


@reward("clinical_faithfulness")
def faithfulness(prompts, completions, answer=None, meta=None, **_) -> list[float]:
    """Range [-1, 1]: 0.5 evidence - 0.5 hallucination + 0.5 consistency (module docstring)."""
    return [
        faithfulness_score(analysis(p, c, g, m)) for p, c, g, m in _rows(prompts, completions, answer, meta)
    ]


@reward("clinical_comprehensiveness")
def comprehensiveness(prompts, completions, answer=None, meta=None, **_) -> list[float]:
    """Range [0, 1]: 0.5 distractor rejection + 0.25 finding-type coverage + 0.25 verification (module docstring)."""
    out = []
    for p, c, g, m in _rows(prompts, completions, answer, meta):
        _, options = question_of(p, m)
        out.append(comprehensiveness_score(analysis(p, c, g, m), options, g))
    return out
