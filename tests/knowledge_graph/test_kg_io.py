"""Loaders, savers and every validation error, with the row each error must name."""

import json

import pytest

from knowledge_graph.errors import KGError
from knowledge_graph.io import load, load_builtin, merge, save

NODES = [
    {"id": "condition:foo", "type": "condition", "label": "foo disease", "aliases": ["foo"]},
    {"id": "colour:red", "type": "colour", "label": "red"},
    {"id": "dataset_label:ds/f", "type": "dataset_label", "label": "F1", "dataset": "ds"},
]
LINKS = [
    {
        "head": "condition:foo",
        "relation": "has_feature",
        "tail": "colour:red",
        "source": "Test book",
        "typicality": "typical",
    },
    {"head": "dataset_label:ds/f", "relation": "alias_of", "tail": "condition:foo", "source": "ds"},
]


def write_json(tmp_path, nodes=NODES, links=LINKS, name="kg.json"):
    p = tmp_path / name
    p.write_text(json.dumps({"directed": True, "multigraph": True, "nodes": nodes, "links": links}))
    return p


def write_csv(tmp_path, text, name="kg.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_json_load_and_queries(tmp_path):
    kg = load(write_json(tmp_path))
    assert kg.canonical_label("F1") == "foo disease"
    assert kg.features("foo")[0].id == "colour:red"
    assert kg.edges("has_feature")[0][3]["source"] == "Test book"


@pytest.mark.parametrize("suffix", [".json", ".graphml", ".csv"])
def test_roundtrip_builtin(tmp_path, suffix):
    kg = load_builtin("derm")
    back = load(save(kg, tmp_path / f"derm{suffix}"))
    edges = {(h, r, t, a["source"], a.get("typicality")) for h, r, t, a in kg.edges()}
    assert {(h, r, t, a["source"], a.get("typicality")) for h, r, t, a in back.edges()} == edges
    if suffix != ".csv":  # CSV keeps triples only; labels come from ids
        assert back.counts() == kg.counts()
        assert back.canonical_label("mel") == "melanoma"
        assert back.node("condition:melanoma")["aliases"] == kg.node("condition:melanoma")["aliases"]


def test_csv_triples_with_header_and_defaults(tmp_path):
    p = write_csv(
        tmp_path,
        "head,relation,tail,source\n"
        "condition:bar,has_feature,colour:blue_grey,My notes\n"
        "condition:bar,has_feature,surface:scaly\n"
        "dataset_label:mine/B2,alias_of,condition:bar,mine\n",
    )
    kg = load(p)
    assert kg.label("colour:blue_grey") == "blue grey"
    assert kg.canonical("B2") == "condition:bar"
    srcs = {t: a["source"] for _, _, t, a in kg.edges("has_feature")}
    assert srcs == {"colour:blue_grey": "My notes", "surface:scaly": "kg.csv"}  # missing source -> file name


def test_csv_unknown_relation_names_row(tmp_path):
    p = write_csv(
        tmp_path,
        "head,relation,tail,source\ncondition:x,has_feature,colour:red,s\n\ncondition:x,has_feat,colour:red,s\n",
    )
    with pytest.raises(
        KGError, match=r"^kg\.csv row 4: unknown relation 'has_feat' \(expected one of has_feature"
    ):
        load(p)


def test_csv_unknown_node_type_and_missing_prefix(tmp_path):
    with pytest.raises(KGError, match=r"kg\.csv row 1: unknown node type 'colur'"):
        load(write_csv(tmp_path, "condition:x,has_feature,colur:red\n"))
    with pytest.raises(
        KGError, match=r"kg\.csv row 2: node 'zzq' has no type prefix"
    ):  # plain 'red' now resolves
        load(write_csv(tmp_path, "condition:x,has_feature,colour:red\ncondition:x,has_feature,zzq\n"))


def test_csv_too_few_fields_and_bad_typicality(tmp_path):
    with pytest.raises(KGError, match=r"kg\.csv row 1: expected head,relation,tail"):
        load(write_csv(tmp_path, "condition:x,has_feature\n"))
    with pytest.raises(KGError, match=r"kg\.csv row 1: unknown typicality 'usual'"):
        load(write_csv(tmp_path, "condition:x,has_feature,colour:red,src,usual\n"))


def test_csv_wrong_endpoint_type(tmp_path):
    with pytest.raises(
        KGError, match=r"row 1: treated_by tail 'colour:red' has type 'colour' \(expected one of treatment\)"
    ):
        load(write_csv(tmp_path, "condition:x,treated_by,colour:red,src\n"))


def test_csv_duplicate_alias_dataset_code(tmp_path):
    p = write_csv(
        tmp_path, "dataset_label:d/X,alias_of,condition:a,s\ndataset_label:d/X,alias_of,condition:b,s\n"
    )
    with pytest.raises(KGError, match=r"kg\.csv row 2: duplicate alias 'X'"):
        load(p)


def test_json_unknown_node_type(tmp_path):
    nodes = NODES + [{"id": "thing:z", "type": "thing", "label": "z"}]
    with pytest.raises(KGError, match=r"kg\.json nodes\[3\]: unknown node type 'thing' for 'thing:z'"):
        load(write_json(tmp_path, nodes=nodes))


def test_json_dangling_edge(tmp_path):
    links = LINKS + [
        {"head": "condition:foo", "relation": "has_feature", "tail": "colour:blue", "source": "s"}
    ]
    with pytest.raises(
        KGError, match=r"kg\.json links\[2\]: dangling edge, tail 'colour:blue' is not a node"
    ):
        load(write_json(tmp_path, links=links))


def test_json_unknown_relation(tmp_path):
    links = [{"head": "condition:foo", "relation": "causes", "tail": "colour:red", "source": "s"}]
    with pytest.raises(KGError, match=r"kg\.json links\[0\]: unknown relation 'causes'"):
        load(write_json(tmp_path, links=links))


def test_json_duplicate_alias(tmp_path):
    nodes = NODES + [{"id": "condition:bar", "type": "condition", "label": "bar", "aliases": ["Foo"]}]
    with pytest.raises(
        KGError,
        match=r"kg\.json nodes\[3\]: duplicate alias 'Foo' of 'condition:bar' is already used by 'condition:foo'",
    ):
        load(write_json(tmp_path, nodes=nodes))


def test_json_duplicate_node_and_bad_json(tmp_path):
    with pytest.raises(KGError, match=r"nodes\[3\]: duplicate node id 'colour:red'"):
        load(write_json(tmp_path, nodes=NODES + [NODES[1]]))
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [\n,]}')
    with pytest.raises(KGError, match=r"bad\.json line 2: invalid JSON"):
        load(bad)
    with pytest.raises(KGError, match=r"field 'aliases' of 'condition:foo' must be a list"):
        load(write_json(tmp_path, nodes=[{**NODES[0], "aliases": "foo"}], links=[]))


