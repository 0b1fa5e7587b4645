"""Synthetic lesion samples -> the common JSONL records (README "Data formats"); torch-free.

The RL record is written next to its image by `dermiq.synthetic.make_record`; the SFT record here answers that
record's prompt (format and labels, then image and question) with a reference response in the DermIQ format built
from the KG ground truth (`dermiq.prompts.reference_response`): the four-heading analysis of the image's true
findings, then the diagnosis. A warm-up on it teaches the format the rewards score, in text the KG claim checker
(`knowledge_graph.claims`) can verify.
"""

from __future__ import annotations

from knowledge_graph.kg import KnowledgeGraph

from .prompts import reference_response


def sft_record(record: dict, kg: KnowledgeGraph) -> dict:
    """One RL lesion record -> a chat record: its prompt, then the reference response for its true findings."""
    meta = record.get("meta", {})
    answer = record.get("answer") or kg.label(meta["condition_id"])
    text = reference_response(meta.get("findings", {}), answer, lambda i: kg.label(i) if i in kg else str(i))
    return {
        "messages": [*record["prompt"], {"role": "assistant", "content": text}],
        "images": list(record["images"]),
    }


def sft_records(records: list[dict], kg: KnowledgeGraph) -> list[dict]:
    return [sft_record(r, kg) for r in records]
