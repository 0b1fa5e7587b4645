"""Knowledge graph tab: look up a condition or finding (features by type and typicality, differential, treatments,
procedures, sources) with a drawn neighbourhood; and check any statement's claims against the KG. Needs no run.

A term that only the other graph knows (melanoma in the clinical KG, STEMI in the dermatology KG) is named as such,
and a refused lookup or check replaces the previous card with its one-line reason, so no stale card is left."""

from __future__ import annotations

import difflib
from collections import defaultdict

import gradio as gr

from knowledge_graph.kg import KnowledgeGraph

from . import html
from .context import AppContext, user_errors
from .draw import neighbourhood
from .kgcheck import check
from .safety import Refused, limit_text

TYPICALITY_ORDER = ("typical", "possible", "atypical")


KG_NAMES = ("derm", "clinical")


def other_kg(ctx: AppContext, kg_name: str) -> KnowledgeGraph | None:
    """The graph not chosen: a term missing from one KG is often in the other (melanoma, STEMI)."""
    if kg_name not in KG_NAMES:
        return None
    return ctx.kg(next(n for n in KG_NAMES if n != kg_name))


def not_found(kg: KnowledgeGraph, term: str, other: KnowledgeGraph | None = None) -> str:
    """Why a term resolves to nothing here: it lives in the other graph (say which), else the closest labels."""
    if not term:
        return "write a condition or finding to look up"
    if other is not None and other.canonical(term) is not None:
        return f"{term!r} is in the {other.name} KG, not the {kg.name} KG: choose that knowledge graph above"
    labels = {kg.label(n): n for n in kg.nodes() if kg.type(n) != "dataset_label"}
    close = difflib.get_close_matches(term, list(labels), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"{term!r} is not in the {kg.name} KG{hint}"


def resolve(kg: KnowledgeGraph, term: str, other: KnowledgeGraph | None = None) -> str:
    term = limit_text(term, "the term", 200)
    nid = kg.canonical(term) if term else None
    if nid is None:
        raise Refused(not_found(kg, term, other))
    return nid


def refused_card(message: str) -> str:
    """A refused lookup or check in place of the card: the one-line reason, and no earlier card left standing
    beside it (an error toast alone would leave the previous term's card on the page)."""
    return html.notice(message, "hedged")


def _finding_chip(f) -> str:
    """A finding's label with its source on hover; † when its absence argues against the condition."""
    mark = (
        f' <span class="medrl-sens" title="absence argues against it ({html.escape(f.sensitivity)})">†</span>'
        if f.sensitivity
        else ""
    )
    return f'<span title="{html.escape(f.source)}">{html.escape(f.label)}</span>{mark}'


def _condition_html(kg: KnowledgeGraph, cid: str, sources: set[str]) -> str:
    parts = []
    by_type: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for f in kg.features(cid):
        by_type[f.type][f.typicality].append(f)
        sources.add(f.source)
    rows = [
        [
            t.replace("_", " "),
            *(
                ", ".join(_finding_chip(f) for f in sorted(by_type[t][ty], key=lambda f: f.label)) or "—"
                for ty in TYPICALITY_ORDER
            ),
        ]
        for t in sorted(by_type)
    ]
    parts.append(
        "<h4>Features by type and typicality</h4>"
        + (
            html.table(["type", *TYPICALITY_ORDER], rows, raw_cols=(1, 2, 3))
            if rows
            else "<i>none listed</i>"
        )
        + '<div class="medrl-muted">† its absence argues against the condition · hover a finding for its '
        "source</div>"
    )
    absent = kg.absent_features(cid)
    if absent:
        sources.update(f.source for f in absent)
        parts.append(
            "<h4>Findings that argue against it</h4>"
            + html.table(["finding", "source"], [[f.label, f.source] for f in absent])
        )
    ddx = kg.differential(cid)
    if ddx:
        items = "".join(f"<li>{html.escape(kg.label(c))}{html.mnm(kg.must_not_miss(c))}</li>" for c in ddx)
        parts.append(f"<h4>Differential</h4><ul>{items}</ul>")
    tx = [
        [
            kg.label(t),
            kg.treatment_line(cid, t) or "",
            kg.graph.edges[cid, t, "treated_by"].get("note", ""),
            kg.graph.edges[cid, t, "treated_by"]["source"],
        ]
        for t in kg.treatments(cid)
    ]
    if tx:
        sources.update(r[3] for r in tx)
        parts.append("<h4>Treatments</h4>" + html.table(["treatment", "line", "note", "source"], tx))
    px = [
        [
            kg.label(p),
            kg.graph.edges[cid, p, "has_procedure"].get("purpose", ""),
            kg.graph.edges[cid, p, "has_procedure"]["source"],
        ]
        for p in kg.procedures(cid)
    ]
    if px:
        sources.update(r[2] for r in px)
        parts.append("<h4>Procedures</h4>" + html.table(["procedure", "purpose", "source"], px))
    contra = kg.contraindicated(cid)
    if contra:
        parts.append(
            "<h4>Contraindicated</h4><ul>"
            + "".join(f"<li>{html.escape(kg.label(t))}</li>" for t in contra)
            + "</ul>"
        )
    return "".join(parts)


def _finding_html(kg: KnowledgeGraph, nid: str, sources: set[str]) -> str:
    rows = []
    for h, _, r, a in kg.graph.in_edges(nid, keys=True, data=True):
        if r in ("has_feature", "typical_site", "absent_feature"):
            typ = "argues against" if r == "absent_feature" else a.get("typicality", "typical")
            rows.append([kg.label(h), typ, a.get("sensitivity") or "", a["source"]])
            sources.add(a["source"])
    rows.sort(key=lambda r: (r[1] != "typical", r[1], r[0]))
    out = "<h4>Conditions with this finding</h4>" + (
        html.table(["condition", "typicality", "absence argues against", "source"], rows)
        if rows
        else "<i>none</i>"
    )
    ex = kg.excluded_by(nid)
    if ex:
        out += (
            "<h4>Cannot coexist with</h4><ul>"
            + "".join(f"<li>{html.escape(kg.label(e))}</li>" for e in sorted(ex))
            + "</ul>"
        )
    return out


def lookup(ctx: AppContext, kg_name: str, term: str) -> tuple[str, str]:
    """(the node's card, its drawn neighbourhood as SVG)."""
    kg = ctx.kg(kg_name)
    nid = resolve(kg, term, other_kg(ctx, kg_name))
    node = kg.node(nid)
    sources: set[str] = set()
    aliases = ", ".join(node.get("aliases", []) or [])
    head = (
        f'<div class="medrl-card medrl-kg-card"><h3>{html.escape(kg.label(nid))}{html.mnm(bool(node.get("must_not_miss")))}</h3>'
        f'<div class="medrl-muted">{html.escape(nid)} · {html.escape(kg.type(nid).replace("_", " "))}'
        + (" · group of subtypes" if node.get("group") else "")
        + (f" · also called: {html.escape(aliases)}" if aliases else "")
        + "</div>"
    )
    cats = kg.categories(nid)
    if cats:
        head += f'<div class="medrl-muted">is a: {html.escape(", ".join(kg.label(c) for c in cats))}</div>'
    body = (
        _condition_html(kg, nid, sources) if kg.type(nid) == "condition" else _finding_html(kg, nid, sources)
    )
    src = "".join(f"<li>{html.escape(s)}</li>" for s in sorted(sources))
    foot = f"<h4>Sources</h4><ul class='medrl-muted'>{src}</ul>" if src else ""
    return html.disclaimer() + head + body + foot + "</div>", neighbourhood(kg, nid)


def check_statement(ctx: AppContext, kg_name: str, text: str, condition: str | None) -> tuple[str, str, dict]:
    kg = ctx.kg(kg_name)
    text = limit_text(text, "the statement")
    if not text:
        raise Refused("write a statement to check")
    ref = resolve(kg, condition, other_kg(ctx, kg_name)) if condition else None
    if ref is not None and kg.type(ref) != "condition":
        raise Refused(f"{condition!r} is a {kg.type(ref)}, not a condition")
    res = check(text, kg, ref, "given" if ref else None)
    return (
        html.disclaimer() + html.check_card(res, f"{kg_name} KG"),
        html.differential_card(res),
        res.to_dict(),
    )


def build(ctx: AppContext) -> dict:
    with gr.Row():
        kg_name = gr.Radio(list(KG_NAMES), value="derm", label="Knowledge graph", scale=1, elem_id="kg-name")
        term = gr.Textbox(
            label="Condition or finding (name, alias or dataset code)",
            value="melanoma",
            scale=3,
            elem_id="kg-term",
        )
        go = gr.Button("Look up", variant="primary", scale=1, elem_id="kg-lookup")
    with gr.Row():
        with gr.Column(scale=1):
            card = gr.HTML(elem_id="kg-card")
        with gr.Column(scale=1):
            graph = gr.HTML(elem_id="kg-graph")
    with gr.Accordion("Check a statement against the KG", open=False):
        with gr.Row():
            text = gr.Textbox(
                label="Statement",
                lines=3,
                scale=3,
                value="Asymmetric lesion with irregular border and blue-white veil; melanoma cannot be "
                "ruled out, excision advised.",
            )
            cond = gr.Textbox(label="Reference condition (optional)", value="melanoma", scale=1)
        check_btn = gr.Button("Check")
        check_html, ddx_html = gr.HTML(elem_id="kg-check"), gr.HTML(elem_id="kg-check-ddx")
        check_json = gr.JSON(visible=False)

    @user_errors
    def on_lookup(kg_name: str, term: str):
        try:
            return lookup(ctx, kg_name, term)
        except Refused as e:
            return refused_card(str(e)), ""

    @user_errors
    def on_check(kg_name: str, text: str, condition: str | None):
        try:
            return check_statement(ctx, kg_name, text, condition)
        except Refused as e:
            return refused_card(str(e)), "", {"refused": str(e)}

    go.click(on_lookup, [kg_name, term], [card, graph], api_name="kg_lookup")
    term.submit(on_lookup, [kg_name, term], [card, graph], api_name=False)
    check_btn.click(on_check, [kg_name, text, cond], [check_html, ddx_html, check_json], api_name="kg_check")
    return {"lookup": (on_lookup, [kg_name, term], [card, graph])}
