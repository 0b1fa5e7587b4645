"""Row-by-row checks while a KG is built, so every error names the file row that caused it."""

from __future__ import annotations

import networkx as nx

from .errors import KGError
from .schema import EDGE_VOCAB, GRAPH_LISTS, NODE_TYPES, RELATIONS, TYPICALITY, Edge, Node, node_type_of


def _one_of(values) -> str:
    return ", ".join(values)


def add_node(g: nx.MultiDiGraph, node: Node, where: str, replace: bool = False) -> None:
    """Add a node after checking its type and id; ``replace`` lets a user's KG override ours."""
    if not node.id or not isinstance(node.id, str):
        raise KGError(f"{where}: node without an 'id' (expected a string like 'condition:melanoma')")
    if node.type not in NODE_TYPES:
        raise KGError(
            f"{where}: unknown node type {node.type!r} for {node.id!r} (expected one of {_one_of(NODE_TYPES)})"
        )
    prefix = node_type_of(node.id)
    if prefix and prefix in NODE_TYPES and prefix != node.type:
        raise KGError(f"{where}: node {node.id!r} has type {node.type!r} but its id prefix says {prefix!r}")
    if node.id in g and not replace:
        raise KGError(f"{where}: duplicate node id {node.id!r}")
    attrs = {"type": node.type, "label": node.label or node.id, "aliases": list(node.aliases), **node.extra}
    attrs["_where"] = where
    if node.id in g:
        g.nodes[node.id].update(attrs)
    else:
        g.add_node(node.id, **attrs)


def add_edge(g: nx.MultiDiGraph, edge: Edge, where: str, replace: bool = False) -> None:
    """Add an edge after checking relation, endpoints, endpoint types, typicality and alias uniqueness."""
    if edge.relation not in RELATIONS:
        raise KGError(f"{where}: unknown relation {edge.relation!r} (expected one of {_one_of(RELATIONS)})")
    for end, nid in (("head", edge.head), ("tail", edge.tail)):
        if nid not in g:
            raise KGError(f"{where}: dangling edge, {end} {nid!r} is not a node of the graph")
    heads, tails = RELATIONS[edge.relation]
    for end, nid, allowed in (("head", edge.head, heads), ("tail", edge.tail, tails)):
        ntype = g.nodes[nid]["type"]
        if allowed is not None and ntype not in allowed:
            raise KGError(
                f"{where}: {edge.relation} {end} {nid!r} has type {ntype!r} (expected one of {_one_of(allowed)})"
            )
    if edge.typicality is not None and edge.typicality not in TYPICALITY:
        raise KGError(
            f"{where}: unknown typicality {edge.typicality!r} (expected one of {_one_of(TYPICALITY)})"
        )
    for attr, (relations, allowed) in EDGE_VOCAB.items():
        value = edge.extra.get(attr)
        if value in (None, ""):
            continue
        if edge.relation not in relations:
            raise KGError(
                f"{where}: field {attr!r} does not apply to {edge.relation} (only to {_one_of(relations)})"
            )
        if value not in allowed:
            raise KGError(f"{where}: field {attr!r} is {value!r} (expected one of {_one_of(allowed)})")
    if not edge.source:
        raise KGError(f"{where}: edge {edge.head} -{edge.relation}-> {edge.tail} has no source")
    if edge.relation == "alias_of":
        for _, other, rel in g.out_edges(edge.head, keys=True):
            if rel == "alias_of" and other != edge.tail and not replace:
                raise KGError(
                    f"{where}: duplicate alias {g.nodes[edge.head]['label']!r} ({edge.head}) already maps to "
                    f"{other!r}, cannot also map to {edge.tail!r}"
                )
        if replace:
            stale = [t for _, t, r in g.out_edges(edge.head, keys=True) if r == "alias_of" and t != edge.tail]
            for t in stale:
                g.remove_edge(edge.head, t, key="alias_of")
    attrs = {"relation": edge.relation, "source": edge.source, **edge.extra, "_where": where}
    if edge.relation in ("has_feature", "absent_feature") or edge.typicality is not None:
        attrs["typicality"] = edge.typicality or "typical"
    if g.has_edge(edge.head, edge.tail, key=edge.relation):
        if not replace:
            raise KGError(f"{where}: duplicate edge {edge.head} -{edge.relation}-> {edge.tail}")
        g.edges[edge.head, edge.tail, edge.relation].clear()
        g.edges[edge.head, edge.tail, edge.relation].update(attrs)
    else:
        g.add_edge(edge.head, edge.tail, key=edge.relation, **attrs)


def check_graph_lists(graph_attrs: dict, where: str) -> None:
    """The graph-level name lists must be lists of strings (see schema.GRAPH_LISTS)."""
    for key in GRAPH_LISTS:
        value = graph_attrs.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise KGError(f"{where}: graph field {key!r} must be a list of non-empty strings")


def check_aliases(g: nx.MultiDiGraph) -> None:
    """Every label/alias/dataset code must name one node, or claim extraction becomes ambiguous."""
    from .lexicon import Lexicon

    Lexicon.from_graph(g, strict=True)
