"""KG-DPO pairs: score sampled responses by their claims against the KG (and the case), prefer the better.

score = w_dx * correct diagnosis + w_sup * supported - w_con * contradicted - w_hal * hallucinated
        + w_cov * coverage of the key features
where hallucinated = asserted findings neither the KG nor the case backs (unverifiable, not negated) and the key
features are the case's known findings or, without a case, the condition's typical visible/clinical findings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

from .claims import CONTRADICTED, SUPPORTED, UNVERIFIABLE, Verdict, check_text
from .kg import KnowledgeGraph

# Finding types a reader can check in a case description or an image (not risk factors or treatments).
KEY_TYPES = ("morphology", "colour", "border", "shape", "surface", "distribution", "dermoscopic_feature", "symptom",
             "sign", "lab_finding", "imaging_finding")


@dataclass
class Weights:
    """How much each part of the score counts; diagnosis dominates, as it does for the reward."""

    diagnosis: float = 2.0
    supported: float = 0.25
    contradicted: float = 0.75
    hallucinated: float = 0.5
    coverage: float = 1.0


@dataclass
class ResponseScore:
    """A response's score and its parts, kept in the DPO record for inspection."""

    total: float
    correct: bool
    supported: int
    contradicted: int
    hallucinated: int
    coverage: float
    diagnosis: str | None
    verdicts: list[dict] = field(default_factory=list)


def key_features(kg: KnowledgeGraph, condition: str, case_findings: dict | None = None) -> set[str]:
    """What a good answer should mention: the case's findings, else the condition's typical findings."""
    if case_findings:
        ids = {kg.canonical(str(v)) for vs in case_findings.values() for v in (vs if isinstance(vs, list) else [vs])}
        return {i for i in ids if i is not None and kg.type(i) in KEY_TYPES}
    return {f.id for f in kg.features(condition, types=list(KEY_TYPES), typicality="typical")}


def score_response(
    text: str, kg: KnowledgeGraph, condition: str, case_findings: dict | None = None, weights: Weights | None = None
) -> ResponseScore:
    """Score one response against the true condition (and the case's ground-truth findings)."""
    w = weights or Weights()
    cond = kg.require(condition, "condition")
    verdicts: list[Verdict] = check_text(text, kg, cond, case_findings)
    dx = next((v.claim.node_id for v in verdicts if v.claim.kind == "diagnosis"), None)
    correct = any(v.claim.kind == "diagnosis" and v.verdict == SUPPORTED for v in verdicts)
    findings = [v for v in verdicts if v.claim.kind == "finding"]
    sup = sum(v.verdict == SUPPORTED for v in findings)
    con = sum(v.verdict == CONTRADICTED for v in verdicts if v.claim.kind != "differential" or v.claim.negated)
    hal = sum(v.verdict == UNVERIFIABLE and not v.claim.negated for v in findings)
    keys = key_features(kg, cond, case_findings)
    said = {v.claim.node_id for v in findings if not v.claim.negated}
    coverage = len(keys & said) / len(keys) if keys else 0.0
    total = w.diagnosis * correct + w.supported * sup - w.contradicted * con - w.hallucinated * hal + w.coverage * coverage
    return ResponseScore(round(total, 4), correct, sup, con, hal, round(coverage, 4), dx,
                         [v.to_dict() for v in verdicts])


def build_pairs(
    prompt,
    responses: list[str],
    kg: KnowledgeGraph,
    condition: str,
    case_findings: dict | None = None,
    images: list | None = None,
    min_margin: float = 0.5,
    max_pairs: int | None = 4,
    weights: Weights | None = None,
) -> list[dict]:
    """DPO records from several sampled responses to one prompt.

    Every (better, worse) pair whose scores differ by at least ``min_margin``, largest margin first (ties: higher
    chosen score first, then sample order), at most ``max_pairs``. Conversational prompts (a list of messages) get
    conversational chosen/rejected (one assistant message each), as TRL expects.
    """
    scores = [score_response(r, kg, condition, case_findings, weights) for r in responses]
    pairs = []
    for i, j in combinations(range(len(responses)), 2):
        hi, lo = (i, j) if scores[i].total >= scores[j].total else (j, i)
        margin = scores[hi].total - scores[lo].total
        if margin >= min_margin and responses[hi] != responses[lo]:
            pairs.append((margin, scores[hi].total, -hi, -lo, hi, lo))
    pairs.sort(reverse=True)
    if max_pairs is not None:
        pairs = pairs[:max_pairs]

    def wrap(text: str):
        return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text

    out = []
    for margin, _, _, _, hi, lo in pairs:
        out.append({
            "prompt": prompt,
            "chosen": wrap(responses[hi]),
            "rejected": wrap(responses[lo]),
            "images": list(images or []),
            "meta": {
                "condition_id": kg.require(condition, "condition"),
                "margin": round(margin, 4),
                "chosen_index": hi,
                "rejected_index": lo,
                "chosen_score": asdict(scores[hi]),
                "rejected_score": asdict(scores[lo]),
            },
        })
    return out


def write_dpo_jsonl(records: list[dict], path: str | Path) -> Path:
    """One DPO record per line (prompt, chosen, rejected, images, meta with scores)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return path
