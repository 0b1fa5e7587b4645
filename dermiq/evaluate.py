"""`medrl dermiq eval RUN --data SPLIT`: a run's adapter on held-out lesions, measured the way a dermatologist reads.

Per image: the greedy response (its ``<answer>`` mapped onto the run's label set, '(none)' when it names none), and
the model's likelihood of each class as the answer after its own analysis (`dermiq.generate.class_logprobs`,
softmax over the labels), so AUC means something. Metrics by scikit-learn: accuracy, balanced accuracy (the ISIC
primary metric: mean per-class recall), macro-F1, per-class recall, macro one-vs-rest AUC; plus
- ``format_valid``: the full DermIQ layout (tags, four headings with text, answer in the label set);
- ``kg_faithfulness``: of the findings the responses state, the share the KG supports for the predicted condition
  (the claim checker, as the KG-consistency reward reads it; responses that name no KG condition are left out);
- ``image_faithfulness``: for synthetic images, the share of stated findings the image really shows;
- ``vote_*`` with ``--vote K``: the majority answer of K samples (temperature ``--vote-temperature``).
Written under RUN/eval/: ``<tag>.json`` (metrics.json), ``<tag>_probabilities.csv`` (ISIC layout: ``image`` then one
column per class), ``<tag>_predictions.csv``, ``<tag>_confusion.png``.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from collections import Counter
from pathlib import Path

from training.errors import MedrlError
from training.stages import model_config_of

NONE = "(none)"


# ---------------------------------------------------------------------------------------------- scoring (no torch)
def label_map(labels: list[str]):
    """answer text -> one of ``labels`` (exact up to case/punctuation, else the KG condition it names), or NONE."""
    from knowledge_graph.lexicon import normalize

    from .rewards import resolve_answer

    exact = {normalize(lab): lab for lab in labels}
    by_node = {}
    for lab in labels:
        node = resolve_answer(lab)
        if node is not None:
            by_node.setdefault(node, lab)

    def to_label(answer: str | None) -> str:
        if not answer:
            return NONE
        if normalize(answer) in exact:
            return exact[normalize(answer)]
        return by_node.get(resolve_answer(answer), NONE)

    return to_label


def image_findings_parts(text: str, findings: dict | None) -> tuple[int, int]:
    """(stated findings the image shows, stated findings) for a synthetic record's ground truth."""
    from knowledge_graph.claims import PRESENT, extract_claims

    from .prompts import parse_response
    from .rewards import kg

    if not findings:
        return (0, 0)
    truth = {v for vs in findings.values() for v in (vs if isinstance(vs, list) else [vs])}
    claims = [c for c in extract_claims(parse_response(text).findings_text, kg())
              if c.kind == "finding" and c.polarity == PRESENT]
    return (sum(c.node_id in truth for c in claims), len(claims))


def score_response(record: dict, text: str, to_label) -> dict:
    """Per-image measures of one response (torch-free: tests call it on hand-written text)."""
    from .prompts import parse_response
    from .rewards import consistency_parts, well_formed

    r = parse_response(text)
    supported, _, stated = consistency_parts(text)
    img_ok, img_n = image_findings_parts(text, (record.get("meta") or {}).get("findings"))
    return {"pred": to_label(r.answer), "format_ok": float(well_formed(text, record.get("prompt"))),
            "kg_supported": supported, "kg_stated": stated, "image_supported": img_ok, "image_stated": img_n}


