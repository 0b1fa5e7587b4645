"""Sample a condition's visible findings from the KG: what one synthetic lesion image will show."""

from __future__ import annotations

import random

from knowledge_graph.kg import KnowledgeGraph

# Finding types an image can show (symptoms, sites and risk factors are not visible).
VISUAL_TYPES = (
    "morphology",
    "colour",
    "border",
    "shape",
    "surface",
    "size",
    "distribution",
    "dermoscopic_feature",
)
# How many of each type one image carries, and whether exactly one is drawn.
_SINGLE = {"morphology", "border", "shape", "size", "distribution"}
_MAX = {"colour": 4, "surface": 2, "dermoscopic_feature": 3}
_KEEP_P = {"typical": 0.8, "possible": 0.3, "atypical": 0.05}


def sample_findings(
    kg: KnowledgeGraph, condition: str, rng: random.Random, supported: set[str]
) -> dict[str, list[str]]:
    """Ground-truth findings by type, drawn from the condition's KG features the renderer can draw.

    Single-valued types take one feature (typical ones 4x as likely as possible ones); multi-valued types keep
    each feature with a typicality-dependent probability, typical first, and at least one colour.
    """
    out: dict[str, list[str]] = {}
    for ftype in VISUAL_TYPES:
        feats = [f for f in kg.features(condition, types=ftype) if f.id in supported]
        if not feats:
            continue
        if ftype in _SINGLE:
            weights = [
                4.0 if f.typicality == "typical" else 1.0 if f.typicality == "possible" else 0.1
                for f in feats
            ]
            out[ftype] = [rng.choices(feats, weights)[0].id]
            continue
        order = sorted(feats, key=lambda f: ("typical", "possible", "atypical").index(f.typicality))
        kept = [f.id for f in order if rng.random() < _KEEP_P[f.typicality]][: _MAX.get(ftype, 3)]
        if ftype == "colour" and not kept:
            kept = [order[0].id]
        if ftype == "surface" and len(kept) > 1 and "surface:smooth" in kept:
            kept.remove("surface:smooth")
        if kept:
            out[ftype] = kept
    return out
