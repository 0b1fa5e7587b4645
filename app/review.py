"""What the preference review tab reads (gradio-free): the pair files under the runs folder, one pair at a time, and
the KG's verdict on it in words.

A pair file is DPO JSONL (prompt, chosen, rejected, images, meta), e.g. the DermIQ pipeline's KG-judged
`data/dpo_pairs.jsonl`, or any TRL-format pair file placed under the runs folder (the app opens nothing outside
it). Lines are numbered from 1, as `medrl kg audit` and the feedback store number them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.data.records import completion_text
from training.trainers.rollout_records import last_user_text

from .safety import Refused, confine

PAIR_GLOBS = ("*/data/dpo_pairs.jsonl", "*/*/data/dpo_pairs.jsonl", "*pairs*.jsonl", "*/*pairs*.jsonl")


@dataclass
class Pair:
    """One pair as the reviewer sees it."""

    source: str  # the pair file, relative to the runs folder
    line: int  # 1-based
    total: int  # lines in the file
    prompt: object  # the messages (or text) as stored
    question: str  # the last user turn's text
    chosen: str  # the KG's (or the file's) preferred answer
    rejected: str
    images: list[Path]  # the images inside the runs folder (others are not shown)
    condition: str | None
    kg_reason: str  # why the KG preferred `chosen`, in words


def pair_files(root: Path) -> list[str]:
    """Pair files under the runs folder, relative, sorted."""
    found = {p.relative_to(root).as_posix() for g in PAIR_GLOBS for p in root.glob(g) if p.is_file()}
    return sorted(found)


def _text(value) -> str:
    if isinstance(value, str):
        return value
    return completion_text(value) or ""


def kg_reason(meta: dict) -> str:
    """The pair builder's verdict in one line: the deciding axes, the margin and the two scores' totals."""
    axes = meta.get("decided_by")
    parts = []
    if axes:
        parts.append("decided by " + (", ".join(axes) if isinstance(axes, list) else str(axes)))
    if meta.get("margin") is not None:
        parts.append(f"margin {meta['margin']}")
    for side in ("chosen", "rejected"):
        score = meta.get(f"{side}_score")
        if isinstance(score, dict) and score.get("total") is not None:
            parts.append(f"{side} scores {score['total']:.2f}")
    return "; ".join(parts) or "no KG verdict recorded in this file (a pair from elsewhere)"


def read_pair(root: Path, source: str, line: int) -> Pair:
    """Line ``line`` of ``source`` (relative to ``root``); Refused when the file or line is not there."""
    path = confine(root, source)
    if not path.is_file():
        raise Refused(f"{source!r} is not a pair file under the runs folder")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not 1 <= line <= len(lines):
        raise Refused(f"{source} has lines 1 to {len(lines)}, not {line}")
    try:
        rec = json.loads(lines[line - 1])
    except ValueError:
        raise Refused(f"{source}:{line}: not a JSON object") from None
    meta = rec.get("meta") or {}
    images = []
    for img in rec.get("images") or []:
        p = Path(img) if Path(img).is_absolute() else path.parent / img
        try:
            images.append(confine(root, p.resolve().relative_to(root.resolve()).as_posix()))
        except (ValueError, Refused):
            continue  # outside the runs folder: not shown
    return Pair(
        source=source,
        line=line,
        total=len(lines),
        prompt=rec.get("prompt"),
        question=last_user_text(rec.get("prompt")),
        chosen=_text(rec.get("chosen")),
        rejected=_text(rec.get("rejected")),
        images=images,
        condition=meta.get("condition_id") or meta.get("condition"),
        kg_reason=kg_reason(meta),
    )
