"""HTML fragments the tabs show: the disclaimer, answers, claim checks, tables. Every value is escaped here, so
text from a model, a run folder or the browser never becomes markup."""

from __future__ import annotations

from html import escape

from knowledge_graph.disclaimer import DISCLAIMER

from .kgcheck import REFERENCE_LABEL, KGCheck

BADGE_TITLES = {
    "supported": "the KG (or the case) says so",
    "contradicted": "the KG (or the case) says otherwise",
    "unverifiable": "the KG says nothing either way",
    "hedged": "stated as uncertain: kept open",
}

CSS = """
.medrl-disclaimer {border-left: 4px solid #b45309; background: #fffbeb; color: #78350f; padding: 8px 12px;
  margin: 6px 0; font-size: 0.92em; border-radius: 4px}
.medrl-card {border: 1px solid #d1d5db; border-radius: 6px; padding: 10px 14px; margin: 6px 0; background: #ffffff;
  color: #111827}
.medrl-card h3 {margin: 0 0 6px 0; font-size: 1.05em}
.medrl-muted {color: #4b5563; font-size: 0.9em}
.medrl-table {border-collapse: collapse; width: 100%; font-size: 0.92em}
.medrl-table th {text-align: left; background: #f3f4f6; color: #111827; padding: 4px 6px; border-bottom: 1px solid #d1d5db}
.medrl-table td {padding: 4px 6px; border-bottom: 1px solid #e5e7eb; vertical-align: top; color: #111827}
.medrl-badge {display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 0.85em; font-weight: 600}
.medrl-supported {background: #dcfce7; color: #166534}
.medrl-contradicted {background: #fee2e2; color: #991b1b}
.medrl-unverifiable {background: #e5e7eb; color: #374151}
.medrl-hedged {background: #fef3c7; color: #92400e}
.medrl-mnm {background: #fee2e2; color: #991b1b; font-size: 0.8em; padding: 0 6px; border-radius: 8px; margin-left: 4px}
.medrl-answer {white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.92em; background: #f9fafb;
  border: 1px solid #e5e7eb; padding: 6px 8px; border-radius: 4px; color: #111827}
.medrl-path {color: #4b5563; font-size: 0.85em}
.medrl-footnote {margin-top: 6px; font-size: 0.8em}
.medrl-kg-card h4 {margin: 10px 0 4px 0}
.medrl-sens {color: #991b1b; font-weight: 600; cursor: help}
mark.medrl-evidence {background: #bbf7d0; padding: 0 2px}
mark.medrl-hallucination {background: #fecaca; padding: 0 2px}
.medrl-turn {margin: 4px 0; padding: 6px 10px; border-radius: 6px; white-space: pre-wrap; color: #111827}
.medrl-turn-case {background: #eff6ff; border-left: 4px solid #1d4ed8}
.medrl-turn-model {background: #f9fafb; border-left: 4px solid #6b7280; font-family: ui-monospace, monospace}
.medrl-turn-clinician {background: #f0fdf4; border-left: 4px solid #15803d; font-family: ui-monospace, monospace}
.medrl-rollout-prompt {white-space: pre-wrap; font-size: 0.88em; color: #374151; margin: 4px 0 6px 0}
.medrl-rollout-text {white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.85em}
.medrl-adv-pos {color: #166534; font-weight: 600}
.medrl-adv-neg {color: #991b1b; font-weight: 600}
.medrl-adv-zero {color: #4b5563}
"""


def disclaimer() -> str:
    return f'<div class="medrl-disclaimer" role="note"><b>Research use only.</b> {escape(DISCLAIMER)}</div>'


def footnote() -> str:
    """The disclaimer in one line, for cards that sit under an answer already carrying the full one."""
    return '<div class="medrl-muted medrl-footnote">Research use only: not a medical device, not medical advice.</div>'


def notice(text: str, kind: str = "muted") -> str:
    return f'<div class="medrl-card"><span class="medrl-{kind}">{escape(text)}</span></div>'


def badge(kind: str) -> str:
    return (
        f'<span class="medrl-badge medrl-{escape(kind)}" title="{escape(BADGE_TITLES.get(kind, ""))}">'
        f"{escape(kind)}</span>"
    )


def mnm(flag: bool) -> str:
    return '<span class="medrl-mnm" title="must not miss">must not miss</span>' if flag else ""


