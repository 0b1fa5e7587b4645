"""The rollout inspector (Training runs tab): what an RL step sampled, group by group, beside what scored it.

Reads RUN/rollouts/step-N.jsonl (`training.trainers.rollout_records`). Each group is one prompt's G completions side
by side, one column each, so a reader compares them as the advantage did: the completion, every reward part (raw,
and its weighted share), the total and the advantage (green above zero, red below), and, for runs whose rewards read
a knowledge graph, each completion's claims as the KG judges them (supported / contradicted / unverifiable / hedged).
A reward part can be chosen to keep only the groups where that part differs between completions, i.e. where it is
what told them apart.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

ALL_PARTS = ""  # the filter's "every group"


def parts_of(rows: list[dict]) -> list[str]:
    """The reward parts the rows carry, in first-seen order."""
    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r.get("rewards") or {}))
    return list(names)


def groups_of(rows: list[dict], part: str = ALL_PARTS) -> list[list[dict]]:
    """Rows grouped by their group id, in order; with ``part``, only the groups where that part's raw values differ."""
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(int(r.get("group", 0)), []).append(r)
    out = list(groups.values())
    if part:
        out = [g for g in out if len({(r.get("rewards") or {}).get(part) for r in g}) > 1]
    return out


def _num(x) -> str:
    return "" if x is None else f"{x:.3f}"


def _advantage(x) -> str:
    if x is None:
        return ""
    kind = "pos" if x > 0 else "neg" if x < 0 else "zero"
    return f'<span class="medrl-adv-{kind}">{x:+.3f}</span>'


def group_html(rows: list[dict], claims: Callable[[dict], str] | None = None) -> str:
    """One group: its prompt and gold answer, then a table with one column per completion (``claims``: a
    completion's KG check as HTML, one more row)."""
    first = rows[0]
    parts = parts_of(rows)
    head = (
        f'<div class="medrl-muted">group {escape(str(first.get("group")))} · gold: '
        f"<b>{escape(str(first.get('answer')))}</b></div>"
        f'<div class="medrl-rollout-prompt">{escape(str(first.get("prompt", ""))[:600])}</div>'
    )
    cols = "".join(f"<th>completion {i + 1}</th>" for i in range(len(rows)))
    body = [
        "<tr><td>text</td>"
        + "".join(f'<td class="medrl-rollout-text">{escape(str(r.get("completion", "")))}</td>' for r in rows)
        + "</tr>"
    ]
    for p in parts:
        cells = "".join(
            f"<td>{_num((r.get('rewards') or {}).get(p))} "
            f'<span class="medrl-muted">({_num((r.get("weighted") or {}).get(p))})</span></td>'
            for r in rows
        )
        body.append(f"<tr><td>{escape(p)} (weighted)</td>{cells}</tr>")
    if claims is not None:
        body.append("<tr><td>KG claims</td>" + "".join(f"<td>{claims(r)}</td>" for r in rows) + "</tr>")
    body.append(
        "<tr><td><b>reward</b></td>"
        + "".join(f"<td><b>{_num(r.get('reward'))}</b></td>" for r in rows)
        + "</tr>"
    )
    body.append(
        "<tr><td><b>advantage</b></td>"
        + "".join(f"<td>{_advantage(r.get('advantage'))}</td>" for r in rows)
        + "</tr>"
    )
    table = (
        f'<table class="medrl-table medrl-rollouts"><thead><tr><th></th>{cols}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    return f'<div class="medrl-card">{head}{table}</div>'


def rollouts_html(
    rows: list[dict], part: str = ALL_PARTS, claims: Callable[[dict], str] | None = None
) -> str:
    """Every group of one step (or those ``part`` told apart), or a line saying there is none."""
    groups = groups_of(rows, part)
    if not groups:
        what = f"whose {part} differs between completions" if part else ""
        return f'<div class="medrl-card"><span class="medrl-muted">No group {escape(what)} at this step.</span></div>'
    step = rows[0].get("step")
    lead = f'<div class="medrl-muted">step {escape(str(step))}: {len(groups)} group(s)</div>'
    return lead + "".join(group_html(g, claims) for g in groups)