def test_graphml_dangling_edge_and_unknown_type(tmp_path):
    p = tmp_path / "kg.graphml"
    p.write_text("""<?xml version='1.0' encoding='utf-8'?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
<key id="d0" for="node" attr.name="type" attr.type="string"/>
<key id="d1" for="edge" attr.name="relation" attr.type="string"/>
<key id="d2" for="edge" attr.name="source" attr.type="string"/>
<graph edgedefault="directed">
<node id="condition:a"><data key="d0">condition</data></node>
<node id="colour:red"><data key="d0">colour</data></node>
<edge source="condition:a" target="colour:red"><data key="d1">has_feature</data><data key="d2">s</data></edge>
<edge source="condition:a" target="colour:red"><data key="d1">differential_of</data><data key="d2">s</data></edge>
</graph></graphml>""")
    with pytest.raises(
        KGError, match=r"kg\.graphml edge 1 \(condition:a -> colour:red\): differential_of tail"
    ):
        load(p)
    p.write_text(p.read_text().replace(">colour</data>", ">hue</data>"))
    with pytest.raises(KGError, match=r"kg\.graphml node 'colour:red': unknown node type 'hue'"):
        load(p)
    p.write_text("<graphml><graph")
    with pytest.raises(KGError, match=r"kg\.graphml: invalid GraphML"):
        load(p)


