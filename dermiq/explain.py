"""Ground-truth findings -> a short reference explanation (an SFT target); torch-free."""

from __future__ import annotations

from knowledge_graph.kg import KnowledgeGraph

_ORDER = ("distribution", "size", "morphology", "colour", "shape", "border", "surface", "dermoscopic_feature")
_NAMES = {"dermoscopic_feature": "dermoscopy"}


def describe(record: dict, kg: KnowledgeGraph) -> str:
    """'Findings: ... Most likely diagnosis: <label>.' from a record's meta.findings and answer."""
    meta = record.get("meta", {})
    findings = meta.get("findings", {})
    parts = []
    for t in _ORDER:
        labels = [kg.label(i) if i in kg else str(i) for i in findings.get(t, [])]
        if labels:
            parts.append(f"{_NAMES.get(t, t)}: {', '.join(labels)}")
    dx = record.get("answer") or (kg.label(meta["condition_id"]) if "condition_id" in meta else "unknown")
    return f"Findings: {'; '.join(parts) or 'none recorded'}. Most likely diagnosis: {dx}."
