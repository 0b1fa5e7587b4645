"""Small SVG drawings: a KG node's neighbourhood and a Tree-GRPO tree. SVG (not a PNG) keeps them crisp, gives
hover text for free (`<title>`) and needs no plotting library. Every label is escaped."""

from __future__ import annotations

import math
from html import escape

from knowledge_graph.kg import KnowledgeGraph

TYPE_COLOURS = {
    "condition": "#1d4ed8",
    "treatment": "#047857",
    "procedure": "#0f766e",
    "symptom": "#ea580c",
    "sign": "#ea580c",
    "lab_finding": "#7c3aed",
    "imaging_finding": "#7c3aed",
    "risk_factor": "#be185d",
}
FINDING_COLOUR = "#a16207"
EDGE_STYLE = {
    "typical": ("#374151", ""),
    "possible": ("#6b7280", "6,3"),
    "atypical": ("#9ca3af", "2,3"),
    "absent": ("#dc2626", "4,2"),
}
# At most this many links of each relation are drawn (typical findings first), so a condition with 50 features
# still shows its differential and treatments.
PER_RELATION = {
    "has_feature": 10,
    "typical_site": 3,
    "absent_feature": 3,
    "differential_of": 8,
    "is_a": 3,
    "treated_by": 4,
    "has_procedure": 4,
    "contraindicates": 3,
}
HALO = 'stroke="#ffffff" stroke-width="3" paint-order="stroke"'  # labels stay readable over edges
TYPICALITY_RANK = {"typical": 0, "possible": 1, "atypical": 2}
_SKIP = {"alias_of"}


def _short(text: str, n: int = 22) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def neighbourhood(kg: KnowledgeGraph, node: str, width: int = 720, height: int = 600) -> str:
    """The node in the middle, its linked nodes around it grouped by relation; dashed edges are less typical."""
    g = kg.graph
    links: list[tuple[str, str, dict, bool]] = []  # (other, relation, attrs, outgoing)
    for _, t, r, a in g.out_edges(node, keys=True, data=True):
        if r not in _SKIP:
            links.append((t, r, a, True))
    for h, _, r, a in g.in_edges(node, keys=True, data=True):
        if r not in _SKIP and g.nodes[h].get("type") != "dataset_label":
            links.append((h, r, a, False))
    order = {
        "has_feature": 0,
        "typical_site": 1,
        "absent_feature": 2,
        "differential_of": 3,
        "is_a": 4,
        "treated_by": 5,
        "has_procedure": 6,
        "contraindicates": 7,
    }
    links.sort(
        key=lambda x: (order.get(x[1], 9), TYPICALITY_RANK.get(x[2].get("typicality", "typical"), 3), x[0])
    )
    kept: list[tuple[str, str, dict, bool]] = []
    per: dict[str, int] = {}
    for link in links:
        per[link[1]] = per.get(link[1], 0) + 1
        if per[link[1]] <= PER_RELATION.get(link[1], 4):
            kept.append(link)
    hidden, links = len(links) - len(kept), kept
    cx, cy, r = width / 2, height / 2, min(width, height) / 2 - 110
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="KG neighbourhood of {escape(kg.label(node))}" class="medrl-kg-svg" '
        'style="background:#ffffff;border:1px solid #e5e7eb;border-radius:6px;font-family:sans-serif">'
    ]
    pos = []
    for i, (other, rel, attrs, out) in enumerate(links):
        ang = 2 * math.pi * i / max(1, len(links)) - math.pi / 2
        x, y = cx + r * math.cos(ang), cy + r * math.sin(ang)
        pos.append((x, y))
        typ = "absent" if rel == "absent_feature" else attrs.get("typicality", "typical")
        colour, dash = EDGE_STYLE.get(typ, EDGE_STYLE["typical"])
        if rel == "contraindicates":
            colour, dash = "#dc2626", "4,2"
        label = (
            f"{kg.label(node)} {rel} {kg.label(other)}"
            if out
            else f"{kg.label(other)} {rel} {kg.label(node)}"
        )
        extra = ", ".join(
            f"{k}: {attrs[k]}" for k in ("typicality", "sensitivity", "line", "purpose") if attrs.get(k)
        )
        title = f"{label}{' (' + extra + ')' if extra else ''} [{attrs.get('source', '')}]"
        parts.append(
            f'<line x1="{cx:.0f}" y1="{cy:.0f}" x2="{x:.0f}" y2="{y:.0f}" stroke="{colour}" '
            f'stroke-width="1.6" stroke-dasharray="{dash}"><title>{escape(title)}</title></line>'
        )
    for (other, rel, _attrs, _out), (x, y) in zip(links, pos):
        typ = g.nodes[other].get("type", "")
        colour = TYPE_COLOURS.get(typ, FINDING_COLOUR)
        anchor = "start" if x > cx + 5 else "end" if x < cx - 5 else "middle"
        dx = 9 if anchor == "start" else -9 if anchor == "end" else 0
        dy = 4 if anchor != "middle" else (16 if y > cy else -10)
        name = kg.label(other)
        parts.append(
            f"<g><title>{escape(name)} ({escape(typ)}; {escape(rel)})</title>"
            f'<circle cx="{x:.0f}" cy="{y:.0f}" r="6" fill="{colour}"/>'
            f'<text x="{x + dx:.0f}" y="{y + dy:.0f}" font-size="11" text-anchor="{anchor}" fill="#111827" {HALO}>'
            f"{escape(_short(name))}</text></g>"
        )
    centre = kg.label(node)
    parts.append(
        f"<g><title>{escape(centre)} ({escape(kg.type(node))})</title>"
        f'<circle cx="{cx:.0f}" cy="{cy:.0f}" r="11" fill="{TYPE_COLOURS.get(kg.type(node), FINDING_COLOUR)}"/>'
        f'<text x="{cx:.0f}" y="{cy + 28:.0f}" font-size="13" font-weight="bold" text-anchor="middle" '
        f'fill="#111827" {HALO}>{escape(_short(centre, 32))}</text></g>'
    )
    for i, (name, colour) in enumerate(
        (
            ("condition", TYPE_COLOURS["condition"]),
            ("finding", FINDING_COLOUR),
            ("symptom / sign", TYPE_COLOURS["symptom"]),
            ("lab / imaging", TYPE_COLOURS["lab_finding"]),
            ("treatment", TYPE_COLOURS["treatment"]),
            ("procedure", TYPE_COLOURS["procedure"]),
            ("risk factor", TYPE_COLOURS["risk_factor"]),
        )
    ):
        parts.append(
            f'<circle cx="14" cy="{14 + 15 * i}" r="5" fill="{colour}"/>'
            f'<text x="24" y="{18 + 15 * i}" font-size="10" fill="#374151">{name}</text>'
        )
    legend = "solid: typical · dashed: possible · dotted: atypical · red: argues against / contraindicated"
    if hidden:
        legend += f" · {hidden} more links not drawn"
    parts.append(f'<text x="8" y="{height - 8}" font-size="10" fill="#4b5563">{escape(legend)}</text></svg>')
    return "".join(parts)


