"""Load and save KGs as node-link JSON, GraphML or CSV triples; validate while loading.

JSON (node-link): ``{"directed": true, "multigraph": true, "graph": {...}, "nodes": [{"id", "type", "label",
"aliases", ...}], "links": [{"head", "relation", "tail", "source", "typicality"?, ...}]}``. Links name their
endpoints ``head``/``tail`` because ``source`` is the citation; ``networkx.node_link_graph(data, source="head",
target="tail", edges="links")`` reads the same file.
CSV: ``head,relation,tail[,source[,typicality[,sensitivity]]]`` with an optional header row. A cell is a typed id
(``colour:red``: type from the prefix, label from the id) or plain words (``melanoma,has_feature,irregular border,Bolognia``):
a name the file already used, else a name of the KG lexicon (labels, aliases, dataset codes) whose node type fits the
relation's schema, else a new node when the relation allows one type only (``treated_by`` tail: a treatment). A plain
name that fits none of these is refused with its row. GraphML: node/edge attributes as written by networkx; lists as JSON
strings.
The JSON ``graph`` object may carry ``unlisted_conditions`` / ``unlisted_terms`` (schema.GRAPH_LISTS).
A user's KG in any of these formats can replace ours (``load``) or extend it (``merge``).
"""

from __future__ import annotations

import csv
import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import networkx as nx

from .errors import KGError
from .kg import KnowledgeGraph
from .lexicon import normalize
from .schema import GRAPH_LISTS, RELATIONS, STRUCTURED_NODE_ATTRS, Edge, Node, label_from_id, node_type_of
from .validate import add_edge, add_node, check_aliases, check_graph_lists

BUILTIN = {"derm": "dermatology.json", "dermatology": "dermatology.json", "clinical": "clinical.json"}
_NODE_KEYS = ("id", "type", "label", "aliases")
_EDGE_KEYS = ("head", "relation", "tail", "source", "typicality", "key")


def load_builtin(name: str) -> KnowledgeGraph:
    """One of our curated graphs: 'derm' (dermatology) or 'clinical'."""
    if name not in BUILTIN:
        raise KGError(f"unknown built-in KG {name!r} (expected one of {', '.join(BUILTIN)})")
    ref = resources.files("knowledge_graph") / "data" / BUILTIN[name]
    with resources.as_file(ref) as path:
        return load(path)


def load(path: str | Path, names: KnowledgeGraph | list[KnowledgeGraph] | None = None) -> KnowledgeGraph:
    """Load and validate a KG; the format comes from the suffix (.json, .graphml/.xml, .csv).

    ``names``: the KG(s) whose lexicon resolves plain-word CSV cells (default: our built-in graphs, derm first), so
    ``melanoma`` in a user's CSV is our ``condition:melanoma`` and the file extends ours cleanly with ``merge``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    suffix = path.suffix.lower()
    graph_attrs: dict = {}
    if suffix == ".json":
        graph_attrs, nodes, edges = _read_json(path)
    elif suffix in (".graphml", ".xml"):
        graph_attrs, nodes, edges = _read_graphml(path)
    elif suffix in (".csv", ".tsv"):
        nodes, edges = _read_csv(path, names)
    else:
        raise KGError(f"{path.name}: unknown KG format {suffix!r} (expected .json, .graphml or .csv)")
    check_graph_lists(graph_attrs, path.name)
    g = nx.MultiDiGraph(**{k: v for k, v in graph_attrs.items() if k != "name"}, name=path.stem)
    for where, node in nodes:
        add_node(g, node, where)
    for where, edge in edges:
        add_edge(g, edge, where)
    check_aliases(g)
    return KnowledgeGraph(g, name=path.stem)


def merge(base: KnowledgeGraph, user: KnowledgeGraph) -> KnowledgeGraph:
    """Our KG extended by a user's: user nodes/edges add to or replace ours with the same id/relation."""
    g = base.graph.copy()
    for key in GRAPH_LISTS:  # the user's unlisted names add to ours
        g.graph[key] = list(dict.fromkeys([*base.graph.graph.get(key, []), *user.graph.graph.get(key, [])]))
    for nid, attrs in user.graph.nodes(data=True):
        if attrs.get("_derived") and nid in g:
            continue  # a CSV node only names an id: keep our label and synonyms
        extra = _extra(attrs, _NODE_KEYS)
        if attrs.get("_derived"):
            extra["_derived"] = True
        node = Node(nid, attrs["type"], attrs["label"], list(attrs.get("aliases", [])), extra)
        add_node(g, node, attrs.get("_where", nid), replace=True)
    for h, t, rel, attrs in user.graph.edges(keys=True, data=True):
        edge = Edge(h, rel, t, attrs["source"], attrs.get("typicality"), _extra(attrs, _EDGE_KEYS))
        add_edge(g, edge, attrs.get("_where", f"{h} {rel} {t}"), replace=True)
    check_aliases(g)
    return KnowledgeGraph(g, name=f"{base.name}+{user.name}")


