"""`medrl dermiq ablate`: GRPO vs the two GRPO++ readings from the same start, same budget, G=3.

Arms (all the recipe's `grpo++:` section, so sampler, rewards, loss, reference and optimiser are the same; only
`advantages.estimator` differs):
- ``grpo``: group z-score of the summed rewards; a group whose G samples score alike teaches nothing;
- ``grpo++``: the same, with a binary fallback (+1 right / -1 wrong) for groups with no spread;
- ``binary``: +1 right / -1 wrong for every sample (the "different binary advantage" reading).
The start is the warm-up adapter (OUT/warmup, trained first when missing, or `pipeline.start_adapter`). Per arm and
seed (OUT/<arm>_s<seed>): the share of groups whose rewards spread (``spread``: all a plain z-score can learn from),
the share of groups that get a non-zero advantage (``signal``), the share whose G answers are not all right or all
wrong (``mixed``), the mean reward over the run, and the held-out balanced accuracy (`dermiq.evaluate`). The table
goes to OUT/ablation.md and OUT/ablation.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from .pipeline import (
    FOLDERS,
    pipeline_config,
    prepare_data,
    previous_adapter,
    run_one,
    run_stage,
    stage_config,
)

ARMS = ("grpo", "grpo++", "binary")
SHOWN = ("spread", "signal", "mixed", "reward", "accuracy_reward", "balanced_accuracy", "format_valid",
         "kg_faithfulness")


def run_stats(run_dir: Path, estimator: str) -> dict:
    """Means over the run's steps of the group shares and rewards, from its metrics.jsonl."""
    from training.run import RunDir

    rows = [r for r in RunDir(run_dir).read_metrics() if "reward/mean" in r]
    if not rows:
        return {k: None for k in ("spread", "signal", "mixed", "reward", "accuracy_reward")}

    def mean(key, default=None):
        vals = [r[key] for r in rows if key in r]
        return sum(vals) / len(vals) if vals else default

    flat = mean("adv/frac_flat_groups", 0.0)
    return {"spread": 1.0 - flat, "signal": 1.0 - flat if estimator == "grpo" else 1.0,
            "mixed": 1.0 - mean("reward/derm_accuracy/frac_zero_std_groups", 1.0), "reward": mean("reward/mean"),
            "accuracy_reward": mean("reward/derm_accuracy/mean"), "steps": len(rows)}


def run_ablation(raw: dict, out: str | Path, seeds: list[int], arms: tuple[str, ...] = ARMS,
                 group_size: int = 3, limit: int | None = None) -> dict:
    """Train (or reuse) the warm-up start, then every (seed, arm) GRPO run; evaluate each and the start."""
    from .evaluate import evaluate_run

    pc = pipeline_config(raw)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(pc, out)
    test = data / "test.jsonl"
    start = previous_adapter(out, "grpo++", pc.start_adapter)
    if start is None:
        start = run_one(raw, pc, "warmup", data, out)
    limit = limit or pc.eval_limit or None
    n_tok = pc.eval_max_new_tokens
    runs = []
    if (out / FOLDERS["warmup"]).is_dir():
        m = evaluate_run(out / FOLDERS["warmup"], test, limit=limit, max_new_tokens=n_tok, tag="ablation")
        runs.append({"arm": "start", "seed": pc.seed, "spread": None, "signal": None, "mixed": None, "reward": None,
                     "accuracy_reward": None, **_pick(m)})
    for seed in seeds:
        for arm in arms:
            name = f"{FOLDERS.get(arm, arm)}_s{seed}"
            extra = {"data": {"train": str(data / "train.jsonl")}, "model": {"adapter": str(start)},
                     "advantages": {"estimator": arm}, "rollout": {"num_generations": group_size}}
            cfg = stage_config(raw, "grpo++", out, seed, extra, name=name)
            run_stage(cfg)
            m = evaluate_run(out / name, test, limit=limit, max_new_tokens=n_tok, tag="ablation")
            runs.append({"arm": arm, "seed": seed, **run_stats(out / name, arm), **_pick(m)})
    result = {"seeds": seeds, "group_size": group_size, "steps": (raw["grpo++"].get("run") or {}).get("max_steps"),
              "start": str(start), "test": str(test), "runs": runs, "mean": _means(runs)}
    from training.checkpoint import atomic_write_text

    atomic_write_text(out / "ablation.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "ablation.md", table(result) + "\n")
    return result


def _pick(m: dict) -> dict:
    return {k: m.get(k) for k in ("balanced_accuracy", "format_valid", "kg_faithfulness")}


def _means(runs: list[dict]) -> list[dict]:
    out = []
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rows = [r for r in runs if r["arm"] == arm]
        row: dict = {"arm": arm, "seeds": len(rows)}
        for k in SHOWN:
            vals = [r[k] for r in rows if r.get(k) is not None]
            row[k] = sum(vals) / len(vals) if vals else None
        out.append(row)
    return out


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def table(result: dict) -> str:
    """Markdown: one row per arm (mean over seeds)."""
    lines = [f"GRPO vs GRPO++ (both readings) from {result['start']}, G={result['group_size']}, {result['steps']} "
             f"steps, seeds {result['seeds']}; held-out {result['test']} (greedy)", "",
             "| arm | seeds | " + " | ".join(SHOWN) + " |", "|" + "---|" * (len(SHOWN) + 2)]
    for r in result["mean"]:
        lines.append(f"| {r['arm']} | {r['seeds']} | " + " | ".join(_fmt(r[k]) for k in SHOWN) + " |")
    return "\n".join(lines)
