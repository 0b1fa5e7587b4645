"""What sits around a model's answer: how it was asked, flags a clinician must see (cut off, not in the trained
format, not one of the trained labels), and the model's record (held-out accuracy, per-class recall with the
must-not-miss classes marked, what it was trained on, whether it is an embedded demo model with no medical skill).

An answer alone says nothing about how far to trust it; the same answer beside "melanoma recall 0.33" reads
differently. Gradio-free; every value is escaped by `app.html`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape

from . import html

EMBEDDED_NOTE = (
    "Embedded demo model: a tiny model built on this machine and trained for minutes on synthetic data. "
    "It shows the machinery working; it has no medical skill."
)


@dataclass
class Flag:
    kind: str  # cut | format | label | empty | info
    text: str


def answer_flags(
    gen,
    well_formed: bool | None,
    answer_ok: bool | None,
    trained_tokens: int,
    labels: list[str] | None = None,
) -> list[Flag]:
    """The warnings a clinician needs before reading the answer."""
    out = []
    if gen.truncated:
        out.append(
            Flag(
                "cut",
                f"Cut off: the answer used all {gen.max_new_tokens} new tokens it was given and did "
                f"not finish (the run answers in up to {trained_tokens}); raise 'Max new tokens' or "
                "leave it at 0 (the run's own length).",
            )
        )
    if not (gen.text or "").strip():
        out.append(Flag("empty", "The model produced no text."))
    elif well_formed is False:
        out.append(
            Flag(
                "format",
                "Not in the format the model was trained to answer in: read it with care; the KG "
                "check may not find its diagnosis.",
            )
        )
    if (
        answer_ok is False and (gen.answer or "").strip() and not gen.truncated
    ):  # a cut answer never named one
        names = f" ({len(labels)}: {', '.join(labels)})" if labels else ""
        out.append(Flag("label", f"The answer is not one of the labels this model was trained on{names}."))
    return out


def flags_html(flags: list[Flag]) -> str:
    if not flags:
        return ""
    items = "".join(
        f'<li class="medrl-flag medrl-flag-{escape(f.kind)}">⚠ {escape(f.text)}</li>' for f in flags
    )
    return f'<ul class="medrl-flags" role="alert">{items}</ul>'


def answer_card(title: str, gen, flags: list[Flag], asked: str) -> str:
    """The disclaimer, the flags, the reasoning and the answer, and how the model was asked."""
    parts = [f'<div class="medrl-card medrl-answer-card"><h3>{escape(title)}</h3>', flags_html(flags)]
    if gen.reasoning:
        parts.append(
            f'<div class="medrl-muted">Reasoning</div><div class="medrl-answer">{escape(gen.reasoning)}</div>'
        )
    parts.append(
        f'<div class="medrl-muted">Answer</div><div class="medrl-answer">'
        f"{escape(gen.answer or '(no answer)')}</div>"
    )
    meta = (
        f"{gen.run_id} ({gen.stage}) · greedy · {gen.new_tokens} of {gen.max_new_tokens} new tokens in "
        f"{gen.seconds:.2f} s" + (f" · model loaded in {gen.load_seconds:.1f} s" if gen.load_seconds else "")
    )
    parts.append(
        f'<div class="medrl-muted">{escape(meta)}</div><div class="medrl-muted">{escape(asked)}</div></div>'
    )
    return html.disclaimer() + "".join(parts)


# ---------------------------------------------------------------------------------------------- the model's record
HEADLINE = (
    "balanced_accuracy",
    "accuracy",
    "format_valid",
    "format_ok",
    "kg_faithfulness",
    "faithfulness",
    "comprehensiveness",
    "n",
)


def held_out(run) -> tuple[str, dict] | None:
    """(file name, metrics) of the run's held-out evaluation: eval/metrics.json, else the newest eval/*.json with an
    accuracy."""
    folder = run.eval_dir
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.json"), key=lambda p: (p.name != "metrics.json", -p.stat().st_mtime))
    for p in files:
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue
        if isinstance(m, dict) and isinstance(m.get("accuracy"), (int, float)):
            return p.name, m
    return None


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:.3f}"


def record_card(run, card: dict | None, kg=None, resolve=None) -> str:
    """The model's record: held-out measures, per-class recall (must-not-miss classes marked), training data."""
    parts = ['<div class="medrl-card medrl-record"><h3>This model\'s record</h3>']
    base = str((card or {}).get("base_model") or (run.read_config().get("model") or {}).get("name") or "")
    if base.startswith("embedded:"):
        parts.append(f'<div class="medrl-flag medrl-flag-info">{escape(EMBEDDED_NOTE)}</div>')
    found = held_out(run)
    if found is None:
        parts.append(
            '<div class="medrl-muted">No held-out evaluation in this run (eval/ is empty): its accuracy is '
            "unknown. Run `medrl dermiq eval` or `medrl clinical eval` on it.</div>"
        )
    else:
        name, m = found
        rows = [[k.replace("_", " "), _num(m[k])] for k in HEADLINE if isinstance(m.get(k), (int, float))]
        parts.append(
            f'<div class="medrl-muted">Held-out evaluation (eval/{escape(name)}, {escape(str(m.get("data", "")))}'
            f"):</div>" + html.table(["measure", "value"], rows)
        )
        recall = m.get("per_class_recall") or {}
        if recall:
            rrows = []
            for label, v in recall.items():
                node = resolve(label) if resolve else None
                mnm = bool(kg is not None and node is not None and node in kg and kg.must_not_miss(node))
                cell = f"{escape(label)}{html.mnm(mnm)}"
                low = ' class="medrl-sens"' if mnm and v < 0.9 else ""
                rrows.append(f"<tr><td>{cell}</td><td{low}>{_num(v)}</td></tr>")
            parts.append(
                '<div class="medrl-muted">Recall per class (must-not-miss classes marked; red: a must-not-miss '
                "class it misses more than 1 in 10 times):</div>"
                f'<table class="medrl-table"><tbody>{"".join(rrows)}</tbody></table>'
            )
    trained = (card or {}).get("trained_on") or []
    if trained:
        rows = [
            [
                t.get("trainer", ""),
                t.get("run", ""),
                t.get("data", ""),
                "" if t.get("records") is None else t["records"],
            ]
            for t in trained
        ]
        parts.append(
            '<div class="medrl-muted">Trained on (oldest stage first):</div>'
            + html.table(["trainer", "stage", "data", "records"], rows)
        )
    return "".join(parts) + "</div>"


CSS = """
.medrl-flags {margin: 4px 0 8px 0; padding-left: 0; list-style: none}
.medrl-flag {background: #fef3c7; color: #92400e; border-left: 4px solid #d97706; padding: 4px 8px; margin: 3px 0;
  border-radius: 4px; font-size: 0.92em}
.medrl-flag-cut, .medrl-flag-label, .medrl-flag-empty {background: #fee2e2; color: #991b1b; border-left-color: #b91c1c}
.medrl-flag-info {background: #eff6ff; color: #1e3a8a; border-left-color: #1d4ed8}
"""
