"""`medrl clinical eval RUN --data FILE`: greedy answers from a run's adapter, scored by the CRPO rules.

Per question: the boxed letter against the key, and the paper's reasoning measures read by `clinical.reasoning`
(the same reading the CRPO rewards use, so evaluation and training agree on what a cited finding or a rejected
option is). Written under the run's `eval/` (`training.trainers.evaluation` runs the model and writes the files):
`metrics.json` (what the app's Training runs tab shows) and a per-question `predictions.csv`.

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

from collections import defaultdict
from pathlib import Path

from training.errors import MedrlError
from training.trainers.evaluation import EVALUATORS, Evaluation, metrics_lines, write_eval

from . import task

FIELDS = (
    "accuracy",
    "format_ok",
    "evidence",
    "evidence_per_100_words",
    "rejection_coverage",
    "hallucination_rate",
    "consistency",
    "faithfulness",
    "comprehensiveness",
    "verifications",
    "backtracks",
    "length_tokens",
    "length_words",
)


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


@EVALUATORS.register("clinical")
class ClinicalEvaluation(Evaluation):
    """Each question asked under the run's task card, answered greedily, scored by the CRPO rules."""

    default_max_new_tokens = task.DEFAULT_MAX_NEW_TOKENS

    def ask(self) -> list[dict]:
        # Asked as the run was trained: the task card's system turn over each record's question.
        if not self.card:
            return self.records
        return [{**r, "prompt": task.record_messages(self.card, r)} for r in self.records]

    def respond(self, policy, asked: list[dict]) -> tuple[list[str], list[int]]:
        """Greedy completions and their token counts, 8 prompts per decode call as these evaluations always ran
        (the batch's padding changes float rounding, so another size could change a greedy answer)."""
        from training.rollout.generation import generate_completions

        done = [row[0] for row in generate_completions(policy, asked, self.max_new_tokens, batch=8)]
        return [c.text for c in done], [c.length for c in done]

    def score(self, asked: list[dict], responses) -> tuple[list[dict], dict]:
        texts, lengths = responses
        rows = []
        for i, (rec, text, n) in enumerate(zip(self.records, texts, lengths, strict=True)):
            meta = rec.get("meta") or {}
            rows.append(
                {
                    "i": i,
                    "id": meta.get("id", i),
                    "source": meta.get("source", "unknown"),
                    "gold": rec.get("answer"),
                    **score_response(rec, text),
                    "length_tokens": float(n),
                    "truncated": int(n >= self.max_new_tokens),
                    "response": text,
                }
            )
        return rows, {**summarise(rows), "truncated": sum(r["truncated"] for r in rows) / len(rows)}

    def write(self, metrics: dict, rows: list[dict], responses) -> None:
        predictions = (
            "predictions.csv" if self.tag == "metrics" else None
        )  # Clinical-R1's name for the default tag
        write_eval(self.run.eval_dir, self.tag, metrics, rows, predictions)


def evaluate_run(
    run_path: str | Path,
    data: str | Path,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    tag: str = "metrics",
) -> dict:
    """Generate, score, and write `eval/<tag>.json` and `eval/<tag>_predictions.csv` (tag 'metrics':
    `metrics.json`, `predictions.csv`)."""
    return ClinicalEvaluation(run_path, data, limit, max_new_tokens, tag)()


def metrics_table(m: dict) -> str:
    lines = metrics_lines(m, "questions", (*FIELDS, "truncated"), 24)
    for s, v in m["by_source"].items():
        lines.append(f"accuracy[{s}]".ljust(24) + f"{v['accuracy']:.3f}  (n={v['n']})")
    return "\n".join(lines)
