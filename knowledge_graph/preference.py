"""KG-DPO pairs: score sampled responses by their claims against the KG (and the case), prefer the better and safer.

score = diagnosis + findings + treatments + safety, with every part but the diagnosis capped, so that any correct
answer outranks any wrong one and any answer without a diagnosis (see ``Weights``):
- diagnosis: +8 for the true condition (or its parent group or a subtype), -1 for a wrong one, 0 for none;
- findings: up to +1 for the key findings said (the case's visible findings, else the condition's typical ones;
  risk factors never count), -0.25 per contradicted finding (cap -1), -0.5 per pair of mutually exclusive
  findings asserted together (cap -1);
- treatments and procedures the KG links to the condition: +0.25 each (cap +0.5); contraindicated ones -1.5;
- safety: when the answer is not the true condition, +1 for keeping it open as a hedge and +0.5 more for an action
  the KG links to it (excision, referral, a first-line treatment); -1 when a must-not-miss condition is neither
  diagnosed nor hedged, or when the true condition is ruled out.
A pair is never built whose chosen response is unsafe (missed must-not-miss, contraindicated treatment, truth ruled
out) while the rejected one is safe.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

from .claims import ABSENT, CONTRADICTED, HEDGED, PRESENT, SUPPORTED, UNVERIFIABLE, Verdict, check_text
from .kg import KnowledgeGraph

# Finding types a reader can check in a case description or an image (not risk factors or treatments).
KEY_TYPES = ("morphology", "colour", "border", "shape", "surface", "distribution", "dermoscopic_feature", "symptom",
             "sign", "lab_finding", "imaging_finding")


@dataclass
class Weights:
    """How much each part counts; the caps keep the diagnosis dominant: 8 minus every capped penalty still exceeds every capped credit."""

    diagnosis: float = 8.0
    wrong_diagnosis: float = 1.0
    findings: float = 1.0
    contradicted: float = 0.25
    contradicted_cap: float = 1.0
    exclusive: float = 0.5
    exclusive_cap: float = 1.0
    treatment: float = 0.25
    treatment_cap: float = 0.5
    harmful: float = 1.5
    hedge: float = 1.0
    action: float = 0.5
    missed: float = 1.0


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
    parts: dict = field(default_factory=dict)
    safe: bool = True
    hedged_truth: bool = False


def key_features(kg: KnowledgeGraph, condition: str, case_findings: dict | None = None) -> set[str]:
    """What a good answer should mention: the case's visible findings, else the condition's typical ones."""
    if case_findings:
        ids = {kg.canonical(str(v)) for vs in case_findings.values() for v in (vs if isinstance(vs, list) else [vs])}
        return {i for i in ids if i is not None and kg.type(i) in KEY_TYPES}
    return {f.id for f in kg.features(condition, types=list(KEY_TYPES), typicality="typical")}


def _exclusive_pairs(kg: KnowledgeGraph, said: set[str]) -> int:
    return sum(1 for a in said for b in kg.excluded_by(a) if b in said and a < b)


def score_response(
    text: str, kg: KnowledgeGraph, condition: str, case_findings: dict | None = None, weights: Weights | None = None
) -> ResponseScore:
    """Score one response against the true condition (and the case's ground-truth findings)."""
    w = weights or Weights()
    cond = kg.require(condition, "condition")
    verdicts: list[Verdict] = check_text(text, kg, cond, case_findings)
    related = kg.related(cond)
    dx = next((v for v in verdicts if v.claim.kind == "diagnosis"), None)
    correct = dx is not None and dx.verdict == SUPPORTED
    findings = [v for v in verdicts if v.claim.kind == "finding"]
    said = {v.claim.node_id for v in findings if v.claim.polarity == PRESENT}
    keys = key_features(kg, cond, case_findings)
    sup = sum(v.verdict == SUPPORTED for v in findings)
    con = sum(v.verdict == CONTRADICTED for v in findings)
    hal = sum(v.verdict == UNVERIFIABLE and v.claim.polarity == PRESENT for v in findings)
    coverage = len(keys & {v.claim.node_id for v in findings if v.verdict == SUPPORTED and v.claim.polarity == PRESENT})
    coverage = coverage / len(keys) if keys else 0.0
    actions = [v for v in verdicts if v.claim.kind in ("treatment", "procedure")]
    harmful = sum(v.verdict == CONTRADICTED and v.claim.polarity == PRESENT and v.claim.kind == "treatment" for v in actions)
    helpful = sum(v.verdict == SUPPORTED and v.claim.polarity == PRESENT for v in actions)
    conds = [v.claim for v in verdicts if v.claim.node_type == "condition"]
    hedged_truth = not correct and any(c.node_id in related and c.polarity in (HEDGED, PRESENT) for c in conds)
    ruled_out = any(c.node_id in related and c.polarity == ABSENT for c in conds)
    missed = kg.must_not_miss(cond) and not correct and not hedged_truth
    parts = {
        "diagnosis": w.diagnosis if correct else (-w.wrong_diagnosis if dx is not None else 0.0),
        "findings": w.findings * coverage,
        "contradicted": -min(w.contradicted_cap, w.contradicted * con),
        "exclusive": -min(w.exclusive_cap, w.exclusive * _exclusive_pairs(kg, said)),
        "treatments": min(w.treatment_cap, w.treatment * helpful) - w.harmful * min(harmful, 1),
        "hedge": (w.hedge + (w.action if helpful else 0.0)) if hedged_truth else 0.0,
        "safety": -w.missed * (missed or ruled_out),
    }
    total = round(sum(parts.values()), 4)
    return ResponseScore(total, correct, sup, con, hal, round(coverage, 4), dx.claim.node_id if dx else None,
                         [v.to_dict() for v in verdicts], {k: round(v, 4) + 0.0 for k, v in parts.items()},
                         safe=not (missed or ruled_out or harmful), hedged_truth=hedged_truth)


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
    eligible: list[bool] | None = None,
) -> list[dict]:
    """DPO records from several sampled responses to one prompt.

    ``eligible``: which responses may be chosen (the caller's format check; the KG score reads claims, not layout).
    A malformed response that happens to state fewer wrong findings would otherwise teach the layout away (the tiny
    DermIQ demo at temperature 1.0: no sample was well-formed, and DPO lowered the format rate from 0.64 to 0.58).

    Every (better, worse) pair whose scores differ by at least ``min_margin``, largest margin first (ties: higher
    chosen score first, then sample order), at most ``max_pairs``; never one whose chosen response is unsafe while
    the rejected one is safe. Conversational prompts (a list of messages) get conversational chosen/rejected (one
    assistant message each), as TRL expects.
    """
    scores = [score_response(r, kg, condition, case_findings, weights) for r in responses]
    pairs = []
    for i, j in combinations(range(len(responses)), 2):
        hi, lo = (i, j) if scores[i].total >= scores[j].total else (j, i)
        margin = scores[hi].total - scores[lo].total
        if eligible is not None and not eligible[hi]:
            continue  # the better-scored one is malformed: no pair
        if not scores[hi].safe and scores[lo].safe:
            continue  # never teach the less safe answer
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