def save(kg: KnowledgeGraph, path: str | Path) -> Path:
    """Write a KG; the format comes from the suffix (.json, .graphml, .csv)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(to_json_text(kg), encoding="utf-8")
    elif suffix in (".graphml", ".xml"):
        nx.write_graphml(_graphml_ready(kg.graph), path)
    elif suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t" if suffix == ".tsv" else ",")
            w.writerow(["head", "relation", "tail", "source", "typicality", "sensitivity"])
            for h, t, rel, a in kg.graph.edges(keys=True, data=True):
                w.writerow(
                    [h, rel, t, a.get("source", ""), a.get("typicality", ""), a.get("sensitivity", "")]
                )
    else:
        raise KGError(f"{path.name}: unknown KG format {suffix!r} (expected .json, .graphml or .csv)")
    return path


def to_json_text(kg: KnowledgeGraph) -> str:
    """Node-link JSON with one node or link per line: diffable and hand-editable."""
    graph = {k: v for k, v in kg.graph.graph.items() if k != "name"}
    nodes = [{"id": n, **_public(a)} for n, a in kg.graph.nodes(data=True)]
    links = [
        {"head": h, "relation": rel, "tail": t, **{k: v for k, v in _public(a).items() if k != "relation"}}
        for h, t, rel, a in kg.graph.edges(keys=True, data=True)
    ]
    for n in nodes:
        if not n.get("aliases"):
            n.pop("aliases", None)

    def rows(items: list[dict]) -> str:
        return ",\n".join("    " + json.dumps(i, ensure_ascii=False) for i in items)

    head = json.dumps({"directed": True, "multigraph": True, "graph": graph}, ensure_ascii=False)[:-1]
    return f'{head},\n  "nodes": [\n{rows(nodes)}\n  ],\n  "links": [\n{rows(links)}\n  ]\n}}\n'


def _public(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if not k.startswith("_")}


def _extra(attrs: dict, known: tuple[str, ...]) -> dict:
    return {k: v for k, v in attrs.items() if k not in known and k != "relation" and not k.startswith("_")}


def _read_json(path: Path) -> tuple[dict, list, list]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise KGError(f"{path.name} line {e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise KGError(f"{path.name}: expected a node-link object with 'nodes' and 'links' lists")
    links = data.get("links", data.get("edges", []))
    graph_attrs = data.get("graph", {})
    if not isinstance(graph_attrs, dict):
        raise KGError(f"{path.name}: field 'graph' must be an object")
    nodes = []
    for i, n in enumerate(data["nodes"]):
        where = f"{path.name} nodes[{i}]"
        if not isinstance(n, dict) or "id" not in n:
            raise KGError(f"{where}: expected an object with 'id' and 'type'")
        nid = str(n["id"])
        ntype = n.get("type") or node_type_of(nid)
        for key in ("aliases", "codes", "absent_terms", "patterns"):
            value = n.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise KGError(f"{where}: field {key!r} of {nid!r} must be a list of strings")
        for pattern in n.get("patterns", []):
            try:
                re.compile(pattern)
            except re.error as e:
                raise KGError(
                    f"{where}: pattern {pattern!r} of {nid!r} is not a regular expression ({e})"
                ) from None
        aliases = n.get("aliases", [])
        nodes.append(
            (where, Node(nid, ntype, n.get("label") or label_from_id(nid), aliases, _extra(n, _NODE_KEYS)))
        )
    edges = []
    for i, e in enumerate(links):
        where = f"{path.name} links[{i}]"
        head, tail = e.get("head", e.get("source")), e.get("tail", e.get("target"))
        if "head" not in e:  # standard networkx endpoints: the citation then lives in 'ref'
            e = {**e, "source": e.get("ref", path.name)}
        if head is None or tail is None or "relation" not in e:
            raise KGError(f"{where}: expected fields 'head', 'relation' and 'tail'")
        extra = _extra(e, _EDGE_KEYS + ("target", "ref"))
        edges.append(
            (
                where,
                Edge(
                    str(head),
                    e["relation"],
                    str(tail),
                    e.get("source") or path.name,
                    e.get("typicality"),
                    extra,
                ),
            )
        )
    return graph_attrs, nodes, edges


_TYPED_ID = re.compile(
    r"^[a-z_]+:\S"
)  # 'colour:red', 'dataset_label:ham10000/mel': a typed id, not plain words


@lru_cache(maxsize=1)
def _builtin_names() -> tuple[KnowledgeGraph, ...]:
    """Our graphs, loaded once, only when a CSV uses plain names."""
    return tuple(load_builtin(n) for n in ("derm", "clinical"))


class _CsvNames:
    """Plain-word CSV cells -> node ids: the file's own names first, then the KG lexicons, then a new node if the
    relation's schema leaves one type. Typed ids pass through unchanged (add_node checks their type)."""

    def __init__(self, names: KnowledgeGraph | list[KnowledgeGraph] | None):
        self._given = [names] if isinstance(names, KnowledgeGraph) else names
        self.local: dict[
            str, str
        ] = {}  # normalized name -> id, for names this file already resolved or created
        self.types: dict[str, str] = {}  # id -> type, for the nodes this file created

    def _kgs(self) -> list[KnowledgeGraph]:
        return list(self._given) if self._given is not None else list(_builtin_names())

    def resolve(self, cell: str, allowed: tuple[str, ...] | None, where: str, slot: str) -> tuple[Node, bool]:
        """(the node, whether it is new to this file); a cell nothing can type raises KGError naming the row."""
        if _TYPED_ID.match(cell):
            node = Node(cell, node_type_of(cell), label_from_id(cell), extra={"_derived": True})
            self.local.setdefault(normalize(node.label), cell)
            self.types[cell] = node.type
            return node, True
        key = normalize(cell)
        if not key:
            raise KGError(f"{where}: {slot} {cell!r} has no words (expected a name or '<type>:<name>')")
        nid = self.local.get(key)
        if nid is not None and (allowed is None or self.types[nid] in allowed):
            return Node(nid, self.types[nid], cell), False
        wrong = []
        for kg in self._kgs():
            nid = kg.canonical(cell)
            if nid is None:
                continue
            if allowed is None or kg.type(nid) in allowed:
                return self._remember(key, Node(nid, kg.type(nid), kg.label(nid), extra={"_derived": True}))
            wrong.append(f"of type {kg.type(nid)!r} in KG {kg.name!r}")
        if (
            allowed is not None and len(allowed) == 1 and not wrong
        ):  # a known name of another type is a mistake
            ntype = allowed[0]
            slug = cell.strip() if ntype == "dataset_label" else key.replace(" ", "_")
            return self._remember(key, Node(f"{ntype}:{slug}", ntype, cell.strip(), extra={"_derived": True}))
        what = f"is a name {' and '.join(wrong)}" if wrong else "is not a name the KG knows"
        types = ", ".join(allowed) if allowed else "any type"
        raise KGError(
            f"{where}: node {cell!r} has no type prefix and {what} (the {slot} takes one of {types}; "
            f"write it as '<type>:{key.replace(' ', '_')}')"
        )

    def _remember(self, key: str, node: Node) -> tuple[Node, bool]:
        self.local[key] = node.id
        self.types[node.id] = node.type
        return node, True


