"""`medrl clinical ablate`: GRPO vs CRPO from the same cold-start adapter, same budget, evaluated side by side.

Arms (both from the recipe's `crpo:` section, so the sampler, loss, reference and optimiser are the same):
- ``grpo``: accuracy + format + language only (weights 10 / 1 / 0.5), ``sum_then_normalize`` (plain GRPO);
- ``crpo``: the recipe's five objectives and aggregation (recommended weights, ``normalize_then_sum``).
One SFT run (OUT/sft) is the start of every arm; each arm and seed is its own run (OUT/<arm>_s<seed>), evaluated
greedily on the held-out test split (vignettes never seen in SFT or RL). The table (mean over seeds, then each run)
goes to OUT/ablation.json and OUT/ablation.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from .evaluate import FIELDS, evaluate_run
from .pipeline import cold_start, pipeline_config, prepare_data, run_stage, stage_config

GRPO_REWARDS = {"clinical_accuracy": 10.0, "clinical_format": 1.0, "clinical_language": 0.5}
ARMS = ("grpo", "crpo")
SHOWN = ("accuracy", "format_ok", "faithfulness", "evidence", "evidence_per_100_words", "hallucination_rate",
         "consistency", "comprehensiveness", "rejection_coverage", "verifications", "length_tokens", "truncated")
MEASURES = (*FIELDS, "truncated")  # truncated: share of answers that hit the token limit (a longer answer loses its box)


def arm_overrides(arm: str) -> dict:
    """What an arm changes in the recipe's crpo section (the GRPO arm replaces the reward table whole)."""
    if arm == "grpo":
        return {"rewards": dict(GRPO_REWARDS), "advantages": {"aggregation": "sum_then_normalize"}}
    return {}


def run_ablation(raw: dict, out: str | Path, seeds: list[int], limit: int | None = None,
                 max_new_tokens: int | None = None) -> dict:
    """Train the shared SFT start, then every (seed, arm) run for the recipe's crpo.run.max_steps; evaluate each."""
    pc = pipeline_config(raw)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(pc, out)
    test = data / "test.jsonl"
    adapter = cold_start(raw, pc, data, out)
    limit = limit or pc.eval_limit or None
    runs = []
    start = evaluate_run(out / "sft", test, limit=limit, max_new_tokens=max_new_tokens or _rollout_len(raw),
                         tag="ablation")
    runs.append({"arm": "start (sft)", "seed": pc.seed, **_pick(start)})
    for seed in seeds:
        for arm in ARMS:
            name = f"{arm}_s{seed}"
            section = dict(raw)
            section["crpo"] = {k: v for k, v in raw["crpo"].items() if not (arm == "grpo" and k == "rewards")}
            extra = {"data": {"train": str(data / "train.jsonl")}, "model": {"adapter": str(adapter)},
                     **arm_overrides(arm)}
            run_stage(stage_config(section, "crpo", out, name, seed, extra))
            m = evaluate_run(out / name, test, limit=limit, max_new_tokens=max_new_tokens, tag="ablation")
            runs.append({"arm": arm, "seed": seed, **_pick(m)})
    result = {"seeds": seeds, "steps": (raw["crpo"].get("run") or {}).get("max_steps"), "test": str(test),
              "n": start["n"], "start": str(adapter), "mean": _means(runs), "runs": runs}
    from training.checkpoint import atomic_write_text

    atomic_write_text(out / "ablation.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "ablation.md", table(result) + "\n")
    return result


def _rollout_len(raw: dict) -> int | None:
    return (raw["crpo"].get("rollout") or {}).get("max_new_tokens")


def _pick(m: dict) -> dict:
    return {k: m[k] for k in MEASURES}


def _means(runs: list[dict]) -> list[dict]:
    """Per arm: the mean over seeds and the spread (max - min) of each measure."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rows = [r for r in runs if r["arm"] == arm]
        row: dict = {"arm": arm, "seeds": len(rows)}
        for k in MEASURES:
            vals = [r[k] for r in rows]
            row[k] = sum(vals) / len(vals)
            row[f"{k}_spread"] = max(vals) - min(vals)
        out.append(row)
    return out


def table(result: dict) -> str:
    """Markdown: arm means (± half the seed spread), then every run."""
    head = "| arm | seeds | " + " | ".join(SHOWN) + " |"
    sep = "|" + "---|" * (len(SHOWN) + 2)
    lines = [f"GRPO vs CRPO from {result['start']}, {result['steps']} RL steps, seeds {result['seeds']}, "
             f"{result['n']} held-out questions ({result['test']}), greedy", "", head, sep]
    for r in result["mean"]:
        cells = [f"{r[k]:.3f} ± {r[k + '_spread'] / 2:.3f}" if r["seeds"] > 1 else f"{r[k]:.3f}" for k in SHOWN]
        lines.append(f"| {r['arm']} | {r['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "| arm | seed | " + " | ".join(SHOWN) + " |", sep]
    for r in result["runs"]:
        lines.append(f"| {r['arm']} | {r['seed']} | " + " | ".join(f"{r[k]:.3f}" for k in SHOWN) + " |")
    return "\n".join(lines)
