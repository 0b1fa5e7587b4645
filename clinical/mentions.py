"""KG terms in a response or a case, with polarity, fast enough to run on every RL completion.

Why not `knowledge_graph.claims.extract_claims`: it is the reference reader, but its medspaCy target matcher runs
~2,000 regex rules, each re-reading the whole document, about 0.2 s for a 1,700-character response on this
project's CPUs; a reward runs on every completion of every step. Here the same KG lexicon (labels, aliases,
absent-phrases such as 'afebrile', unlisted names) is matched by one longest-match scan over normalized tokens, and
polarity comes from medspaCy ConText with the claim checker's own rules (`knowledge_graph.context_rules`), plus a few
cues for textbook statements ("pneumonia typically causes fever" is knowledge, not a claim about this patient);
lab values in free wording ("troponin was raised", "normal D-dimer") come from the claim checker's own value rules
(`knowledge_graph.nlp.target_rules`), each tried only when its test's name is in the text: about 5 ms for the same
text. Lost against the claim checker: abbreviations after a diagnostic cue ("possible PE").
"""

from __future__ import annotations

import functools
import re
import threading
import warnings
from dataclasses import dataclass

from knowledge_graph.kg import KnowledgeGraph
from knowledge_graph.lexicon import UNLISTED, glued, normalize, tokens
from knowledge_graph.nlp import ABSENT_MARK as _ABSENT_MARK
from knowledge_graph.scope import HEDGE, HYPO, NEG, WITHHELD, categories, fold

PRESENT, ABSENT, HEDGED = "present", "absent", "hedged"
FINDING_TYPES = ("symptom", "sign", "lab_finding", "imaging_finding", "risk_factor")
# Textbook statements about a disease, not observations of this patient.
_GENERAL = (
    "typically|typical of|usually|classically|characteristically|commonly|often|would|would cause|"
    "would expect|expected|tends to|tend to|can cause|may cause|causes|features of|feature of|"
    "associated with|characterised by|characterized by|presentation of|hallmark of"
)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Mention:
    node_id: str  # a KG node id, or 'unlisted:condition' / 'unlisted:term'
    node_type: str
    start: int
    end: int
    polarity: str  # present | absent | hedged
    general: bool = False  # a textbook statement ('typically', 'would'), not about the patient


class MentionFinder:
    """One per KG: the merged lexicon and a small spaCy pipeline (sentences, ConText); results cached per text."""

    def __init__(self, kg: KnowledgeGraph):
        self.kg = kg
        lex = kg.lexicon
        self.terms: dict[str, str] = {
            **{t: u for t, u in lex.unlisted.items()},
            **{t: n + _ABSENT_MARK for t, n in lex.absent.items()},
            **lex.terms,
        }
        self.max_len = max(len(t.split()) for t in self.terms)
        self.values = _value_rules(kg, set(self.terms))
        self.nlp = _build_nlp()
        self.find = functools.lru_cache(maxsize=8192)(self._find)

    def _spans(self, text: str) -> list[tuple[str, int, int]]:
        toks = tokens(text)
        words = [t[0] for t in toks]
        out, i = [], 0
        while i < len(words):
            for n in range(min(self.max_len, len(words) - i), 0, -1):
                label = self.terms.get(" ".join(words[i : i + n]))
                if label is not None and not glued(text, toks[i][1], toks[i + n - 1][2]):
                    out.append((label, toks[i][1], toks[i + n - 1][2]))
                    i += n
                    break
            else:
                i += 1
        low = text.lower()
        for key, rx, label in self.values:
            if key is None or key in low:
                out.extend((label, m.start(), m.end()) for m in rx.finditer(text))
        return out

    def _find(self, text: str) -> tuple[Mention, ...]:
        spans = self._spans(text)
        if not spans:
            return ()
        from spacy.util import filter_spans

        def node_type(label: str) -> str:
            nid = label.split("#", 1)[0]
            return "unlisted" if nid.startswith(UNLISTED) else self.kg.type(nid)

        with _LOCK:  # one spaCy pipeline per process; rewards may be called from threads
            doc = self.nlp.make_doc(fold(text))  # same length: the spans' offsets hold
            ents = [
                s for label, a, b in spans if (s := doc.char_span(a, b, label=label, alignment_mode="expand"))
            ]
            doc.ents = filter_spans(ents)
            with warnings.catch_warnings():  # W036: ConText's empty token matcher warns on every document
                warnings.simplefilter("ignore", UserWarning)
                for _, proc in self.nlp.pipeline:
                    doc = proc(doc)
            found = [(e.label_, e.start_char, e.end_char, categories(e, doc, node_type)) for e in doc.ents]
        out = []
        for label, a, b, cats in found:
            flip = label.endswith(_ABSENT_MARK)
            nid = label[: -len(_ABSENT_MARK)] if flip else label
            neg = NEG in cats or WITHHELD in cats
            pol = HEDGED if HEDGE in cats or HYPO in cats else ABSENT if neg != flip else PRESENT
            ntype = node_type(nid)
            out.append(Mention(nid, ntype, a, b, pol, "GENERAL" in cats))
        return tuple(out)


