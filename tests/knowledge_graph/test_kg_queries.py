"""Curated KG coverage and the queries: canonical names, features, differential, paths, ranking."""

import pytest

from knowledge_graph.io import load_builtin
from knowledge_graph.schema import RELATIONS


@pytest.fixture(scope="module")
def derm():
    return load_builtin("derm")


@pytest.fixture(scope="module")
def clin():
    return load_builtin("clinical")


def test_derm_coverage(derm):
    assert len(derm.conditions()) >= 40
    ham = {
        "akiec": "actinic keratosis or Bowen's disease (akiec)",
        "bcc": "basal cell carcinoma",
        "bkl": "benign keratosis-like lesion",
        "df": "dermatofibroma",
        "mel": "melanoma",
        "nv": "melanocytic nevus",
        "vasc": "vascular lesion",
    }
    for code, label in ham.items():
        assert derm.canonical_label(code) == label
        assert derm.canonical_label(code.upper()) == label
    for name in [
        "actinic keratosis",
        "basal cell carcinoma",
        "dermatitis",
        "lichen planus",
        "melanoma",
        "psoriasis",
        "rosacea",
        "seborrheic keratosis",
    ]:
        assert derm.type(derm.canonical(name)) == "condition"
    dermnet = [n for n in derm.nodes("dataset_label") if derm.node(n).get("dataset") == "DermNet"]
    assert len(dermnet) == 23
    assert derm.canonical_label("Psoriasis pictures Lichen Planus and related diseases").startswith(
        "DermNet group"
    )
    group = derm.canonical("Psoriasis pictures Lichen Planus and related diseases")
    assert {"condition:psoriasis", "condition:lichen_planus"} <= set(derm.members(group))
    assert derm.canonical_label("nevocytic nevus") == "melanocytic nevus"  # Fitzpatrick17k label
    assert derm.canonical_label("seborrhoeic keratosis") == "seborrheic keratosis"


def test_every_edge_has_a_real_source(derm, clin):
    for kg in (derm, clin):
        for h, r, t, a in kg.edges():
            assert r in RELATIONS
            assert a["source"] and not a["source"].endswith(".json"), (h, r, t)


def test_clinical_coverage(clin):
    conds = clin.conditions()
    assert len(conds) >= 40
    assert len({c for cond in conds for c in clin.categories(cond)}) >= 8  # specialties
    for cond in conds:
        types = {f.type for f in clin.features(cond)}
        assert {"symptom", "risk_factor"} <= types, cond
        assert types & {"lab_finding", "imaging_finding"}, cond
        assert clin.treatments(cond, line="first"), cond
        assert clin.differential(cond), cond
    trop = clin.node("lab_finding:troponin_high")
    assert trop["direction"] == "high" and "ng/mL" in trop["value"]


def test_features_by_type_and_typicality(derm):
    colours = derm.feature_ids("melanoma", types="colour", typicality="typical")
    assert {"colour:dark_brown", "colour:black"} <= colours
    assert "colour:blue_grey" not in colours
    assert "colour:blue_grey" in derm.feature_ids("melanoma", types="colour", typicality="possible")
    assert derm.typicality_of("condition:melanoma", "surface:ulcerated") == "atypical"
    assert derm.typicality_of("condition:melanoma", "dermoscopic_feature:milia_like_cysts") == "absent"
    assert derm.typicality_of("condition:melanoma", "surface:silvery_scale") is None
    sites = derm.features("psoriasis", types="body_site")
    assert "body_site:elbows_knees" in {f.id for f in sites}
    assert all(f.source for f in sites)


def test_differential_is_symmetric(derm):
    assert "condition:seborrheic_keratosis" in derm.differential("melanoma")
    assert "condition:melanoma" in derm.differential("seborrheic keratosis")
    assert "condition:psoriasis" not in derm.differential("melanoma")


def test_explain_path(derm):
    steps = derm.explain_path("melanoma", "blue-white veil")
    assert [(s.head, s.relation, s.tail) for s in steps] == [
        ("condition:melanoma", "has_feature", "dermoscopic_feature:blue_white_veil")
    ]
    two = derm.explain_path("psoriasis", "Wickham striae")
    assert len(two) == 2 and two[-1].tail == "dermoscopic_feature:wickham_striae"
    assert "lichen planus" in derm.explain_text("psoriasis", "Wickham striae")


def test_rank_findings(derm, clin):
    ranked = derm.rank(["blue-white veil", "irregular border", "dark brown", "asymmetric"])
    assert ranked[0][0] == "condition:melanoma"
    ranked = derm.rank(["silvery scale", "well-demarcated", "elbows"])
    assert ranked[0][0] == "condition:psoriasis"
    # a denied typical finding pushes psoriasis below lichen planus
    lp = derm.rank(
        ["violaceous", "polygonal", "pruritus"],
        absent=["silvery scale"],
        candidates=["condition:psoriasis", "condition:lichen_planus"],
    )
    assert lp[0][0] == "condition:lichen_planus"
    ranked = clin.rank(["elevated troponin", "ST elevation on ECG", "chest pain"])
    assert ranked[0][0] == "condition:stemi"
