"""Which ConText cue reaches which mention: clause-bounded scopes over medspaCy's modifiers, and the text fold.

medspaCy's ConText scopes a cue over the whole sentence up to a terminator. Clinical answers pack several claims into
one sentence with commas, so a sentence-wide scope reads them backwards: in "Most likely melanoma, less likely a
naevus" the backward "less likely" reached melanoma, and in "Her mother had melanoma and this mole is most likely
melanoma too" the family cue reached the patient's own diagnosis. Both readers (``claims.extract_claims`` and
``clinical.mentions``) keep medspaCy's modifiers and pass each one through ``reaches`` here:
- a cue never crosses a clause boundary (; : but, however, whereas, ", and this/the/he/she ...", now, currently);
- a cue crosses a comma only along a list ("no fever, cough or haemoptysis"), and a backward cue never crosses a comma
  to reach a diagnosis ("Nodular BCC, melanoma unlikely" leaves the BCC standing);
- "non-" reaches only the word it is glued to;
- withholding cues ("avoid", "contraindicated", "do not give") negate treatments and procedures only.

``fold`` makes the text the readers see: one character per character (offsets stay valid), accents and ligatures
folded (naevus for nævus, Behcet for Behçet), dashes and curly quotes made plain, and words in capitals lower-cased
except the KG's abbreviations, so hedges in capitals ("MELANOMA CANNOT BE EXCLUDED") read as hedges (spaCy splits
"cannot" but not "CANNOT"); other words keep their case, which the sentence splitter reads.
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata

NEG, HEDGE, HIST, FAMILY, HYPO = (
    "NEGATED_EXISTENCE",
    "POSSIBLE_EXISTENCE",
    "HISTORICAL",
    "FAMILY",
    "HYPOTHETICAL",
)
WITHHELD = "WITHHELD"  # a negation that applies to actions only: 'avoid', 'contraindicated', 'do not give'
ACTION_TYPES = ("treatment", "procedure")

_CLAUSE_BREAK = re.compile(
    r"[;:]|\b(?:but|however|whereas|although|though|now|currently|today|presently|then)\b"
    r"|(?:,\s*|\s+)and\s+(?:this|these|that|his|her|their|he|she|it|they|there|today|now|currently|patient|on)\b"
    r"|\b(?:this|the)\s+(?:lesion|mole|patient|presentation|time|episode|rash|case|one)\b|\bthis\s+is\b"
    r"|\s[-]\s|</?answer>",
    re.I,
)
_LIST_GAP = re.compile(
    r"\s*(?:,\s*(?:(?:and|or|nor|and/or)\s+)?|(?:and|or|nor|and/or|/)\s*|\s)\s*(?:(?:a|an|the|any)\s+)?", re.I
)
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_QUOTES = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u00b4": "'",
    "\u201c": '"',
    "\u201d": '"',
}
_LIGATURES = {"æ": "e", "Æ": "E", "œ": "e", "Œ": "E", "ß": "s", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L"}
_WORD = re.compile(r"[A-Za-z0-9]+")


def _fold_char(ch: str) -> str:
    if ch in _DASHES:
        return "-"
    if ch in _QUOTES:
        return _QUOTES[ch]
    if ch in _LIGATURES:
        return _LIGATURES[ch]
    if ord(ch) < 128:
        return ch
    base = unicodedata.normalize("NFKD", ch)[:1]
    return base if base and ord(base) < 128 else ch


def fold(text: str, codes: set[str] | frozenset[str] = frozenset()) -> str:
    """The text as the readers see it, same length: plain ASCII letters and punctuation, words in capitals lower-cased
    except ``codes`` (the KG's upper-case abbreviations, e.g. 'PE'), which the exact-case code rules match."""
    plain = "".join(_fold_char(ch) for ch in text)
    out = []
    last = 0
    for m in _WORD.finditer(plain):
        out.append(plain[last : m.start()])
        word = m.group()
        out.append(word if word in codes or not word.isupper() or len(word) < 5 else word.lower())
        last = m.end()
    out.append(plain[last:])
    return "".join(out)


def _is_list(gaps: list[str]) -> bool:
    return all(_LIST_GAP.fullmatch(g) for g in gaps)


def _spans(doc) -> list[tuple[int, int]]:
    """The document's mention spans, sorted, computed once per document (``reaches`` runs per cue and mention)."""
    spans = doc.user_data.get("medrl_spans")
    if spans is None:
        spans = doc.user_data["medrl_spans"] = sorted((e.start_char, e.end_char) for e in doc.ents)
    return spans


def reaches(mod, ent, doc, node_type) -> bool:
    """Does ConText modifier ``mod`` really apply to target ``ent``? ``node_type(label)`` gives a target's KG type."""
    toks = doc[mod.modifier_span[0] : mod.modifier_span[1]]
    m_start, m_end = toks.start_char, toks.end_char
    if m_end <= ent.start_char:
        lo, hi, backward = m_end, ent.start_char, False
    elif m_start >= ent.end_char:
        lo, hi, backward = ent.end_char, m_start, True
    else:
        return True  # the cue is inside the mention
    between = doc.text[lo:hi]
    if not backward:
        between = re.sub(r"^\s*:", " ", between)  # the cue's own colon: "PMH: peptic ulcer", "Rule out: PE"
    literal = toks.text.lower()
    kind = node_type(ent.label_)
    if mod.category == WITHHELD and kind not in ACTION_TYPES:
        return False
    if literal == "non":
        return between.strip() in ("", "-")
    if _CLAUSE_BREAK.search(between):
        return False
    spans = _spans(doc)
    inside = []
    for a, b in itertools.islice(spans, bisect.bisect_left(spans, (lo, lo)), None):
        if a >= hi:
            break
        if b <= hi:
            inside.append((a, b))
    if "," not in between and not inside:
        return True
    if backward and "," in between and kind in ("condition", "unlisted"):
        return False  # "Nodular BCC, melanoma unlikely": the comma ends the BCC's clause
    if mod.category in (HIST, FAMILY) and "," not in between:
        return True  # time and experiencer belong to the whole clause: "pre-eclampsia in her first pregnancy 5 years ago"
    # Past other mentions only along a list ("no fever, cough or haemoptysis"; not "no scaling of the plaque"):
    # the gaps between the mentions that lie between cue and target are separators.
    gaps, pos = [], lo
    for a, b in inside:
        gaps.append(doc.text[pos:a])
        pos = b
    gaps.append(doc.text[pos:hi])
    # the gap touching the cue may hold the cue's own words ("no evidence of fever, ..."): it has no comma
    cue_gap = gaps.pop(-1 if backward else 0)
    return "," not in cue_gap and _is_list(gaps)


def categories(ent, doc, node_type) -> set[str]:
    """The ConText categories that reach ``ent`` (see ``reaches``)."""
    return {m.category for m in ent._.modifiers if reaches(m, ent, doc, node_type)}


def clause_break(text: str) -> bool:
    """Does ``text`` (between a cue and a mention) cross a clause boundary?"""
    return bool(_CLAUSE_BREAK.search(text))
