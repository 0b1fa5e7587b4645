"""`medrl app-eval RUN --data SPLIT`: the app's own inference path over a held-out split, beside the run's evaluation.

The app must answer the way the run's evaluation measured it, or the accuracy a clinician reads beside an answer is
not the accuracy of the answers they see. This drives the tabs' `ask` functions (task card prompt, card length,
the inference service) over every held-out record and scores the answers with the evaluation's own rules; then it
compares with the run's `eval/<tag>.json` and, response by response, `eval/<tag>_predictions.csv`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from training.errors import MedrlError


def _eval_rows(run, tag: str) -> tuple[dict, list[dict]]:
    metrics_path = run.eval_dir / f"{tag}.json"
    csv_name = f"{tag}_predictions.csv"
    if not (run.eval_dir / csv_name).is_file() and tag == "metrics":
        csv_name = "predictions.csv"  # Clinical-R1's name for the default tag
    if not metrics_path.is_file():
        raise MedrlError(
            f"{metrics_path}: no evaluation to compare with (run `medrl dermiq eval` or "
            "`medrl clinical eval` first)"
        )
    with open(run.eval_dir / csv_name, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return json.loads(metrics_path.read_text(encoding="utf-8")), rows


def compare(
    ctx, run_id: str, data: str | Path, tag: str = "metrics", stage: str = "final", limit: int | None = None
) -> dict:
    """{kind, n, app_accuracy, eval_accuracy, same_response, same_prediction} for one run (DermIQ or Clinical-R1)."""
    from training.data.records import load_images, read_jsonl

    run = ctx.reader.run(run_id)
    metrics, eval_rows = _eval_rows(run, tag)
    records = read_jsonl(data, "rl", limit=limit or metrics.get("n")).records
    if len(records) != len(eval_rows):
        raise MedrlError(f"{data}: {len(records)} records, but the evaluation scored {len(eval_rows)}")
    vlm = bool(records[0].get("images"))
    texts, preds, golds = [], [], []
    if vlm:
        from dermiq.evaluate import label_map, score_response

        from .tab_derm import ask

        labels = metrics.get("labels")
        to_label = label_map(labels)
        for rec in records:
            gen, _, _, _ = ask(ctx, run_id, stage, load_images(rec["images"])[0], None)
            texts.append(gen.text)
            preds.append(score_response(rec, gen.text, to_label)["pred"])
            golds.append(to_label(rec.get("answer")))
        eval_preds = [r["pred"] for r in eval_rows]
    else:
        from clinical.evaluate import score_response
        from clinical.rewards import question_of

        from .tab_clinical import ask

        for rec in records:
            case, options = question_of(rec.get("prompt"), rec.get("meta") or {})
            gen, _ = ask(ctx, run_id, stage, case, options, None)
            texts.append(gen.text)
            preds.append(score_response(rec, gen.text)["accuracy"])
            golds.append(1.0)
        eval_preds = [float(r["accuracy"]) for r in eval_rows]
    same_text = sum(a == b["response"] for a, b in zip(texts, eval_rows, strict=True))
    same_pred = sum(a == b for a, b in zip(preds, eval_preds, strict=True))
    app_acc = sum(p == g for p, g in zip(preds, golds, strict=True)) / len(records)
    return {
        "run": run_id,
        "kind": "dermiq" if vlm else "clinical",
        "n": len(records),
        "app_accuracy": app_acc,
        "eval_accuracy": metrics["accuracy"],
        "same_response": same_text,
        "same_prediction": same_pred,
        "max_new_tokens": metrics.get("max_new_tokens"),
    }


def table(rows: list[dict]) -> str:
    head = f"{'run':<28}{'n':>4}{'app acc':>10}{'eval acc':>10}{'same text':>11}{'same pred':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['run']:<28}{r['n']:>4}{r['app_accuracy']:>10.3f}{r['eval_accuracy']:>10.3f}"
            f"{r['same_response']:>8}/{r['n']:<2}{r['same_prediction']:>8}/{r['n']:<2}"
        )
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser(
        "app-eval",
        help="the app's inference path over a held-out split, beside each run's own "
        "evaluation (they must agree)",
    )
    p.add_argument("runs", nargs="+", help="run ids under --root (e.g. dermiq/dpo clinical/crpo_s0)")
    p.add_argument("--root", default="runs/demo", help="runs root the app would read")
    p.add_argument("--data", required=True, help="the held-out split the runs were evaluated on (RL JSONL)")
    p.add_argument("--tag", default="metrics", help="which evaluation: eval/<tag>.json")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")

    def handler(args) -> int:
        from .context import AppContext

        ctx = AppContext(Path(args.root))
        rows = [compare(ctx, r, args.data, args.tag) for r in args.runs]
        print(json.dumps(rows, indent=2) if args.json else table(rows))
        return 0

    p.set_defaults(handler=handler)
