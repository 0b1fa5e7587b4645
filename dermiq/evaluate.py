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
Written under RUN/eval/ (`training.trainers.evaluation` runs the model and writes the files): ``<tag>.json`` (metrics.json),
``<tag>_probabilities.csv`` (ISIC layout: ``image`` then one column per class), ``<tag>_predictions.csv``,
``<tag>_confusion.png``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

from training.errors import MedrlError
from training.trainers.evaluation import EVALUATORS, Evaluation, fmt, metrics_lines, write_csv
from training.trainers.evaluation import write_eval as write_eval_files

from . import task

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
    claims = [
        c
        for c in extract_claims(parse_response(text).findings_text, kg())
        if c.kind == "finding" and c.polarity == PRESENT
    ]
    return (sum(c.node_id in truth for c in claims), len(claims))


def score_response(record: dict, text: str, to_label) -> dict:
    """Per-image measures of one response (torch-free: tests call it on hand-written text)."""
    from .prompts import parse_response
    from .rewards import consistency_parts, well_formed

    r = parse_response(text)
    supported, _, stated = consistency_parts(text)
    img_ok, img_n = image_findings_parts(text, (record.get("meta") or {}).get("findings"))
    return {
        "pred": to_label(r.answer),
        "format_ok": float(well_formed(text, record.get("prompt"))),
        "kg_supported": supported,
        "kg_stated": stated,
        "image_supported": img_ok,
        "image_stated": img_n,
    }


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
            "per_class_recall": dict(
                zip(
                    present,
                    (
                        float(x)
                        for x in M.recall_score(gold, pred, labels=present, average=None, zero_division=0)
                    ),
                    strict=True,
                )
            ),
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
                out["auc_macro_ovr"] = float(
                    M.roc_auc_score(
                        y, p, multi_class="ovr", average="macro", labels=list(range(len(present)))
                    )
                    if len(present) > 2
                    else M.roc_auc_score(y, p[:, 1])
                )
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
        out["prob_accuracy"] = sum(
            labels[max(range(len(labels)), key=p.__getitem__)] == g for p, g in zip(probs, gold)
        ) / len(rows)
    if rows and "vote_pred" in rows[0]:
        vote = class_metrics(gold, [r["vote_pred"] for r in rows], labels)
        out.update({f"vote_{k}": vote[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")})
    return out


# ---------------------------------------------------------------------------------------------- running a model
def image_id(record: dict, i: int) -> str:
    meta = record.get("meta") or {}
    if meta.get("image_id"):
        return str(meta["image_id"])
    imgs = record.get("images") or []
    return Path(imgs[0]).stem if imgs and isinstance(imgs[0], str) else f"row{i}"


@EVALUATORS.register("dermiq")
class DermEvaluation(Evaluation):
    """Asked with the run's label set (its task card's, else the data's own), answered greedily, with the class
    likelihoods after the model's own analysis and, with ``vote`` >= 2, ``vote`` samples per image."""

    default_max_new_tokens = task.DEFAULT_MAX_NEW_TOKENS

    def __init__(
        self,
        run_path,
        data,
        limit=None,
        max_new_tokens=None,
        tag="metrics",
        vote: int = 0,
        vote_temperature: float = 0.7,
        seed: int = 0,
        policy=None,
    ):
        from .prompts import labels_of

        super().__init__(run_path, data, limit, max_new_tokens, tag, policy)
        self.vote, self.vote_temperature, self.seed = vote, vote_temperature, seed
        # Asked as the run was trained: its task card's label set (the data's own labels when the run has no card,
        # e.g. one trained on another prompt).
        self.labels = (
            task.labels(self.card)
            or labels_of(self.records[0].get("prompt"))
            or sorted({str(r.get("answer")) for r in self.records})
        )
        self.to_label = label_map(self.labels)

    def ask(self) -> list[dict]:
        return [
            {**r, "prompt": task.messages(self.card, max(1, len(r.get("images") or [])), self.labels)}
            for r in self.records
        ]

    def respond(self, policy, asked: list[dict]):
        import torch

        from training.rollout.generation import generate

        from .generate import class_logprobs

        texts = [s[0] for s in generate(policy, asked, self.max_new_tokens, seed=self.seed)]
        probs = torch.softmax(class_logprobs(policy, asked, texts, self.labels), -1).tolist()
        votes = (
            generate(
                policy,
                asked,
                self.max_new_tokens,
                n=self.vote,
                temperature=self.vote_temperature,
                seed=self.seed,
            )
            if self.vote > 1
            else None
        )
        return texts, probs, votes

    def score(self, asked: list[dict], responses) -> tuple[list[dict], dict]:
        from .prompts import parse_response

        texts, probs, votes = responses
        rows = []
        for i, (rec, text) in enumerate(zip(asked, texts, strict=True)):
            row = {
                "image": image_id(rec, i),
                "gold": self.to_label(rec.get("answer")),
                **score_response(rec, text, self.to_label),
            }
            if votes is not None:
                said = Counter(self.to_label(parse_response(t).answer) for t in votes[i])
                row["vote_pred"] = max(said, key=lambda k: (said[k], k != NONE))
            row["response"] = text
            rows.append(row)
        return rows, {"vote": self.vote, **summarise(rows, self.labels, probs)}

    def write(self, metrics: dict, rows: list[dict], responses) -> None:
        write_eval(self.run.eval_dir, self.tag, metrics, rows, self.labels, responses[1])


def evaluate_run(
    run_path: str | Path,
    data: str | Path,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    tag: str = "metrics",
    vote: int = 0,
    vote_temperature: float = 0.7,
    seed: int = 0,
) -> dict:
    """Generate, score, write RUN/eval/<tag>.json and its CSVs and PNG; returns the metrics."""
    return DermEvaluation(run_path, data, limit, max_new_tokens, tag, vote, vote_temperature, seed)()


def write_eval(folder: Path, tag: str, metrics: dict, rows: list[dict], labels: list[str], probs) -> None:
    """The metrics and predictions (`training.trainers.evaluation.write_eval`), the ISIC probabilities CSV, the confusion PNG."""
    write_eval_files(folder, tag, metrics, rows)
    columns = ["image", *labels]
    write_csv(
        folder / f"{tag}_probabilities.csv",
        [
            # repr: the shortest text that reads back as the same float, so scikit-learn on this CSV gives the AUC
            # in metrics.json exactly (6 decimals made ties of small probabilities and moved it by 0.002-0.004)
            dict(zip(columns, [row["image"], *(repr(float(x)) for x in p)], strict=True))
            for row, p in zip(rows, probs, strict=True)
        ],
        columns,
    )
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


FIELDS = (
    "balanced_accuracy",
    "accuracy",
    "macro_f1",
    "auc_macro_ovr",
    "format_valid",
    "kg_faithfulness",
    "image_faithfulness",
)


def metrics_table(m: dict) -> str:
    lines = metrics_lines(m, "images", FIELDS, 24)
    for k in ("vote_balanced_accuracy", "vote_accuracy"):
        if k in m:
            lines.append(f"{k:<24}{fmt(m[k])}  (k={m['vote']})")
    lines += [f"recall[{c}]".ljust(34) + fmt(v) for c, v in m["per_class_recall"].items()]
    return "\n".join(lines)