def class_metrics(gold: list[str], pred: list[str], labels: list[str], probs=None) -> dict:
    """scikit-learn's accuracy, balanced accuracy, macro-F1, per-class recall, confusion (labels + NONE), AUC."""
    import numpy as np
    from sklearn import metrics as M

    present = [lab for lab in labels if lab in set(gold)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predictions outside the gold classes ('(none)') are simply wrong
        out = {
            "accuracy": float(M.accuracy_score(gold, pred)),
            "balanced_accuracy": float(M.balanced_accuracy_score(gold, pred)),
            "macro_f1": float(M.f1_score(gold, pred, labels=present, average="macro", zero_division=0)),
            "per_class_recall": dict(zip(present, (float(x) for x in M.recall_score(
                gold, pred, labels=present, average=None, zero_division=0)), strict=True)),
            "confusion_labels": [*labels, NONE],
            "confusion": M.confusion_matrix(gold, pred, labels=[*labels, NONE]).tolist(),
        }
        out["auc_macro_ovr"] = None
        if probs is not None and len(present) >= 2:
            idx = [labels.index(lab) for lab in present]
            p = np.asarray(probs, dtype=float)[:, idx]
            p = p / p.sum(1, keepdims=True)
            y = np.array([present.index(g) for g in gold])
            try:
                out["auc_macro_ovr"] = float(M.roc_auc_score(y, p, multi_class="ovr", average="macro",
                                                            labels=list(range(len(present))))
                                             if len(present) > 2 else M.roc_auc_score(y, p[:, 1]))
            except ValueError:
                out["auc_macro_ovr"] = None
    return out


def summarise(rows: list[dict], labels: list[str], probs=None) -> dict:
    if not rows:
        raise MedrlError("nothing to evaluate: no records")
    gold, pred = [r["gold"] for r in rows], [r["pred"] for r in rows]
    out: dict = {"n": len(rows), "labels": labels, **class_metrics(gold, pred, labels, probs)}
    out["format_valid"] = sum(r["format_ok"] for r in rows) / len(rows)
    out["answered"] = sum(r["pred"] != NONE for r in rows) / len(rows)
    stated = sum(r["kg_stated"] for r in rows)
    out["kg_faithfulness"] = sum(r["kg_supported"] for r in rows) / stated if stated else None
    out["kg_findings_stated"] = stated
    img = sum(r["image_stated"] for r in rows)
    out["image_faithfulness"] = sum(r["image_supported"] for r in rows) / img if img else None
    if probs is not None:
        out["prob_accuracy"] = sum(labels[max(range(len(labels)), key=p.__getitem__)] == g
                                   for p, g in zip(probs, gold)) / len(rows)
    if rows and "vote_pred" in rows[0]:
        vote = class_metrics(gold, [r["vote_pred"] for r in rows], labels)
        out.update({f"vote_{k}": vote[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")})
    return out


# ---------------------------------------------------------------------------------------------- running a model
def default_max_new_tokens(run) -> int:
    """The run's rollout length (an RL run), else its recipe's DermIQ default 160."""
    return int((run.read_config().get("rollout") or {}).get("max_new_tokens") or 160)


def image_id(record: dict, i: int) -> str:
    meta = record.get("meta") or {}
    if meta.get("image_id"):
        return str(meta["image_id"])
    imgs = record.get("images") or []
    return Path(imgs[0]).stem if imgs and isinstance(imgs[0], str) else f"row{i}"


def evaluate_run(run_path: str | Path, data: str | Path, limit: int | None = None, max_new_tokens: int | None = None,
                 tag: str = "metrics", vote: int = 0, vote_temperature: float = 0.7, seed: int = 0) -> dict:
    """Generate, score, write RUN/eval/<tag>.json and its CSVs and PNG; returns the metrics."""
    import torch

    from training.data import read_jsonl
    from training.models import load_policy
    from training.run import RunDir
    from training.task_card import read_card

    from . import task
    from .generate import class_logprobs, generate
    from .prompts import labels_of, parse_response

    run = RunDir(run_path)
    model_cfg, adapter = model_config_of(run)
    records = read_jsonl(data, "rl", limit=limit).records
    # Asked as the run was trained: its task card's label set and answer length (the data's own labels when the
    # run has no card, e.g. one trained on another prompt).
    card = read_card(run.path)
    labels = (task.labels(card) or labels_of(records[0].get("prompt"))
              or sorted({str(r.get("answer")) for r in records}))
    records = [{**r, "prompt": task.messages(card, max(1, len(r.get("images") or [])), labels)} for r in records]
    to_label = label_map(labels)
    n_tok = max_new_tokens or (task.max_new_tokens(card) if card else default_max_new_tokens(run))
    t0 = time.time()
    policy = load_policy(model_cfg, adapter=adapter, trainable=False)
    texts = [s[0] for s in generate(policy, records, n_tok, seed=seed)]
    probs = torch.softmax(class_logprobs(policy, records, texts, labels), -1).tolist()
    votes = generate(policy, records, n_tok, n=vote, temperature=vote_temperature, seed=seed) if vote > 1 else None
    del policy
    rows = []
    for i, (rec, text) in enumerate(zip(records, texts, strict=True)):
        row = {"image": image_id(rec, i), "gold": to_label(rec.get("answer")), **score_response(rec, text, to_label)}
        if votes is not None:
            said = Counter(to_label(parse_response(t).answer) for t in votes[i])
            row["vote_pred"] = max(said, key=lambda k: (said[k], k != NONE))
        row["response"] = text
        rows.append(row)
    metrics = {"run": str(run.path), "adapter": str(adapter), "data": str(data), "max_new_tokens": n_tok,
               "vote": vote, **summarise(rows, labels, probs), "seconds": round(time.time() - t0, 1)}
    write_eval(run.eval_dir, tag, metrics, rows, labels, probs)
    return metrics


def write_eval(folder: Path, tag: str, metrics: dict, rows: list[dict], labels: list[str], probs) -> None:
    from training.checkpoint import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{tag}.json", json.dumps(metrics, indent=2) + "\n")
    with open(folder / f"{tag}_predictions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(folder / f"{tag}_probabilities.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", *labels])
        for row, p in zip(rows, probs, strict=True):
            w.writerow([row["image"], *(f"{x:.6f}" for x in p)])
    confusion_png(folder / f"{tag}_confusion.png", metrics["confusion"], metrics["confusion_labels"])


def confusion_png(path: Path, matrix: list[list[int]], labels: list[str], cell: int = 28) -> Path:
    """Rows: true class, columns: predicted (last: no label); shade by the row's share, counts written in."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    n = len(labels)
    left, top = 170, 150
    img = Image.new("RGB", (left + n * cell + 10, top + n * cell + 10), "white")
    d = ImageDraw.Draw(img)
    d.text((4, top - 30), "rows: true class", fill="black", font=font)
    d.text((4, top - 16), "columns: predicted", fill="black", font=font)
    for i, lab in enumerate(labels):
        d.text((4, top + i * cell + cell // 3), lab[:26], fill="black", font=font)
        txt = Image.new("RGB", (top - 4, cell), "white")
        ImageDraw.Draw(txt).text((2, cell // 3), lab[:24], fill="black", font=font)
        img.paste(txt.rotate(90, expand=True), (left + i * cell, 0))
    for i, row in enumerate(matrix):
        total = max(1, sum(row))
        for j, c in enumerate(row):
            share = c / total
            shade = int(255 * (1 - share))
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
            d.rectangle(box, fill=(shade, shade, 255), outline=(200, 200, 200))
            if c:
                d.text((box[0] + 6, box[1] + 8), str(c), fill="white" if share > 0.5 else "black", font=font)
    img.save(path)
    return path


FIELDS = ("balanced_accuracy", "accuracy", "macro_f1", "auc_macro_ovr", "format_valid", "kg_faithfulness",
          "image_faithfulness")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def metrics_table(m: dict) -> str:
    lines = [f"{m['n']} images from {m['data']} (greedy, max_new_tokens {m['max_new_tokens']})"]
    lines += [f"{k:<22}{_fmt(m.get(k))}" for k in FIELDS]
    for k in ("vote_balanced_accuracy", "vote_accuracy"):
        if k in m:
            lines.append(f"{k:<22}{_fmt(m[k])}  (k={m['vote']})")
    lines += [f"recall[{c}]".ljust(34) + _fmt(v) for c, v in m["per_class_recall"].items()]
    return "\n".join(lines)
