"""`medrl kg audit`: a DPO pair file as a clinician reviews it before training.

For every pair: the condition, the axes that decided it, where each answer stands on every axis, and the sentences
of each answer that put it there (each claim the judge read, with its polarity and the KG's verdict). The pair file is
read as written: what the judge decided when the pairs were built, not a re-scoring. A run folder is searched for its
``dpo_pairs.jsonl``; its ``dpo_pairs.summary.json`` (how often the judge abstained, and why) is printed first.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from .errors import KGError
from .preference import AXES

# Which claims explain which axis.
_AXIS_KINDS = {
    "diagnosis": ("diagnosis", "differential"),
    "safety": ("diagnosis", "differential"),
    "management": ("treatment", "procedure"),
    "faithfulness": ("finding",),
}
_SENTENCE_END = re.compile(r"[.;!?\n]|</?answer>|</?think>")


def find_pairs(path: str | Path) -> Path:
    """The pair file itself, or the one DPO pair file inside a run folder."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        found = sorted(p.rglob("dpo_pairs.jsonl"))
        if len(found) == 1:
            return found[0]
        if found:
            raise KGError(
                f"{p}: several pair files ({', '.join(str(f.relative_to(p)) for f in found)}); name one"
            )
        raise KGError(
            f"{p}: no dpo_pairs.jsonl in this folder (a DermIQ run writes data/dpo_pairs.jsonl in its DPO stage)"
        )
    raise KGError(f"{p}: no such file or folder")


def read_pairs(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise KGError(f"{path.name} line {i}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not {"chosen", "rejected", "meta"} <= set(row):
            raise KGError(f"{path.name} line {i}: expected a DPO record with 'chosen', 'rejected' and 'meta'")
        rows.append(row)
    return rows


def _text(message) -> str:
    if isinstance(message, list):
        return "\n".join(str(m.get("content", "")) for m in message if isinstance(m, dict))
    return str(message)


def _sentence(text: str, start: int) -> str:
    """The sentence (or clause list) of ``text`` around character ``start``."""
    begin = max((m.end() for m in _SENTENCE_END.finditer(text, 0, start)), default=0)
    end = next((m.start() for m in _SENTENCE_END.finditer(text, start)), len(text))
    return " ".join(text[begin:end].split())


def explain(text: str, score: dict, axes: list[str] | None = None) -> list[dict]:
    """The judge's reading of one answer, grouped by sentence: [{sentence, claims: [...]}] for the given axes."""
    kinds = {k for a in (axes or AXES) for k in _AXIS_KINDS[a]}
    out: dict[str, list[str]] = {}
    for v in score.get("verdicts", []):
        if v["kind"] not in kinds and v["kind"] != "unread":
            continue
        line = (
            f"{v['kind']} {v['node_id']} ({v['polarity']}{', ' + ', '.join(v['context']) if v.get('context') else ''})"
            f": {v['verdict']} - {v['reason']}"
        )
        out.setdefault(_sentence(text, v.get("start", 0)), []).append(line)
    return [{"sentence": s, "claims": c} for s, c in out.items()]


def audit_rows(rows: list[dict]) -> list[dict]:
    """One review row per pair: condition, deciding axes, both answers with their axes and explained sentences."""
    out = []
    for i, row in enumerate(rows, 1):
        meta = row["meta"]
        decided = meta.get("decided_by") or []
        item = {
            "pair": i,
            "condition": meta.get("condition_id"),
            "decided_by": decided,
            "margin": meta.get("margin"),
        }
        for side in ("chosen", "rejected"):
            score = meta.get(f"{side}_score") or {}
            text = _text(row[side])
            item[side] = {
                "text": text,
                "axes": {a: (score.get("axes") or {}).get(a) for a in AXES},
                "total": score.get("total"),
                "explained": explain(text, score),
            }
        out.append(item)
    return out


def format_text(items: list[dict], summary: dict | None) -> str:
    lines = []
    if summary:
        lines.append(
            f"pairs {summary.get('pairs')} from {summary.get('comparisons')} comparisons; judge abstained on "
            f"{summary.get('abstained')} ({summary.get('abstention_rate', 0):.0%}); undecided "
            f"{summary.get('undecided')}"
        )
        for reason, n in (summary.get("reasons") or {}).items():
            lines.append(f"  abstained: {reason} x{n}")
        for axis, n in (summary.get("decided_by") or {}).items():
            lines.append(f"  decided by {axis}: {n}")
    for it in items:
        lines.append("")
        lines.append(
            f"pair {it['pair']}: {it['condition']}  decided by: {', '.join(it['decided_by']) or '(not recorded)'}"
        )
        for side in ("chosen", "rejected"):
            s = it[side]
            axes = "  ".join(f"{a}={s['axes'][a]}" for a in AXES)
            lines.append(f"  {side.upper():<8} {axes}  total={s['total']}")
            lines.append(f"    text: {' '.join(s['text'].split())[:300]}")
            for e in s["explained"]:
                lines.append(f'    "{e["sentence"]}"')
                lines.extend(f"      - {c}" for c in e["claims"])
    return "\n".join(lines)


def format_html(items: list[dict], summary: dict | None, title: str) -> str:
    esc = html.escape
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px;vertical-align:top}.chosen{background:#eef8ee}"
        ".rejected{background:#fbeeee}</style>",
        f"<h1>KG judge audit: {esc(title)}</h1>",
        "<p>Research use only: the KG judge is a proxy for expert preference, not a clinician.</p>",
    ]
    if summary:
        parts.append(
            f"<p>{summary.get('pairs')} pairs from {summary.get('comparisons')} comparisons; the judge abstained on "
            f"{summary.get('abstained')} ({summary.get('abstention_rate', 0):.0%}).</p>"
        )
    for it in items:
        parts.append(
            f"<h2>Pair {it['pair']}: {esc(str(it['condition']))}</h2><p>Decided by: "
            f"<b>{esc(', '.join(it['decided_by']) or '(not recorded)')}</b></p><table><tr><th></th>"
            + "".join(f"<th>{a}</th>" for a in AXES)
            + "<th>answer and the sentences that decided it</th></tr>"
        )
        for side in ("chosen", "rejected"):
            s = it[side]
            sentences = "".join(
                f"<p>&ldquo;{esc(e['sentence'])}&rdquo;<ul>"
                + "".join(f"<li>{esc(c)}</li>" for c in e["claims"])
                + "</ul></p>"
                for e in s["explained"]
            )
            parts.append(
                f"<tr class='{side}'><th>{side}</th>"
                + "".join(f"<td>{esc(str(s['axes'][a]))}</td>" for a in AXES)
                + f"<td><pre style='white-space:pre-wrap'>{esc(s['text'])}</pre>{sentences}</td></tr>"
            )
        parts.append("</table>")
    return "\n".join(parts)


def audit(path: str | Path, html_out: str | Path | None = None) -> str:
    """The audit as text (and, with ``html_out``, the same as a page)."""
    pairs_path = find_pairs(path)
    items = audit_rows(read_pairs(pairs_path))
    summary_path = pairs_path.with_name(pairs_path.stem + ".summary.json")
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    if html_out is not None:
        out = Path(html_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(format_html(items, summary, str(pairs_path)), encoding="utf-8")
        tmp.replace(out)
    return f"{pairs_path}: {len(items)} pairs\n" + format_text(items, summary)
