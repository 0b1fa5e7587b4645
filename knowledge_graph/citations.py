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


# A guideline or a paper a reader can open at the right place: a guideline id with its year and a section, or a PMID
# or DOI. "NICE NG12 (2015, updated 2023), rec. 1.7.1", "ESC 2023 ACS guideline, sec. 7.2", "PMID: 31738486",
# "doi:10.1093/eurheartj/ehad191". A textbook chapter is specific but not checkable for a management decision.
_PMID = re.compile(r"\bPMID:?\s*\d{6,9}\b", re.I)
_DOI = re.compile(r"\b(?:doi:?\s*|https?://doi\.org/)10\.\d{4,9}/\S+", re.I)
_GUIDELINE_ID = re.compile(
    r"\b(?:[A-Z]{2,}[A-Za-z]*\s?(?:[A-Z]{1,3}\s?)?\d{1,4}|[A-Z]{2,}(?:/[A-Z]{2,})*\s(?:19|20)\d\d)\b"
)
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_SECTION = re.compile(
    r"(?:§|\bsec(?:tion)?\.?\s|\brec(?:ommendation)?\.?\s|\btable\s|\bfig(?:ure)?\.?\s|\bpara\.?\s|\bp\.\s?\d)",
    re.I,
)


def is_checkable(source: str) -> bool:
    """True for a PMID, a DOI, or a guideline id with a year and a section (what management edges must carry)."""
    source = source.strip()
    if _PMID.search(source) or _DOI.search(source):
        return True
    return bool(_GUIDELINE_ID.search(source) and _YEAR.search(source) and _SECTION.search(source))


def management_source_counts(kg) -> dict[str, tuple[int, int]]:
    """relation -> (edges with a checkable source, all edges) for the management relations of a KG."""
    from .schema import MANAGEMENT_RELATIONS

    out = {}
    for rel in MANAGEMENT_RELATIONS:
        rows = kg.edges(rel)
        out[rel] = (sum(is_checkable(a.get("source", "")) for *_, a in rows), len(rows))
    return out