def table(header: list[str], rows: list[list], raw_cols: tuple[int, ...] = ()) -> str:
    """A table; columns in `raw_cols` hold HTML built here (badges), all others are escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header) if any(header) else ""
    body = "".join(
        "<tr>"
        + "".join(f"<td>{c if i in raw_cols else escape(str(c))}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f'<table class="medrl-table">{thead}<tbody>{body}</tbody></table>'


def answer_card(title: str, reasoning: str, answer: str, meta: str) -> str:
    parts = [f'<div class="medrl-card"><h3>{escape(title)}</h3>']
    if reasoning:
        parts.append(
            f'<div class="medrl-muted">Reasoning</div><div class="medrl-answer">{escape(reasoning)}</div>'
        )
    parts.append(
        f'<div class="medrl-muted">Answer</div><div class="medrl-answer">{escape(answer or "(empty)")}</div>'
    )
    parts.append(f'<div class="medrl-muted">{escape(meta)}</div></div>')
    return disclaimer() + "".join(parts)


def check_card(res: KGCheck, kg_label: str) -> str:
    """The claim-by-claim KG check, the diagnosis, and what it was judged against."""
    counts = res.counts()
    summary = " ".join(f"{badge(k)} {v}" for k, v in counts.items())
    ref = REFERENCE_LABEL[res.reference_source]
    ref_txt = f"Judged against {escape(ref)}" + (
        f": <b>{escape(res.reference_label)}</b>" if res.reference else ""
    )
    dx = escape(res.diagnosis_label) if res.diagnosis else "none found"
    rows = [
        [
            c.kind,
            c.text,
            c.label,
            c.polarity,
            badge(c.badge),
            c.reason,
            f'<span class="medrl-path">{escape(c.kg_path) or "—"}</span>',
        ]
        for c in res.claims
    ]
    body = (
        table(
            ["claim", "text", "KG node", "polarity", "verdict", "why", "KG path [source]"],
            rows,
            raw_cols=(4, 6),
        )
        if rows
        else '<div class="medrl-muted">No KG term found in the answer: nothing to check.</div>'
    )
    return (
        f'<div class="medrl-card medrl-kgcheck"><h3>KG check ({escape(kg_label)})</h3>'
        f'<div class="medrl-muted">{ref_txt}. Diagnosis read from the answer: {dx}.</div>'
        f"{check_flags(res)}<div>{summary}</div>{body}{footnote()}</div>"
    )


def check_flags(res: KGCheck) -> str:
    """The check's flags (a diagnosis the case does not support, invented findings, must-do steps omitted, harmful
    steps given, not checkable), each with what raised it; nothing when none was raised."""
    from .kgcheck import FLAG_TITLES

    if not res.flags:
        return ""
    items = "".join(
        f'<li class="medrl-flag medrl-kgflag-{escape(k)}"><b>{escape(FLAG_TITLES.get(k, k))}</b>: '
        f"{escape('; '.join(v))}</li>"
        for k, v in res.flags.items()
    )
    return f'<ul class="medrl-flags medrl-kgflags" role="alert">{items}</ul>'


def differential_card(res: KGCheck) -> str:
    parts = ['<div class="medrl-card"><h3>Differential from the KG</h3>']
    if res.differential:
        items = "".join(f"<li>{escape(d['label'])}{mnm(d['must_not_miss'])}</li>" for d in res.differential)
        focus = res.diagnosis_label or res.reference_label
        parts.append(
            f'<div class="medrl-muted">Conditions the KG says to tell apart from {escape(focus)}:</div>'
            f"<ul>{items}</ul>"
        )
    if res.best_fit:
        rows = [
            [d["label"] + ("" if not d["must_not_miss"] else " (must not miss)"), f"{d['score']:.2f}"]
            for d in res.best_fit
        ]
        whose = {
            "case": "the findings the case states",
            "sample": "the sample's true findings",
            "answer": "the findings the answer states (its own: unconfirmed)",
        }.get(res.best_fit_source, "the stated findings")
        parts.append(
            f'<div class="medrl-muted">Conditions {escape(whose)} fit best (KG ranking by '
            "typicality):</div>" + table(["condition", "fit"], rows)
        )
    if not res.differential and not res.best_fit:
        parts.append(
            '<div class="medrl-muted">No diagnosis or KG finding in the answer to build a differential '
            "from.</div>"
        )
    return "".join(parts) + footnote() + "</div>"


TURN_LABELS = {"case": "Case", "model": "Model", "clinician": "You"}


def transcript(turns: list[dict]) -> str:
    """A multi-step case's turns, who said what, in order."""
    rows = "".join(
        f'<div class="medrl-turn medrl-turn-{escape(t["who"])}"><b>{escape(TURN_LABELS.get(t["who"], t["who"]))}'
        f":</b> {escape(t['text'])}</div>"
        for t in turns
    )
    return f'<div class="medrl-card medrl-transcript">{rows}</div>'