def _value_rules(kg: KnowledgeGraph, lexicon_terms: set[str]) -> list[tuple[str | None, re.Pattern, str]]:
    """(key word or None, regex, label) for the claim checker's value phrasings; the key word (the test's longest
    word) must occur in the text for the regex to be tried (None: spelling variants, always tried)."""
    from knowledge_graph.nlp import CODE_MARK, target_rules

    out = []
    for r in target_rules(kg):
        if r.category.endswith(CODE_MARK) or normalize(r.literal) in lexicon_terms or not r.pattern:
            continue
        words = re.sub(r"\(\?:[^)]*\)", " ", r.literal).lower().split()
        key = max(words, key=len) if words else None
        if key is None or any(v in key for v in ("ae", "oe", "our", "grey")):
            key = None
        out.append((key, re.compile(r.pattern), r.category))
    out.sort(key=lambda t: (t[2], t[1].pattern))  # the KG's rule order is not fixed; matching order must be
    return out


def _build_nlp():
    import spacy
    from loguru import logger
    from medspacy.context import ConText, ConTextRule  # noqa: F401  (registers the medspacy_context factory)
    from spacy.language import Language

    from knowledge_graph.context_rules import CONTEXT_RULES

    logger.disable("PyRuSH")

    if "clinical_line_sentences" not in Language.factories:

        @Language.component("clinical_line_sentences")
        def line_sentences(doc):
            """Sentences end at . ! ? and at line breaks (bulleted reasoning has no full stops)."""
            for i, tok in enumerate(doc):
                if i == 0:
                    tok.is_sent_start = True
                else:
                    prev = doc[i - 1]
                    tok.is_sent_start = (
                        prev.text in (".", "!", "?") or "\n" in prev.text or prev.text.endswith("\n")
                    )
            return doc

    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_line_sentences")
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "prune_on_target_overlap": True})
    rules = [
        ConTextRule(lit, cat, direction=d, pattern=p, max_scope=1 if d == "TERMINATE" else None)
        for lit, cat, d, p in CONTEXT_RULES
    ]
    rules += [ConTextRule(lit.strip(), "GENERAL", direction="FORWARD") for lit in _GENERAL.split("|")]
    context.add(rules)
    return nlp


_FINDERS: dict[int, MentionFinder] = {}


def finder(kg: KnowledgeGraph) -> MentionFinder:
    """The process-wide finder of ``kg`` (built once: the lexicon merge and the spaCy pipeline)."""
    f = _FINDERS.get(id(kg))
    if f is None or f.kg is not kg:
        with _LOCK:
            f = _FINDERS.get(id(kg))
            if f is None or f.kg is not kg:
                f = _FINDERS[id(kg)] = MentionFinder(kg)
    return f
