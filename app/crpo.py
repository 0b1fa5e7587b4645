"""The CRPO objective breakdown of one clinical answer (accuracy when the key is known, format, faithfulness,
comprehensiveness), read by the very functions that reward training (`clinical.rewards`), with the evidence
highlighted in the case and the answer."""

from __future__ import annotations

import re
from html import escape

from clinical import rewards as R
from knowledge_graph.kg import KnowledgeGraph


def breakdown(
    case: str, options: dict[str, str], completion: str, gold: str | None, meta: dict | None = None
) -> dict:
    """Scores and their parts, plus the KG ids cited / hallucinated (for highlighting)."""
    meta = {**(meta or {}), "case": case, "options": options}
    a = R.analysis(None, completion, gold, meta)
    out = {
        "format": R.format_score(completion),
        "faithfulness": R.faithfulness_score(a),
        "faithfulness_parts": R.faithfulness_parts(a),
        "comprehensiveness": R.comprehensiveness_score(a, options, gold),
        "comprehensiveness_parts": R.comprehensiveness_parts(a, options, gold),
        "boxed": a.boxed,
        "concluded": a.concluded,
        "cited": sorted(a.cited),
        "hallucinated": sorted(a.hallucinated),
        "misreported": sorted(a.misreported),
        "rejected": sorted(a.rejected),
        "self_rejected": a.self_rejected,
    }
    out["accuracy"] = R.accuracy_score(completion, gold) if gold else None
    return out


def highlight(text: str, kg: KnowledgeGraph, good: set[str], bad: set[str]) -> str:
    """`text` escaped, with KG terms of `good` nodes marked green (evidence) and of `bad` ones red."""
    spans = [(s, e, nid) for nid, _, _, s, e in kg.lexicon.find(text) if nid in good or nid in bad]
    out, last = [], 0
    for s, e, nid in sorted(spans):
        if s < last:
            continue
        cls = "medrl-evidence" if nid in good else "medrl-hallucination"
        out.append(escape(text[last:s]))
        out.append(f'<mark class="{cls}" title="{escape(kg.label(nid))}">{escape(text[s:e])}</mark>')
        last = e
    out.append(escape(text[last:]))
    return re.sub(r"\n", "<br>", "".join(out))
