"""Is a citation specific enough to check? A guideline by id and title, a textbook by chapter, a dataset paper.

Specific: ``"NICE NG12: Suspected cancer: recognition and referral (2015, updated 2023)"`` (an id with capitals or
digits, a colon and a title) or ``"Harrison's 21e, ch. 'Acute Meningitis'"`` (a book and a chapter title).
Not specific: ``"Bolognia Dermatology 4e"``, ``"AAD guidelines"``, ``"NICE CG153; AAD guidelines"`` (a whole book or
a body of guidelines, which cannot be checked for one fact).
"""

from __future__ import annotations

import re

_CHAPTER = re.compile(r",\s*ch\.\s*'[^']{3,}'")
_TITLED = re.compile(r"^(?=[^:;]*[A-Z0-9]{2})[^:;]{2,60}:\s+\w[^;]*$")


def is_specific(source: str) -> bool:
    """True when the citation names a chapter or a titled guideline/paper, not just a book or a society."""
    source = source.strip()
    return bool(_CHAPTER.search(source) or _TITLED.match(source))


def citation_counts(edges) -> tuple[int, int]:
    """(edges with a specific citation, all edges) over (head, relation, tail, attrs) rows."""
    rows = list(edges)
    return sum(is_specific(a.get("source", "")) for *_, a in rows), len(rows)
