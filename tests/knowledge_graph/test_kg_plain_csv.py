"""A user's KG as plain-word CSV triples: names resolve through the KG lexicon, node types come from
the relation's schema, typed ids still work, and what cannot be typed is refused with its row."""

import pytest

from knowledge_graph.errors import KGError
from knowledge_graph.io import load, load_builtin, merge


@pytest.fixture(scope="module")
def derm():
    return load_builtin("derm")


def write(tmp_path, text, name="mine.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_plain_words_resolve_to_builtin_nodes(tmp_path, derm):
    kg = load(
        write(
            tmp_path,
            "melanoma,has_feature,irregular border,Bolognia\n"
            "Malignant Melanoma,differential_of,seborrhoeic keratosis,My atlas\n"
            "melanoma,typical_site,face,My atlas,possible\n",
        ),
        names=derm,
    )
    assert kg.edges("has_feature")[0][:3] == ("condition:melanoma", "has_feature", "border:irregular")
    assert kg.edges("has_feature")[0][3]["source"] == "Bolognia"
    assert kg.edges("differential_of")[0][:3] == (
        "condition:melanoma",
        "differential_of",
        "condition:seborrheic_keratosis",
    )
    assert kg.typicality_of("condition:melanoma", "body_site:face") == "possible"
    assert kg.label("condition:melanoma") == "melanoma"


def test_default_names_are_our_graphs(tmp_path):
    kg = load(
        write(
            tmp_path,
            "melanoma,has feature,blue-white veil,My atlas\npsoriasis,Has-Feature,nail pitting,Notes\n",
        )
    )
    assert ("condition:melanoma", "has_feature", "dermoscopic_feature:blue_white_veil") in [
        e[:3] for e in kg.edges()
    ]
    assert ("condition:psoriasis", "has_feature", "sign:nail_pitting") in [e[:3] for e in kg.edges()]


def test_new_names_take_the_relations_only_type(tmp_path, derm):
    kg = load(
        write(
            tmp_path,
            "head,relation,tail,source\n"
            "pemphigus foliaceus,has_feature,erosion,Notes\n"
            "Pemphigus foliaceus,treated_by,rituximab,Notes\n"
            "Pemphigus Foliaceus,is_a,autoimmune skin disease,Notes\n",
        ),
        names=derm,
    )
    assert kg.type("condition:pemphigus_foliaceus") == "condition"
    assert kg.label("condition:pemphigus_foliaceus") == "pemphigus foliaceus"  # the name as the user wrote it
    assert kg.treatments("condition:pemphigus_foliaceus") == [
        "treatment:rituximab"
    ]  # one node, however capitalised
    assert "category:autoimmune" in kg.categories("condition:pemphigus_foliaceus")
    assert kg.canonical("pemphigus foliaceus") == "condition:pemphigus_foliaceus"


def test_typed_ids_and_plain_names_mix(tmp_path, derm):
    kg = load(
        write(
            tmp_path,
            "condition:foo,has_feature,sign:satellite_lesions,Notes\n"
            "bar,has_feature,satellite lesions,Notes,possible\n"
            "foo,has_feature,red,Notes\n",
        ),
        names=derm,
    )
    assert kg.typicality_of("condition:bar", "sign:satellite_lesions") == "possible"  # the name row 1 defined
    assert "colour:red" in kg.feature_ids("condition:foo")
    assert sorted(kg.nodes("condition")) == ["condition:bar", "condition:foo"]


def test_merge_keeps_our_labels_and_aliases(tmp_path, derm):
    user = load(
        write(
            tmp_path,
            "melanoma,has_feature,white,My atlas,possible\nnaevus,differential_of,melanoma,My atlas\n",
        ),
        names=derm,
    )
    kg = merge(derm, user)
    assert kg.typicality_of("condition:melanoma", "colour:white") == "possible"
    assert kg.canonical("malignant melanoma") == "condition:melanoma"
    assert "condition:melanocytic_nevus" in kg.differential("melanoma")
    assert len(kg) == len(derm)  # nothing new: every name was ours


def test_dataset_codes_resolve_and_new_codes_become_dataset_labels(tmp_path, derm):
    kg = load(write(tmp_path, "MEL-2,alias_of,mel,Our clinic\n"), names=derm)
    ((h, _, t, _),) = kg.edges("alias_of")
    assert kg.type(h) == "dataset_label" and t == "condition:melanoma"
    assert kg.canonical("MEL-2") == "condition:melanoma"


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "melanoma,has_feat,irregular border,B\n",
            r"^mine\.csv row 1: unknown relation 'has_feat' \(expected one of has_feature",
        ),
        ("melanoma,has_feature,colur:red,B\n", r"^mine\.csv row 1: unknown node type 'colur'"),
        (
            "melanoma,has_feature,qqq zzz,B\n",
            r"^mine\.csv row 1: node 'qqq zzz' has no type prefix and is not a name the KG knows .*'<type>:qqq_zzz'",
        ),
        (
            "melanoma,has_feature,psoriasis,B\n",
            r"^mine\.csv row 1: node 'psoriasis' has no type prefix and is a name of type 'condition' in KG 'dermatology'",
        ),
        (
            "head,relation,tail\nirregular border,treated_by,excision,B\n",
            r"^mine\.csv row 2: node 'irregular border' has no type prefix and is a name of type 'border' in KG 'dermatology'",
        ),
        ("melanoma,has_feature,  ,B\n", r"^mine\.csv row 1: expected head,relation,tail"),
    ],
)
def test_refusals_name_the_row(tmp_path, derm, text, message):
    with pytest.raises(KGError, match=message):
        load(write(tmp_path, text), names=derm)


def test_kg_check_accepts_plain_words(tmp_path, capsys):
    from app.cli import main

    p = write(tmp_path, "melanoma,has_feature,irregular border,Bolognia\n")
    assert main(["kg", "check", str(p)]) == 0
    assert f"OK {p}" in capsys.readouterr().out
    bad = write(
        tmp_path, "melanoma,has_feature,irregular border,Bolognia\nmelanoma,causes,itch,B\n", name="bad.csv"
    )
    assert main(["kg", "check", str(bad)]) == 2
    assert "bad.csv row 2: unknown relation 'causes'" in capsys.readouterr().err
