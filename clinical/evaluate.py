"""`medrl clinical eval RUN --data FILE`: greedy answers from a run's adapter, scored by the CRPO rules.

Per question: the boxed letter against the key, and the paper's reasoning measures read by `clinical.reasoning`
(the same reading the CRPO rewards use, so evaluation and training agree on what a cited finding or a rejected
option is). Written under the run's `eval/`: `metrics.json` (what the app's Training runs tab shows) and a
per-question `predictions.csv`.

Measures (means over questions unless said):
- ``accuracy``: exactly one ``\\boxed{}`` holding the gold letter (also per data source, ``meta.source``);
- ``format_ok``: the full think/answer layout with a summary and one box (format reward 1.5);
- ``evidence_per_100_words``: case findings cited per 100 words of reasoning (citation density), and
  ``evidence``: the faithfulness evidence share (cited / min(3, case findings));
- ``rejection_coverage``: wrong options ruled out with a reason / wrong options (0 when it also rules out its answer);
- ``hallucination_rate``: findings asserted for the patient that the case does not hold (or case findings called
  absent) / findings asserted or called absent;
- ``consistency``: 1 when the boxed option is the one the reasoning concludes for, -1 when it concludes another or
  none, 0 when there is no single box (the third part of the faithfulness reward);
- ``verifications``, ``backtracks``: sentences per response; ``length_tokens``, ``length_words``.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from pathlib import Path

from training.errors import MedrlError
from training.stages import model_config_of

FIELDS = ("accuracy", "format_ok", "evidence", "evidence_per_100_words", "rejection_coverage", "hallucination_rate",
          "consistency",
          "faithfulness", "comprehensiveness", "verifications", "backtracks", "length_tokens", "length_words")


def score_response(record: dict, text: str) -> dict:
    """Every per-question measure of one response (torch-free: the tests call it on hand-written text)."""
    from . import rewards as R

    meta = record.get("meta") or {}
    gold = record.get("answer")
    _, options = R.question_of(record.get("prompt"), meta)
    a = R.analysis(record.get("prompt"), text, gold, meta)
    faith = R.faithfulness_parts(a)
    comp = R.comprehensiveness_parts(a, options, gold)
    words = len(a.response.reasoning.split())
    cited = len(a.cited) if a.case_findings else a.cited_words
    return {
        "accuracy": float(R.accuracy_score(text, gold) == 1.0),
        "format_ok": float(R.format_score(text) == 1.5),
        "evidence": faith["evidence"],
        "evidence_per_100_words": 100.0 * cited / words if words else 0.0,
        "rejection_coverage": comp["rejection"],
        "hallucination_rate": faith["hallucination"],
        "consistency": faith["consistency"],
        "faithfulness": R.faithfulness_score(a),
        "comprehensiveness": R.comprehensiveness_score(a, options, gold),
        "verifications": float(a.verifications),
        "backtracks": float(a.backtracks),
        "length_words": float(len(text.split())),
        "boxed": a.boxed or "",
    }


def summarise(rows: list[dict]) -> dict:
    """Means of FIELDS overall, and accuracy (with n) per data source."""
    if not rows:
        raise MedrlError("nothing to evaluate: no records")
    out: dict = {"n": len(rows)}
    for k in FIELDS:
        out[k] = sum(float(r[k]) for r in rows) / len(rows)
    by: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by[r["source"]].append(float(r["accuracy"]))
    out["by_source"] = {s: {"n": len(v), "accuracy": sum(v) / len(v)} for s, v in sorted(by.items())}
    return out


def generate(model_cfg, adapter: str | Path | None, records: list[dict], max_new_tokens: int,
             batch: int = 8) -> tuple[list[str], list[int]]:
    """Greedy completions (one per record) and their token counts."""
    import torch

    from training.batch import encode_records
    from training.models import autocast_context, load_policy
    from training.rollout import SamplingConfig, generate_rollouts

    policy = load_policy(model_cfg, adapter=adapter, trainable=False)
    sampling = SamplingConfig(num_generations=1, temperature=0.0, max_new_tokens=max_new_tokens)
    texts, lengths = [], []
    for i in range(0, len(records), batch):
        chunk = records[i: i + batch]
        with torch.no_grad(), autocast_context("auto", policy.device):
            out = generate_rollouts(policy.model, policy.processor, encode_records(policy, chunk), sampling)
        texts += out.texts
        lengths += [int(n) for n in out.completion_mask.sum(-1).tolist()]
    return texts, lengths


def default_max_new_tokens(run) -> int:
    """The run's own rollout length (an RL run), else 512."""
    return int((run.read_config().get("rollout") or {}).get("max_new_tokens") or 512)


def evaluate_run(run_path: str | Path, data: str | Path, limit: int | None = None, max_new_tokens: int | None = None,
                 tag: str = "metrics") -> dict:
    """Generate, score, and write `eval/<tag>.json` and `eval/<tag>_predictions.csv` (tag 'metrics':
    `metrics.json`, `predictions.csv`)."""
    from training.data import read_jsonl
    from training.run import RunDir
    from training.task_card import read_card

    from . import task

    run = RunDir(run_path)
    model_cfg, adapter = model_config_of(run)
    ds = read_jsonl(data, "rl", limit=limit)
    if not ds.records:
        raise MedrlError(f"{data}: no usable RL records")
    # Asked as the run was trained: the task card's system turn over each record's question, its answer length.
    card = read_card(run.path)
    records = [{**r, "prompt": task.record_messages(card, r)} for r in ds.records] if card else ds.records
    n_tok = max_new_tokens or (task.max_new_tokens(card) if card else default_max_new_tokens(run))
    t0 = time.time()
    texts, lengths = generate(model_cfg, adapter, records, n_tok)
    rows = []
    for i, (rec, text, n) in enumerate(zip(ds.records, texts, lengths, strict=True)):
        meta = rec.get("meta") or {}
        row = {"i": i, "id": meta.get("id", i), "source": meta.get("source", "unknown"), "gold": rec.get("answer"),
               **score_response(rec, text), "length_tokens": float(n), "truncated": int(n >= n_tok),
               "response": text}
        rows.append(row)
    metrics = {"run": str(run.path), "adapter": str(adapter), "data": str(data), "max_new_tokens": n_tok,
               **summarise(rows), "truncated": sum(r["truncated"] for r in rows) / len(rows),
               "seconds": round(time.time() - t0, 1)}
    write_eval(run.eval_dir, tag, metrics, rows)
    return metrics


def write_eval(folder: Path, tag: str, metrics: dict, rows: list[dict]) -> None:
    from training.checkpoint import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    csv_name = "predictions.csv" if tag == "metrics" else f"{tag}_predictions.csv"
    atomic_write_text(folder / f"{tag}.json", json.dumps(metrics, indent=2) + "\n")
    with open(folder / csv_name, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def metrics_table(m: dict) -> str:
    lines = [f"{m['n']} questions from {m['data']} (greedy, max_new_tokens {m['max_new_tokens']})"]
    lines += [f"{k:<24}{m[k]:.3f}" for k in FIELDS]
    lines.append(f"{'truncated':<24}{m['truncated']:.3f}")
    for s, v in m["by_source"].items():
        lines.append(f"accuracy[{s}]".ljust(24) + f"{v['accuracy']:.3f}  (n={v['n']})")
    return "\n".join(lines)
