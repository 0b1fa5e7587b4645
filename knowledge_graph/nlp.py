"""The medspaCy pipeline behind claim checking: the KG lexicon as TargetRules, ConText for polarity.

Why medspaCy: its ConText algorithm scopes negation, uncertainty, history and family cues over whole lists ("no
fever, cough or haemoptysis"), lets longer cues win over shorter ones ("cannot be ruled out" over "ruled out") and
stops at terminators ("but"), which hand-written clause scopes kept getting wrong. spaCy and medspaCy are imported
only when text is checked (never torch); one pipeline is built per KG and cached on it.
"""

from __future__ import annotations

import re
import threading
import warnings

from .context_rules import CONTEXT_RULES
from .kg import KnowledgeGraph
from .lexicon import normalize

ABSENT_MARK = "#absent"  # suffix of a target label whose phrase states the finding is absent ('afebrile')
CODE_MARK = (
    "#code"  # suffix of a target label matched by an abbreviation ('PE'): kept only after a diagnostic cue
)
_LOCK = threading.Lock()

# Direction words for findings with values ("troponin was raised", "normal troponin").
_UP = r"(?:raised|elevated|high|increased|positive|up)"
_DOWN = r"(?:low|reduced|decreased|deficient)"
_POS = r"(?:positive|detected)"
_NORMAL = r"(?:normal|negative|unremarkable|within normal limits|not raised|not elevated)"
_WORDS = {"high": _UP, "low": _DOWN, "positive": _POS}
_VERB = r"(?:\s+(?:was|were|is|are|level was|levels were|came back))?"


def _word_pattern(word: str) -> str:
    """A regex for one normalized word that also accepts American spellings and possessive/plain forms."""
    base, poss = (word[:-2], True) if word.endswith("'s") else (word, False)
    out = re.escape(base)
    for brit, either in (("ae", "a?e"), ("oe", "o?e")):
        if brit in base[1:]:
            out = out.replace(brit, either)
    if base.startswith("oe"):
        out = "o?" + out[1:]
    if base.endswith("our"):
        out = out[:-3] + "ou?r"
    if base == "grey":
        out = "gr[ae]y"
    if "sulf" in base:
        out = out.replace("sulf", "sul(?:f|ph)")
    if base.endswith("s") and not poss:
        out += "'?"  # "Graves' disease"
    if poss:
        out += r"(?:['’]s|s)?"
    return out


_START, _END = r"(?i)(?<![\w])(?<!\w-)", r"(?![\w])(?!-\w)"


def _term_body(term: str) -> str:
    """Regex for a normalized lexicon term: any case, hyphens/spaces between words, optional plural."""
    words = term.split()
    parts = [_word_pattern(w) for w in words]
    last = words[-1]
    if last[-1].isalpha() and not last.endswith("s") and not last.endswith("'s"):
        parts[-1] += r"(?:e?s)?"
    return r"[\s\-/]+".join(parts)


def term_pattern(term: str) -> str:
    """Regex for a normalized lexicon term: any case, hyphens/spaces between words, optional plural. A term glued to
    another word by a hyphen is part of that word: 'mono-arthritis' is not mono(nucleosis)."""
    return _START + _term_body(term) + _END


def _value_rules(kg: KnowledgeGraph) -> list[tuple[str, str, str]]:
    """(literal, label, regex) for lab findings written with a direction: 'troponin was raised', 'normal D-dimer'."""
    by_test: dict[tuple[str, str], list[str]] = {}
    for nid in kg.nodes("lab_finding"):
        node = kg.node(nid)
        test, direction = node.get("test"), node.get("direction")
        if not test or direction not in _WORDS:
            continue
        names = {normalize(test)}
        words = normalize(test).split()
        if len(words) > 1 and len(words[-1]) == 1:  # 'troponin i' -> 'troponin'
            names.add(" ".join(words[:-1]))
        for name in names:
            by_test.setdefault((name, direction), []).append(nid)
    rules = []
    for (name, direction), nids in by_test.items():
        if len(nids) != 1:
            continue  # two findings share this test and direction: the wording cannot say which
        nid, test = nids[0], _term_body(name)
        word = _WORDS[direction]
        start, end = r"(?i)(?<![\w])", r"(?![\w])"
        rules.append((f"{word} {name}", nid, f"{start}{word}\\s+{test}{end}"))
        rules.append((f"{name} {word}", nid, f"{start}{test}{_VERB}\\s+{word}{end}"))
        rules.append((f"normal {name}", nid + ABSENT_MARK, f"{start}{_NORMAL}\\s+{test}{end}"))
        rules.append((f"{name} normal", nid + ABSENT_MARK, f"{start}{test}{_VERB}\\s+{_NORMAL}{end}"))
    return rules


def target_rules(kg: KnowledgeGraph) -> list:
    """The KG lexicon as medspaCy TargetRules (labels = node ids; absent phrases and unlisted names marked)."""
    from medspacy.ner import TargetRule

    lex = kg.lexicon
    rules = [TargetRule(term, nid, pattern=term_pattern(term)) for term, nid in lex.terms.items()]
    rules += [
        TargetRule(term, nid + ABSENT_MARK, pattern=term_pattern(term)) for term, nid in lex.absent.items()
    ]
    rules += [TargetRule(term, label, pattern=term_pattern(term)) for term, label in lex.unlisted.items()]
    rules += [
        TargetRule(
            term.upper(), nid + CODE_MARK, pattern=r"(?<![\w/])" + re.escape(term.upper()) + r"s?(?![\w/])"
        )
        for term, nid in lex.codes.items()
    ]
    rules += [TargetRule(lit, label, pattern=pat) for lit, label, pat in _value_rules(kg)]
    rules += [
        TargetRule(pat, nid, pattern=r"(?i)(?<![\w])(?:" + pat + r")(?![\w])")
        for nid in kg.nodes()
        for pat in kg.node(nid).get("patterns", []) or []
    ]
    return rules


def pipeline(kg: KnowledgeGraph):
    """The KG's cached medspaCy pipeline: sentence splitter, target matcher, ConText with our rules."""
    # All our target rules are regexes, so medspaCy's (empty) phrase matcher warns on every document.
    warnings.filterwarnings("ignore", message=r"\[W036\]", category=UserWarning)
    nlp = getattr(kg, "_medspacy", None)
    if nlp is not None:
        return nlp
    with _LOCK:
        nlp = getattr(kg, "_medspacy", None)
        if nlp is None:
            nlp = _build(kg)
            kg._medspacy = nlp
    return nlp


def _build(kg: KnowledgeGraph):
    from loguru import logger

    logger.disable("PyRuSH")  # it logs every sentence at DEBUG
    import medspacy
    from medspacy.context import ConTextRule

    nlp = medspacy.load(medspacy_enable=["medspacy_pyrush"])
    matcher = nlp.add_pipe("medspacy_target_matcher")
    matcher.add(target_rules(kg))
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "prune_on_target_overlap": True})
    # Terminators get a one-token scope: medspaCy only lets a terminator cut a scope it overlaps without containing
    # it, so with a sentence-wide scope the second terminator ("gout: X, but Y must be excluded") was ignored.
    context.add(
        [
            ConTextRule(
                literal,
                category,
                direction=direction,
                pattern=pattern,
                max_scope=1 if direction == "TERMINATE" else None,
            )
            for literal, category, direction, pattern in CONTEXT_RULES
        ]
    )
    return nlp
