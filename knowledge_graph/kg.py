"""``KnowledgeGraph``: the queries the pipelines need over a validated networkx MultiDiGraph."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from .errors import KGError
from .lexicon import Lexicon

# How much a matching finding counts towards a condition, by the edge's typicality.
TYPICALITY_WEIGHT = {"typical": 1.0, "possible": 0.5, "atypical": 0.2}
ABSENT_PENALTY = 1.0


@dataclass(frozen=True)
class Feature:
    """A finding linked to a condition, with how typical it is and where the fact comes from.

    ``sensitivity`` is 'required' or 'high' when the finding's absence argues against the condition, else None.
    """

    id: str
    type: str
    label: str
    typicality: str
    source: str
    sensitivity: str | None = None


@dataclass(frozen=True)
class Step:
    """One edge on an explanation path, in the edge's own direction."""

    head: str
    relation: str
    tail: str
    source: str


class KnowledgeGraph:
    """A typed medical KG (nodes ``<type>:<slug>``, edges keyed by relation) and its queries.

    Treat the graph as read-only once wrapped: the lexicon and is_a index are cached (``merge`` builds a new one).
    """

    def __init__(self, graph: nx.MultiDiGraph, name: str = "kg"):
        self.graph = graph
        self.name = name

    # ---- basics -------------------------------------------------------------------------------------------
    def __contains__(self, node_id: str) -> bool:
        return node_id in self.graph

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def node(self, node_id: str) -> dict:
        if node_id not in self.graph:
            raise KGError(f"unknown node {node_id!r} in KG {self.name!r}")
        return self.graph.nodes[node_id]

    def type(self, node_id: str) -> str:
        return self.node(node_id)["type"]

    def label(self, node_id: str) -> str:
        return self.node(node_id)["label"]

    def nodes(self, type: str | None = None) -> list[str]:
        """Node ids, optionally of one type, in file order."""
        return [n for n, a in self.graph.nodes(data=True) if type is None or a["type"] == type]

    def conditions(self, include_groups: bool = False) -> list[str]:
        """Diagnosable conditions; ``include_groups`` adds parents that only group others (akiec, stroke)."""
        return [c for c in self.nodes("condition") if include_groups or not self.graph.nodes[c].get("group")]

    def is_group(self, condition: str) -> bool:
        return bool(self.node(condition).get("group"))

    def must_not_miss(self, condition: str) -> bool:
        """Dangerous if missed (malignancy, emergencies): a safe answer names it or hedges it with an action."""
        return bool(self.node(condition).get("must_not_miss"))

    def edges(self, relation: str | None = None) -> list[tuple[str, str, str, dict]]:
        """(head, relation, tail, attrs) for every edge, optionally of one relation."""
        return [
            (h, r, t, a) for h, t, r, a in self.graph.edges(keys=True, data=True) if relation in (None, r)
        ]

    def counts(self) -> dict[str, Counter]:
        """Counts per node type and per edge relation (what ``medrl kg stats`` prints)."""
        nodes = Counter(a["type"] for _, a in self.graph.nodes(data=True))
        edges = Counter(r for _, _, r in self.graph.edges(keys=True))
        return {"nodes": nodes, "edges": edges}

    @cached_property
    def lexicon(self) -> Lexicon:
        return Lexicon.from_graph(self.graph)

    # ---- names --------------------------------------------------------------------------------------------
    def canonical(self, term: str) -> str | None:
        """The node id for an id, label, synonym or dataset code (HAM10000 'mel', a DermNet folder); else None."""
        if term in self.graph:
            nid = term
            if self.graph.nodes[nid]["type"] == "dataset_label":
                targets = [t for _, t, r in self.graph.out_edges(nid, keys=True) if r == "alias_of"]
                return targets[0] if targets else None
            return nid
        return self.lexicon.lookup(term)

    def canonical_label(self, term: str) -> str | None:
        """The canonical label ('melanoma') for any alias or dataset code ('mel', 'MEL', 'malignant melanoma')."""
        nid = self.canonical(term)
        return None if nid is None else self.label(nid)

    def require(self, term: str, type: str | None = None) -> str:
        """Like ``canonical`` but raises a KGError naming the term (for CLI/user input)."""
        nid = self.canonical(term)
        if nid is None or (type is not None and self.type(nid) != type):
            raise KGError(f"{term!r} is not a known {type or 'node'} of KG {self.name!r}")
        return nid

    # ---- condition queries --------------------------------------------------------------------------------
    def _out(self, nid: str, relation: str) -> list[tuple[str, dict]]:
        return [(t, a) for _, t, r, a in self.graph.out_edges(nid, keys=True, data=True) if r == relation]

    def features(
        self, condition: str, types: str | list[str] | None = None, typicality: str | list[str] | None = None
    ) -> list[Feature]:
        """Findings of a condition (has_feature and typical_site), filtered by node type and typicality."""
        cid = self.require(condition, "condition")
        types = [types] if isinstance(types, str) else types
        typicality = [typicality] if isinstance(typicality, str) else typicality
        out = []
        for rel in ("has_feature", "typical_site"):
            for t, a in self._out(cid, rel):
                f = Feature(
                    t,
                    self.type(t),
                    self.label(t),
                    a.get("typicality", "typical"),
                    a["source"],
                    a.get("sensitivity"),
                )
                if (types is None or f.type in types) and (typicality is None or f.typicality in typicality):
                    if f not in out:
                        out.append(f)
        return out

    def feature_ids(self, condition: str, **kw) -> set[str]:
        return {f.id for f in self.features(condition, **kw)}

    def absent_features(self, condition: str) -> list[Feature]:
        """Findings that argue against a condition."""
        cid = self.require(condition, "condition")
        return [
            Feature(t, self.type(t), self.label(t), "absent", a["source"])
            for t, a in self._out(cid, "absent_feature")
        ]

    def typicality_of(self, condition: str, finding: str) -> str | None:
        """'typical'/'possible'/'atypical' if linked, 'absent' if it argues against, else None."""
        g = self.graph
        for rel in ("has_feature", "typical_site"):
            if g.has_edge(condition, finding, key=rel):
                return g.edges[condition, finding, rel].get("typicality", "typical")
        if g.has_edge(condition, finding, key="absent_feature"):
            return "absent"
        return None

    def sensitivity_of(self, condition: str, finding: str) -> str | None:
        """'required' / 'high' when the finding's absence argues against the condition; None otherwise."""
        g = self.graph
        for rel in ("has_feature", "typical_site"):
            if g.has_edge(condition, finding, key=rel):
                return g.edges[condition, finding, rel].get("sensitivity")
        return None

    def related(self, condition: str) -> set[str]:
        """The condition, its parent groups and its subtypes: naming any of them names the same disease."""
        cid = self.require(condition)
        return {cid, *nx.descendants(self._is_a, cid), *nx.ancestors(self._is_a, cid)} - {
            n for n in self.graph if self.graph.nodes[n]["type"] != "condition"
        }

    def differential(self, condition: str) -> list[str]:
        """Conditions to tell apart from this one (differential_of in either direction), in file order."""
        cid = self.require(condition, "condition")
        out = [t for t, _ in self._out(cid, "differential_of")]
        out += [
            h for h, _, r in self.graph.in_edges(cid, keys=True) if r == "differential_of" and h not in out
        ]
        return out

    def treatments(self, condition: str, line: str | None = None) -> list[str]:
        cid = self.require(condition, "condition")
        return [t for t, a in self._out(cid, "treated_by") if line is None or a.get("line") == line]

    def treatment_line(self, condition: str, treatment: str) -> str | None:
        """The guideline line ('first', 'second', ...) of a treatment for the condition, None if not linked."""
        g = self.graph
        if g.has_edge(condition, treatment, key="treated_by"):
            return g.edges[condition, treatment, "treated_by"].get("line", "listed")
        return None

    def procedures(self, condition: str, purpose: str | None = None) -> list[str]:
        """Diagnostic, staging and referral procedures (not treatments)."""
        cid = self.require(condition, "condition")
        return [
            t for t, a in self._out(cid, "has_procedure") if purpose is None or a.get("purpose") == purpose
        ]

    def contraindicated(self, condition: str) -> list[str]:
        """Treatments that harm in this condition (thrombolysis in haemorrhagic stroke)."""
        cid = self.require(condition, "condition")
        return [t for t, _ in self._out(cid, "contraindicates")]

    def delays(self, condition: str) -> list[str]:
        """Actions that delay the diagnosis or treatment of this (must-not-miss) condition: reassurance, routine review."""
        cid = self.require(condition, "condition")
        return [t for t, _ in self._out(cid, "delays")]

    def management(self, condition: str, action: str) -> tuple[str, dict] | None:
        """How the KG rates an action (treatment or procedure) for a condition or its groups and subtypes:
        ('contraindicated' | 'delays' | 'indicated', edge attrs), the worst rating first; None when not linked.
        ``indicated`` edges carry ``line`` (treatments) or ``purpose`` (procedures)."""
        g = self.graph
        related = self.related(condition)
        for rating, rel in (
            ("contraindicated", "contraindicates"),
            ("delays", "delays"),
            ("indicated", "treated_by"),
            ("indicated", "has_procedure"),
        ):
            for r in related:
                if g.has_edge(r, action, key=rel):
                    return rating, dict(g.edges[r, action, rel])
        return None

    def excluded_by(self, finding: str) -> set[str]:
        """Findings that cannot be present together with this one (well- vs ill-defined border)."""
        g = self.graph
        out = {t for _, t, r in g.out_edges(finding, keys=True) if r == "excludes"}
        return out | {h for h, _, r in g.in_edges(finding, keys=True) if r == "excludes"}

    def categories(self, node: str) -> list[str]:
        """All is_a ancestors (nearest first)."""
        nid = self.require(node)
        return [n for n in nx.bfs_tree(self._is_a, nid) if n != nid]

    def members(self, category: str) -> list[str]:
        """Conditions under a category (through is_a, transitively)."""
        nid = self.require(category)
        return [n for n in nx.ancestors(self._is_a, nid) if self.type(n) == "condition"]

    @cached_property
    def _is_a(self) -> nx.DiGraph:
        g = nx.DiGraph((h, t) for h, t, r in self.graph.edges(keys=True) if r == "is_a")
        g.add_nodes_from(self.graph)
        return g

    def explain_path(self, condition: str, finding: str, max_len: int = 4) -> list[Step]:
        """Shortest chain of facts linking a condition and a finding (ignoring alias edges); [] if none."""
        a, b = self.require(condition), self.require(finding)
        und = nx.Graph()
        for h, r, t, attrs in self.edges():
            if r not in ("alias_of", "excludes", "contraindicates", "delays") and not und.has_edge(h, t):
                und.add_edge(h, t, relation=r, head=h, source=attrs["source"])
        if a not in und or b not in und:
            return []
        try:
            path = nx.shortest_path(und, a, b)
        except nx.NetworkXNoPath:
            return []
        if len(path) - 1 > max_len:
            return []
        steps = []
        for u, v in zip(path, path[1:]):
            e = und.edges[u, v]
            head, tail = (u, v) if e["head"] == u else (v, u)
            steps.append(Step(head, e["relation"], tail, e["source"]))
        return steps

    def explain_text(self, condition: str, finding: str) -> str:
        """The explanation path as one readable line."""
        steps = self.explain_path(condition, finding)
        if not steps:
            return f"no path between {condition} and {finding}"
        return "; ".join(
            f"{self.label(s.head)} {s.relation} {self.label(s.tail)} [{s.source}]" for s in steps
        )

    def rank(
        self, findings: list[str], absent: list[str] | None = None, candidates: list[str] | None = None
    ) -> list[tuple[str, float]]:
        """Conditions ranked by fit: typicality-weighted matches of present findings, penalised for findings
        that argue against a condition and for denied findings it requires (or nearly always has); normalised per
        finding. A denied finding that is merely typical is neutral: absence of a typical feature proves little.
        """
        present = [self.require(f) for f in findings]
        denied = [self.require(f) for f in (absent or [])]
        n = max(1, len(present) + len(denied))
        scores = []
        for c in candidates or self.conditions():
            s = 0.0
            for f in present:
                t = self.typicality_of(c, f)
                s += -ABSENT_PENALTY if t == "absent" else TYPICALITY_WEIGHT.get(t or "", 0.0)
            for f in denied:
                t = self.typicality_of(c, f)
                if t == "absent":
                    s += 0.5
                elif self.sensitivity_of(c, f):
                    s -= ABSENT_PENALTY
            scores.append((c, round(s / n, 4)))
        return sorted(scores, key=lambda cs: (-cs[1], self.label(cs[0])))