def _csv_relation(cell: str, where: str) -> str:
    """'has feature', 'Has-Feature' and 'has_feature' are one relation; an unknown one is refused with its row."""
    rel = re.sub(r"[\s-]+", "_", cell.strip().lower())
    if rel not in RELATIONS:
        raise KGError(f"{where}: unknown relation {cell!r} (expected one of {', '.join(RELATIONS)})")
    return rel


def _read_csv(path: Path, names: KnowledgeGraph | list[KnowledgeGraph] | None = None) -> tuple[list, list]:
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter=delim))
    nodes: list = []
    edges: list = []
    seen: set[str] = set()
    resolver = _CsvNames(names)
    for i, row in enumerate(rows, start=1):
        row = [c.strip() for c in row]
        if not row or not any(row) or row[0].startswith("#"):
            continue
        if i == 1 and row[0].lower() == "head":
            continue
        where = f"{path.name} row {i}"
        if len(row) < 3 or not row[0] or not row[1] or not row[2]:
            raise KGError(
                f"{where}: expected head,relation,tail[,source[,typicality[,sensitivity]]] (got {len(row)} fields)"
            )
        relation = _csv_relation(row[1], where)
        ends = []
        for cell, allowed, slot in (
            (row[0], RELATIONS[relation][0], f"{relation} head"),
            (row[2], RELATIONS[relation][1], f"{relation} tail"),
        ):
            node, new = resolver.resolve(cell, allowed, where, slot)
            if new and node.id not in seen:
                seen.add(node.id)
                nodes.append((where, node))
            ends.append(node.id)
        source = row[3] if len(row) > 3 and row[3] else path.name
        typicality = row[4] if len(row) > 4 and row[4] else None
        extra = {"sensitivity": row[5]} if len(row) > 5 and row[5] else {}
        edges.append((where, Edge(ends[0], relation, ends[1], source, typicality, extra)))
    return nodes, edges


