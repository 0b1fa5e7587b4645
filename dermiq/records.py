"""Synthetic lesion samples -> the common JSONL records (README "Data formats"); torch-free.

The RL record is written next to its image by `dermiq.synthetic.make_record`; the SFT record here answers that
record's prompt with the reference explanation built from the KG ground truth (`dermiq.explain.describe`), so a
warm-up teaches findings first, then the diagnosis: text the KG claim checker (`knowledge_graph.claims`) can verify.
"""

from __future__ import annotations

from knowledge_graph.kg import KnowledgeGraph

from .explain import describe


def sft_record(record: dict, kg: KnowledgeGraph) -> dict:
    """One RL lesion record -> a chat record: its prompt (image + question), then the reference explanation."""
    return {"messages": [*record["prompt"], {"role": "assistant", "content": describe(record, kg)}],
            "images": list(record["images"])}


def sft_records(records: list[dict], kg: KnowledgeGraph) -> list[dict]:
    return [sft_record(r, kg) for r in records]