# ---- trees -------------------------------------------------------------------------------------------------------
def tree_nodes(data: dict | list) -> list[dict]:
    """Flatten a tree file to [{id, parent, text, reward, advantage}]: accepts {"nodes": [{id, parent, ...}]}, a
    list of such nodes, or nested {"text", "children": [...]} (the Tree-GRPO issue fixes the file format)."""
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        data = data["nodes"]
    if isinstance(data, list):
        out = []
        for i, n in enumerate(data):
            if isinstance(n, dict):
                out.append(
                    {
                        "id": str(n.get("id", i)),
                        "parent": None if n.get("parent") is None else str(n["parent"]),
                        "text": str(n.get("text", n.get("content", ""))),
                        "reward": n.get("reward"),
                        "advantage": n.get("advantage"),
                    }
                )
        return out
    out: list[dict] = []

    def walk(n: dict, parent: str | None) -> None:
        nid = str(n.get("id", len(out)))
        out.append(
            {
                "id": nid,
                "parent": parent,
                "text": str(n.get("text", n.get("content", ""))),
                "reward": n.get("reward"),
                "advantage": n.get("advantage"),
            }
        )
        for c in n.get("children", []) or []:
            if isinstance(c, dict):
                walk(c, nid)

    if isinstance(data, dict):
        walk(data, None)
    return out


def _colour(v: float | None, lo: float, hi: float) -> str:
    if not isinstance(v, (int, float)):
        return "#9ca3af"
    t = 0.5 if hi <= lo else (v - lo) / (hi - lo)
    red, green = (220, 38, 38), (22, 163, 74)
    return "#" + "".join(f"{int(a + (b - a) * t):02x}" for a, b in zip(red, green))


def tree_svg(nodes: list[dict], colour_by: str = "reward", width: int = 680) -> str:
    """Top-down tree, leaves spread evenly, nodes coloured red (low) to green (high) by reward or advantage."""
    kids: dict[str | None, list[str]] = {}
    by_id = {n["id"]: n for n in nodes}
    for n in nodes:
        kids.setdefault(n["parent"] if n["parent"] in by_id else None, []).append(n["id"])
    xs: dict[str, float] = {}
    depth: dict[str, int] = {}
    leaf = [0]

    def place(nid: str, d: int) -> float:
        depth[nid] = d
        ch = kids.get(nid, [])
        if not ch:
            xs[nid] = leaf[0]
            leaf[0] += 1
        else:
            xs[nid] = sum(place(c, d + 1) for c in ch) / len(ch)
        return xs[nid]

    for root in kids.get(None, []):
        place(root, 0)
    if not xs:
        return '<div class="medrl-muted">The tree file holds no nodes.</div>'
    vals = [n.get(colour_by) for n in nodes if isinstance(n.get(colour_by), (int, float))]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    step_x = (width - 40) / max(1, leaf[0] - 1) if leaf[0] > 1 else 0
    height = 60 + 70 * max(depth.values())
    X = {k: 20 + (v * step_x if step_x else (width - 40) / 2) for k, v in xs.items()}
    Y = {k: 30 + 70 * d for k, d in depth.items()}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" class="medrl-tree-svg" '
        'style="background:#ffffff;border:1px solid #e5e7eb;border-radius:6px;font-family:sans-serif">'
    ]
    for n in nodes:
        if n["parent"] in X and n["id"] in X:
            parts.append(
                f'<line x1="{X[n["parent"]]:.0f}" y1="{Y[n["parent"]]:.0f}" x2="{X[n["id"]]:.0f}" '
                f'y2="{Y[n["id"]]:.0f}" stroke="#9ca3af" stroke-width="1.4"/>'
            )
    for n in nodes:
        if n["id"] not in X:
            continue
        tip = f"{n['text']}\nreward: {n.get('reward')}  advantage: {n.get('advantage')}"
        parts.append(
            f'<g><title>{escape(tip)}</title><circle cx="{X[n["id"]]:.0f}" cy="{Y[n["id"]]:.0f}" r="9" '
            f'fill="{_colour(n.get(colour_by), lo, hi)}" stroke="#374151"/></g>'
        )
    parts.append(
        f'<text x="8" y="{height - 6}" font-size="10" fill="#4b5563">colour: {escape(colour_by)} from '
        f"{lo:.3g} (red) to {hi:.3g} (green); hover a node for its text</text></svg>"
    )
    return "".join(parts)