def _read_graphml(path: Path) -> tuple[dict, list, list]:
    try:
        g = nx.read_graphml(path, force_multigraph=True)
    except Exception as e:  # ElementTree / networkx parse errors
        raise KGError(f"{path.name}: invalid GraphML ({e})") from None
    graph_attrs = dict(g.graph)
    for key in GRAPH_LISTS:
        if isinstance(graph_attrs.get(key), str):
            try:
                graph_attrs[key] = json.loads(graph_attrs[key])
            except json.JSONDecodeError:
                raise KGError(f"{path.name}: graph field {key!r} is not a JSON list") from None
    nodes = []
    for nid, a in g.nodes(data=True):
        where = f"{path.name} node {nid!r}"
        a = dict(a)
        for k in STRUCTURED_NODE_ATTRS:
            if isinstance(a.get(k), str):
                try:
                    a[k] = json.loads(a[k])
                except json.JSONDecodeError:
                    raise KGError(f"{where}: field {k!r} is not a JSON list") from None
        ntype = a.get("type") or node_type_of(nid)
        nodes.append(
            (
                where,
                Node(
                    nid,
                    ntype,
                    a.get("label") or label_from_id(nid),
                    a.get("aliases", []),
                    _extra(a, _NODE_KEYS),
                ),
            )
        )
    edges = []
    for i, (h, t, k, a) in enumerate(g.edges(keys=True, data=True)):
        where = f"{path.name} edge {i} ({h} -> {t})"
        rel = a.get("relation", k)
        edges.append(
            (
                where,
                Edge(
                    h,
                    rel,
                    t,
                    a.get("source") or path.name,
                    a.get("typicality") or None,
                    _extra(a, _EDGE_KEYS),
                ),
            )
        )
    return graph_attrs, nodes, edges


def _graphml_ready(g: nx.MultiDiGraph) -> nx.MultiDiGraph:
    out = nx.MultiDiGraph(
        **{
            k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
            for k, v in g.graph.items()
            if k != "name"
        }
    )
    for n, a in g.nodes(data=True):
        out.add_node(
            n,
            **{
                k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                for k, v in _public(a).items()
                if v is not None
            },
        )
    for h, t, k, a in g.edges(keys=True, data=True):
        out.add_edge(h, t, key=k, **{kk: v for kk, v in _public(a).items() if v is not None})
    return out
