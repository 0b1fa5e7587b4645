"""The SFT stage's conversational records, built from a lesion's label, its findings and the KG; torch-free.

After GRPO++ the model answers in the DermIQ format; the SFT stage keeps that turn and adds a second one: the
user asks what it means, the assistant explains like a clinician would (diagnosis, the findings that support it,
the differential, next steps, the disclaimer). Everything said comes from the record's ground truth and the KG,
so the text is verifiable by the same claim checker the rewards and the DPO scorer use.
"""

from __future__ import annotations

from knowledge_graph.disclaimer import DISCLAIMER
from knowledge_graph.kg import KnowledgeGraph

from .prompts import reference_response

FOLLOW_UP = "What does this mean, and what should happen next?"
MAX_DIFFERENTIAL = 3


def explanation(kg: KnowledgeGraph, condition: str, findings: dict[str, list[str]]) -> str:
    """Diagnosis, supporting findings (the image's findings the KG links to the condition), differential, next steps,
    disclaimer."""
    cid = kg.require(condition, "condition")
    name = kg.label(cid)
    linked = kg.feature_ids(cid)
    seen = [v for vs in findings.values() for v in vs]
    support = [kg.label(v) for v in seen if v in linked]
    lines = [f"Most likely diagnosis: {name}."]
    if support:
        lines.append(f"Supporting findings: {', '.join(support)}.")
    ddx = [kg.label(d) for d in kg.differential(cid)][:MAX_DIFFERENTIAL]
    if ddx:
        lines.append(f"Differential diagnosis: {', '.join(ddx)}.")
    steps = [kg.label(p) for p in kg.procedures(cid)][:2] + [
        kg.label(t) for t in kg.treatments(cid, "first")
    ][:2]
    urgent = (
        "Please see a dermatologist soon" if kg.must_not_miss(cid) else "A dermatologist can confirm this"
    )
    lines.append(f"Next steps: {urgent}" + (f"; options include {', '.join(steps)}." if steps else "."))
    lines.append(DISCLAIMER)
    return "\n".join(lines)


def conversation_record(record: dict, kg: KnowledgeGraph) -> dict:
    """An RL lesion record -> a two-turn chat: the DermIQ-format answer, then the follow-up and its explanation."""
    meta = record.get("meta") or {}
    cid = meta.get("condition_id") or kg.require(record["answer"], "condition")
    findings = meta.get("findings") or {}
    first = reference_response(
        findings, record.get("answer") or kg.label(cid), lambda i: kg.label(i) if i in kg else str(i)
    )
    return {
        "messages": [
            *record["prompt"],
            {"role": "assistant", "content": first},
            {"role": "user", "content": FOLLOW_UP},
            {"role": "assistant", "content": explanation(kg, cid, findings)},
        ],
        "images": list(record.get("images") or []),
    }


def conversation_records(records: list[dict], kg: KnowledgeGraph) -> list[dict]:
    return [conversation_record(r, kg) for r in records]
