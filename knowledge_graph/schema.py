"""The KG vocabulary: node types, relations and which node types each relation may join.

Node ids are ``"<type>:<slug>"`` (e.g. ``condition:melanoma``, ``colour:blue_grey``) so CSV triples can carry
node types without a separate node table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Findings a condition can have (has_feature / absent_feature targets), dermatology and clinical.
FINDING_TYPES: tuple[str, ...] = (
    "morphology",
    "colour",
    "border",
    "shape",
    "surface",
    "size",
    "distribution",
    "body_site",
    "symptom",
    "dermoscopic_feature",
    "risk_factor",
    "sign",
    "lab_finding",
    "imaging_finding",
)
NODE_TYPES: tuple[str, ...] = (
    "condition",
    "category",
    "treatment",
    "procedure",
    "dataset_label",
    *FINDING_TYPES,
)

# How often a linked finding is seen in the condition (what synthetic data samples and ranking weigh).
TYPICALITY: tuple[str, ...] = ("typical", "possible", "atypical")
# Whether the finding's ABSENCE argues against the condition: only "required" (part of the definition) or "high"
# (highly sensitive, seen in nearly every case). Without it an absent finding is neutral, however typical it is.
SENSITIVITY: tuple[str, ...] = ("required", "high")
# treated_by "line"; has_procedure "purpose" (staging and referral are not treatments).
LINES: tuple[str, ...] = ("first", "second", "third", "adjunct")
PURPOSES: tuple[str, ...] = ("diagnosis", "staging", "referral", "monitoring")

# relation -> (allowed head types, allowed tail types); None means any node type.
RELATIONS: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...] | None]] = {
    "has_feature": (("condition",), FINDING_TYPES),
    "absent_feature": (("condition",), FINDING_TYPES),
    "typical_site": (("condition",), ("body_site",)),
    "differential_of": (("condition",), ("condition",)),
    "is_a": (("condition", "category"), ("condition", "category")),
    "treated_by": (("condition",), ("treatment",)),
    "has_procedure": (("condition",), ("procedure",)),
    "contraindicates": (("condition",), ("treatment", "procedure")),
    # An action that, chosen instead of the right one, delays the diagnosis or treatment of a must-not-miss condition
    # ("reassure", "review in 3 months", cryotherapy of a possible melanoma): harmful management for that condition.
    "delays": (("condition",), ("treatment", "procedure")),
    "excludes": (FINDING_TYPES, FINDING_TYPES),
    "alias_of": (("dataset_label",), None),
}
# Edge attributes checked against a vocabulary: attribute -> (relations it belongs to, allowed values).
EDGE_VOCAB: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sensitivity": (("has_feature", "typical_site"), SENSITIVITY),
    "line": (("treated_by",), LINES),
    "purpose": (("has_procedure",), PURPOSES),
}

# Node attributes that hold lists/dicts (kept as JSON strings in GraphML).
STRUCTURED_NODE_ATTRS: tuple[str, ...] = ("aliases", "age", "codes", "absent_terms", "patterns")
# Relations that say what to DO for a condition: each edge of these needs a checkable source (citations.is_checkable).
MANAGEMENT_RELATIONS: tuple[str, ...] = ("treated_by", "has_procedure", "contraindicates", "delays")
# Graph-level lists (JSON "graph" object): names this KG does not model, so a shorter alias inside them never fires.
#   unlisted_conditions: other diseases ("viral meningitis" must not read as bacterial meningitis);
#   unlisted_terms: other senses of a word ("ST depression" is not depression).
GRAPH_LISTS: tuple[str, ...] = ("unlisted_conditions", "unlisted_terms")


@dataclass
class Node:
    """One KG node; ``extra`` carries optional attributes (dataset, direction, value, age, sex, ...).

    Optional attributes with a meaning for claim checking: ``codes`` (abbreviations matched only as exact input,
    never in free text: 'RA' is room air as often as rheumatoid arthritis), ``absent_terms`` (phrases that state
    the finding is absent: 'afebrile', 'equal arm blood pressures'), ``patterns`` (regular expressions for wordings a
    list of aliases cannot hold: 'review in 3 months'), ``group`` (a parent that only groups
    conditions, like HAM10000's akiec; not a diagnosis of its own for synthetic data) and ``must_not_miss``.
    """

    id: str
    type: str
    label: str
    aliases: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class Edge:
    """One typed edge with the textbook or guideline it comes from."""

    head: str
    relation: str
    tail: str
    source: str
    typicality: str | None = None
    extra: dict = field(default_factory=dict)


def node_type_of(node_id: str) -> str:
    """The type prefix of a node id (``colour:red`` -> ``colour``); '' when there is none."""
    return node_id.split(":", 1)[0] if ":" in node_id else ""


def label_from_id(node_id: str) -> str:
    """A readable default label for an id: ``colour:blue_grey`` -> ``blue grey``; dataset codes keep case."""
    rest = node_id.split(":", 1)[1] if ":" in node_id else node_id
    if node_type_of(node_id) == "dataset_label" and "/" in rest:
        return rest.split("/", 1)[1]
    return rest.replace("_", " ")
