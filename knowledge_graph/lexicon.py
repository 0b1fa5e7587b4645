"""Terms -> node ids: labels, synonyms and dataset codes, used for canonical labels and claim extraction.

Besides labels and aliases (matched anywhere in free text) a KG may give a node ``codes`` (abbreviations that are
only looked up as exact input, because in free text they collide: 'RA' is room air), ``absent_terms`` (phrases
that state the finding is absent: 'afebrile') and graph-level ``unlisted_conditions`` / ``unlisted_terms`` (names
of things the KG does not model, matched so that a shorter alias inside them never fires).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import networkx as nx

from .errors import KGError

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SPELLING = {
    "gray": "grey",
    "color": "colour",
    "colors": "colours",
    "colored": "coloured",
    "hemorrhage": "haemorrhage",
    "hemorrhagic": "haemorrhagic",
    "ischemic": "ischaemic",
    "edema": "oedema",
    "tumor": "tumour",
    "anemia": "anaemia",
    "hemoptysis": "haemoptysis",
    "dyspnea": "dyspnoea",
    "diarrhea": "diarrhoea",
    "celiac": "coeliac",
    "esophagitis": "oesophagitis",
    "sulphate": "sulfate",
    "sulphasalazine": "sulfasalazine",
    "sulphonylurea": "sulfonylurea",
}
UNLISTED = "unlisted:"  # node-id prefix for unlisted names (never a node of the graph)


def normalize(text: str) -> str:
    """Lower-case words only, British spellings, so 'Blue-Gray' and 'blue grey' match."""
    words = _WORD.findall(text.lower().replace("’", "'"))
    return " ".join(_SPELLING.get(w, w) for w in words)


def tokens(text: str) -> list[tuple[str, int, int]]:
    """Normalized words with their character offsets in ``text``."""
    out = []
    for m in _WORD.finditer(text.lower().replace("’", "'")):
        out.append((_SPELLING.get(m.group(), m.group()), m.start(), m.end()))
    return out


def glued(text: str, start: int, end: int) -> bool:
    """Is text[start:end] glued to a neighbouring word by a hyphen ('mono-arthritis', 'non-melanoma')? Then it is part
    of that word, not a mention of its own."""
    return (start >= 2 and text[start - 1] == "-" and text[start - 2].isalnum()) or (
        end + 1 < len(text) and text[end] == "-" and text[end + 1].isalnum()
    )


def _variants(term: str) -> list[str]:
    """Cheap plural/singular forms so 'papules' finds 'papule' and 'keratoses' finds 'keratosis'."""
    if not term or term[-1].isdigit():
        return []
    if term.endswith("sis") and len(term) > 5:  # Greek plurals: keratosis -> keratoses
        return [term[:-2] + "es"]
    if term.endswith("s") and not term.endswith("ss") and len(term) > 4:
        return [term[:-1]]
    return [term + "s"]


@dataclass
class Lexicon:
    """Normalized term -> node id, with the longest term length for n-gram matching."""

    terms: dict[str, str] = field(default_factory=dict)
    max_len: int = 1
    codes: dict[str, str] = field(
        default_factory=dict
    )  # exact-input abbreviations ('ra' -> rheumatoid arthritis)
    absent: dict[str, str] = field(
        default_factory=dict
    )  # phrases stating a finding is absent ('afebrile' -> fever)
    unlisted: dict[str, str] = field(
        default_factory=dict
    )  # normalized name -> 'unlisted:condition' / 'unlisted:term'

    @classmethod
    def from_graph(cls, g: nx.MultiDiGraph, strict: bool = False) -> Lexicon:
        """Collect labels and aliases; dataset labels resolve through their alias_of edge.

        ``strict`` raises KGError when one term names two different nodes (a duplicate alias).
        """
        lex = cls()
        variants: list[tuple[str, str]] = []
        for nid, attrs in g.nodes(data=True):
            target = nid
            if attrs.get("type") == "dataset_label":
                targets = [t for _, t, r in g.out_edges(nid, keys=True) if r == "alias_of"]
                if not targets:
                    continue
                target = targets[0]
            derived = bool(attrs.get("_derived"))  # CSV label made from the id: a default, never a clash
            for raw in [attrs.get("label", ""), *attrs.get("aliases", [])]:
                term = normalize(str(raw))
                if not term:
                    continue
                if derived:
                    variants.append((term, target))
                    continue
                prev = lex.terms.get(term)
                if prev is not None and prev != target:
                    if strict:
                        where = attrs.get("_where", nid)
                        raise KGError(
                            f"{where}: duplicate alias {raw!r} of {target!r} is already used by {prev!r}"
                        )
                    continue
                lex.terms[term] = target
                variants.extend((v, target) for v in _variants(term))
        for term, target in variants:
            lex.terms.setdefault(term, target)
        for nid, attrs in g.nodes(data=True):
            for raw in attrs.get("codes", []) or []:
                term = normalize(str(raw))
                prev = lex.codes.get(term) or lex.terms.get(term)
                if strict and prev is not None and prev != nid:
                    raise KGError(
                        f"{attrs.get('_where', nid)}: code {raw!r} of {nid!r} is already used by {prev!r}"
                    )
                lex.codes.setdefault(term, nid)
            for raw in attrs.get("absent_terms", []) or []:
                term = normalize(str(raw))
                if strict and term in lex.terms:
                    raise KGError(
                        f"{attrs.get('_where', nid)}: absent term {raw!r} of {nid!r} is also a name of {lex.terms[term]!r}"
                    )
                lex.absent[term] = nid
        for kind in ("unlisted_conditions", "unlisted_terms"):
            for raw in g.graph.get(kind, []) or []:
                term = normalize(str(raw))
                if term and term not in lex.terms:
                    lex.unlisted[term] = UNLISTED + kind.split("_")[1].rstrip("s")
        lex.max_len = max((len(t.split()) for t in lex.terms), default=1)
        return lex

    def lookup(self, term: str) -> str | None:
        """The node id a term names (label, alias, dataset code or exact-input code), or None."""
        key = normalize(term)
        return self.terms.get(key) or self.codes.get(key)

    def find(self, text: str) -> list[tuple[str, int, int, int, int]]:
        """Longest non-overlapping term matches: (node_id, first token, end token, char start, char end)."""
        toks = tokens(text)
        words = [t[0] for t in toks]
        out = []
        i = 0
        while i < len(words):
            for n in range(min(self.max_len, len(words) - i), 0, -1):
                nid = self.terms.get(" ".join(words[i : i + n]))
                if nid is not None and not glued(text, toks[i][1], toks[i + n - 1][2]):
                    out.append((nid, i, i + n, toks[i][1], toks[i + n - 1][2]))
                    i += n
                    break
            else:
                i += 1
        return out