def test_unknown_format_and_missing_file(tmp_path):
    p = tmp_path / "kg.txt"
    p.write_text("x")
    with pytest.raises(KGError, match=r"kg\.txt: unknown KG format '\.txt'"):
        load(p)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.json")
    with pytest.raises(KGError, match="unknown built-in KG 'ortho'"):
        load_builtin("ortho")


def test_merge_extends_and_replaces(tmp_path):
    base = load_builtin("derm")
    user = load(
        write_csv(
            tmp_path,
            "condition:melanoma,has_feature,colour:white,My atlas,possible\n"
            "condition:melanoma,has_feature,colour:black,My atlas,possible\n"
            "condition:new_rash,differential_of,condition:psoriasis,My atlas\n",
        )
    )
    kg = merge(base, user)
    assert kg.typicality_of("condition:melanoma", "colour:black") == "possible"  # replaced
    assert "condition:new_rash" in kg.differential("psoriasis")  # extended
    assert kg.label("condition:melanoma") == "melanoma"  # a CSV id does not clobber our label
    assert base.typicality_of("condition:melanoma", "colour:black") == "typical"  # base untouched
    clash = load(
        write_json(
            tmp_path,
            nodes=[{"id": "condition:zz", "type": "condition", "label": "zz", "aliases": ["naevus"]}],
            links=[],
            name="clash.json",
        )
    )
    with pytest.raises(KGError, match="duplicate alias 'naevus'"):
        merge(base, clash)


def test_new_edge_fields_are_validated(tmp_path):
    links = [{**LINKS[0], "sensitivity": "sometimes"}]
    with pytest.raises(
        KGError,
        match=r"kg\.json links\[0\]: field 'sensitivity' is 'sometimes' \(expected one of required, high\)",
    ):
        load(write_json(tmp_path, links=links))
    links = [
        {
            "head": "condition:foo",
            "relation": "differential_of",
            "tail": "condition:foo",
            "source": "s",
            "sensitivity": "high",
        }
    ]
    with pytest.raises(KGError, match=r"field 'sensitivity' does not apply to differential_of"):
        load(write_json(tmp_path, links=links))
    p = write_csv(
        tmp_path,
        "condition:x,has_feature,colour:red,src,typical,high\ncondition:x,treated_by,treatment:y,src\n",
    )
    kg = load(p)
    assert kg.sensitivity_of("condition:x", "colour:red") == "high"
    bad = tmp_path / "bad.json"
    bad.write_text('{"graph": {"unlisted_conditions": "viral meningitis"}, "nodes": [], "links": []}')
    with pytest.raises(KGError, match=r"bad\.json: graph field 'unlisted_conditions' must be a list"):
        load(bad)
    with pytest.raises(KGError, match=r"field 'codes' of 'condition:foo' must be a list"):
        load(write_json(tmp_path, nodes=[{**NODES[0], "codes": "FD"}], links=[]))


@pytest.mark.parametrize("suffix", [".json", ".graphml"])
def test_roundtrip_keeps_graph_lists_and_sensitivity(tmp_path, suffix):
    kg = load_builtin("clinical")
    back = load(save(kg, tmp_path / f"clin{suffix}"))
    assert back.graph.graph["unlisted_conditions"] == kg.graph.graph["unlisted_conditions"]
    assert back.sensitivity_of("condition:stemi", "lab_finding:st_elevation") == "required"
    assert back.canonical("RA") == "condition:rheumatoid_arthritis"
