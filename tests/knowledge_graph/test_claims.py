"""Claim extraction and verdicts on hand-written sentences, negation included."""

import pytest

from knowledge_graph.claims import check_text, diagnosis, extract_claims
from knowledge_graph.io import load_builtin


@pytest.fixture(scope="module")
def kg():
    return load_builtin("derm")


def verdicts(text, kg, condition, case=None):
    return {(v.claim.node_id, v.claim.negated): v.verdict for v in check_text(text, kg, condition, case)}


def test_extract_diagnosis_and_findings(kg):
    claims = extract_claims(
        "Asymmetric dark-brown macule with an irregular border. Most likely diagnosis: melanoma.", kg
    )
    assert diagnosis(claims) == "condition:melanoma"
    found = {(c.node_type, c.node_id) for c in claims if c.kind == "finding"}
    assert found == {
        ("shape", "shape:asymmetric"),
        ("colour", "colour:dark_brown"),
        ("morphology", "morphology:macule"),
        ("border", "border:irregular"),
    }
    assert not any(c.negated for c in claims)


@pytest.mark.parametrize(
    "text,node",
    [
        ("There is no scale on the plaque.", "surface:scaly"),
        ("A nodule without ulceration.", "surface:ulcerated"),
        ("Absence of pigment network.", "dermoscopic_feature:pigment_network"),
        ("Ulceration is absent.", "surface:ulcerated"),
        ("Negative for blue-white veil.", "dermoscopic_feature:blue_white_veil"),
        ("The patient denies itching.", "symptom:pruritus"),
    ],
)
def test_negation_cues(kg, text, node):
    claims = extract_claims(text, kg)
    hit = [c for c in claims if c.node_id == node]
    assert hit and hit[0].negated, claims


def test_negation_scope_ends_at_clause(kg):
    claims = extract_claims("No ulceration, but a blue-white veil is visible.", kg)
    neg = {c.node_id: c.negated for c in claims}
    assert neg == {"surface:ulcerated": True, "dermoscopic_feature:blue_white_veil": False}
    claims = extract_claims("Pink papule without scale with arborizing vessels.", kg)
    neg = {c.node_id: c.negated for c in claims}
    assert neg["surface:scaly"] is True and neg["dermoscopic_feature:arborizing_vessels"] is False


def test_verdicts_against_condition(kg):
    v = verdicts(
        "Silvery scale on well-demarcated salmon plaques; no vesicles. Diagnosis: psoriasis.", kg, "psoriasis"
    )
    assert v[("surface:silvery_scale", False)] == "supported"
    assert v[("border:well_defined", False)] == "supported"
    assert (
        v[("morphology:vesicle", True)] == "supported"
    )  # vesicles argue against psoriasis; denying them is right
    assert v[("condition:psoriasis", False)] == "supported"
    v = verdicts("Smooth plaque with no scale, consistent with psoriasis.", kg, "psoriasis")
    assert v[("surface:scaly", True)] == "contradicted"  # scale is typical of psoriasis
    v = verdicts(
        "Stuck-on waxy lesion with milia-like cysts. Diagnosis: seborrheic keratosis.", kg, "melanoma"
    )
    assert v[("surface:stuck_on", False)] == "contradicted"  # argues against melanoma
    assert v[("condition:seborrheic_keratosis", False)] == "contradicted"
    assert v[("dermoscopic_feature:milia_like_cysts", False)] == "contradicted"
    v = verdicts("Honey-coloured crust.", kg, "melanoma")
    assert v[("surface:honey_crust", False)] == "unverifiable"
    v = verdicts("No ulceration.", kg, "melanoma")
    assert v[("surface:ulcerated", True)] == "unverifiable"  # only atypical in melanoma


def test_verdicts_against_case_findings(kg):
    case = {
        "colour": ["colour:dark_brown", "colour:black"],
        "border": ["border:irregular"],
        "surface": ["surface:ulcerated"],
    }
    v = verdicts(
        "Dark brown and blue-grey lesion, irregular border, without ulceration; melanoma.",
        kg,
        "melanoma",
        case,
    )
    assert v[("colour:dark_brown", False)] == "supported"
    assert v[("colour:blue_grey", False)] == "contradicted"  # possible in melanoma, but not in this image
    assert v[("border:irregular", False)] == "supported"
    assert v[("surface:ulcerated", True)] == "contradicted"  # the case is ulcerated
    v = verdicts("No black areas.", kg, "melanoma", {"colour": ["colour:dark_brown"]})
    assert v[("colour:black", True)] == "supported"


def test_answer_tag_and_negated_diagnosis(kg):
    claims = extract_claims(
        "Could be melanoma, but the stuck-on look favours it. <answer>seborrheic keratosis</answer>", kg
    )
    assert diagnosis(claims) == "condition:seborrheic_keratosis"
    v = verdicts("This is not melanoma. Most likely a melanocytic nevus.", kg, "melanoma")
    assert v[("condition:melanoma", True)] == "contradicted"
    assert v[("condition:melanocytic_nevus", False)] == "contradicted"
    claims = extract_claims(
        "Differential includes dermatofibroma and melanoma; most likely melanocytic nevus.", kg
    )
    assert diagnosis(claims) == "condition:melanocytic_nevus"
    v = verdicts(
        "Differential includes dermatofibroma; most likely melanocytic nevus.", kg, "melanocytic nevus"
    )
    assert v[("condition:dermatofibroma", False)] == "supported"  # in the KG differential of nevus


def test_clinical_claims():
    kg = load_builtin("clinical")
    text = (
        "Crushing chest pain with diaphoresis, elevated troponin and ST elevation on ECG; no fever. "
        "Most likely STEMI rather than aortic dissection."
    )
    v = verdicts(text, kg, "condition:stemi")
    assert v[("lab_finding:troponin_high", False)] == "supported"
    assert v[("sign:diaphoresis", False)] == "supported"
    assert v[("symptom:fever", True)] == "unverifiable"
    assert v[("condition:stemi", False)] == "supported"
    assert v[("condition:aortic_dissection", True)] == "supported"  # correctly ruled out
    case = {"history": ["symptom:chest_pain"], "labs": ["lab_finding:troponin_high"]}
    v = verdicts(
        "Chest pain, troponin normal? No: elevated troponin. Negative for ST elevation on ECG.",
        kg,
        "stemi",
        case,
    )
    assert (
        v[("lab_finding:st_elevation", True)] == "supported"
    )  # the case records labs and has no ST elevation
