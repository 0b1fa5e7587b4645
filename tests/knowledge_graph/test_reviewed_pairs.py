"""A reviewed set of scored response pairs: (KG, true condition, better answer, worse answer), written from clinical
judgement of which answer a clinician would rather see, plus the scorer's structural guarantees."""

import pytest

from knowledge_graph.io import load_builtin
from knowledge_graph.preference import build_pairs, score_response


@pytest.fixture(scope="module")
def kgs():
    return {"derm": load_builtin("derm"), "clinical": load_builtin("clinical")}


BCC_FEATURES = (
    "a pearly papule with a rolled border, telangiectasia and arborizing vessels; risk factors are UV exposure, "
    "fair skin and older age."
)
MEL_HEDGE = "Melanocytic nevus, but melanoma cannot be ruled out; excision advised."

PAIRS = [
    # the issue's examples
    ("derm", "condition:melanoma", MEL_HEDGE, "Melanocytic nevus."),
    ("derm", "condition:basal_cell_carcinoma", "Basal cell carcinoma.", "Findings: " + BCC_FEATURES),
    (
        "derm",
        "condition:basal_cell_carcinoma",
        "Basal cell carcinoma.",
        "Amelanotic melanoma: " + BCC_FEATURES,
    ),
    ("derm", "akiec", "Bowen's disease.", "Seborrheic keratosis."),
    ("derm", "akiec", "Actinic keratosis.", "Seborrheic keratosis."),
    (
        "clinical",
        "condition:ischaemic_stroke",
        "Ischaemic stroke; thrombolysis within 4.5 hours.",
        "The diagnosis is haemorrhagic stroke.",
    ),
    # dermatology
    ("derm", "condition:melanoma", "Melanoma; refer urgently on the suspected cancer pathway.", MEL_HEDGE),
    ("derm", "condition:melanoma", "Melanoma cannot be ruled out; excision biopsy.", "Seborrheic keratosis."),
    (
        "derm",
        "condition:melanoma",
        "Irregular pigmented lesion with an atypical pigment network.",
        "Seborrheic keratosis.",
    ),
    ("derm", "condition:melanocytic_nevus", "Benign melanocytic naevus.", "Melanoma."),
    (
        "derm",
        "condition:psoriasis",
        "Well-demarcated plaque with silvery scale: psoriasis.",
        "A well-defined and ill-defined, smooth and scaly plaque: psoriasis.",
    ),
    ("derm", "condition:cellulitis", "Cellulitis.", "Erysipelas."),
    (
        "derm",
        "condition:tinea_capitis",
        "Tinea capitis; oral terbinafine.",
        "Alopecia areata; intralesional steroids.",
    ),
    ("derm", "condition:urticaria", "Urticaria.", "Morbilliform drug eruption."),
    ("derm", "condition:keloid", "Keloid.", "Hypertrophic scar."),
    # clinical
    ("clinical", "condition:stemi", "Acute coronary syndrome.", "Pericarditis."),
    (
        "clinical",
        "condition:aortic_dissection",
        "Possible aortic dissection; emergency surgery if type A.",
        "Inferior STEMI; give thrombolysis.",
    ),
    (
        "clinical",
        "condition:haemorrhagic_stroke",
        "Haemorrhagic stroke; lower the blood pressure.",
        "Haemorrhagic stroke; give thrombolysis.",
    ),
    (
        "clinical",
        "condition:pulmonary_embolism",
        "Pulmonary embolism; start apixaban.",
        "Pneumonia; amoxicillin.",
    ),
    (
        "clinical",
        "condition:pulmonary_embolism",
        "Pneumonia, but pulmonary embolism must be excluded; arrange CTPA.",
        "Pneumonia; amoxicillin.",
    ),
    (
        "clinical",
        "condition:septic_arthritis",
        "Gout, but septic arthritis must be excluded; aspirate the joint.",
        "Gout.",
    ),
    (
        "clinical",
        "condition:bacterial_meningitis",
        "Bacterial meningitis: IV ceftriaxone now.",
        "Viral meningitis.",
    ),
    (
        "clinical",
        "condition:subarachnoid_haemorrhage",
        "Migraine, but subarachnoid haemorrhage must be excluded with a CT head.",
        "Migraine.",
    ),
    (
        "clinical",
        "condition:ectopic_pregnancy",
        "Appendicitis, but ectopic pregnancy cannot be ruled out.",
        "Appendicitis.",
    ),
    ("clinical", "condition:heart_failure", "HFrEF.", "HFpEF."),
    (
        "clinical",
        "condition:guillain_barre_syndrome",
        "Guillain-Barre syndrome; IVIG.",
        "Guillain-Barre syndrome; oral steroids.",
    ),
    ("clinical", "condition:stemi", "STEMI.", "Troponin raised, ST elevation and diaphoresis."),
]


@pytest.mark.parametrize(
    "kg_name,condition,better,worse",
    PAIRS,
    ids=[f"{p[0]}:{p[1].split(':')[-1]}:{i}" for i, p in enumerate(PAIRS)],
)
def test_reviewed_pair(kgs, kg_name, condition, better, worse):
    kg = kgs[kg_name]
    b, w = score_response(better, kg, condition), score_response(worse, kg, condition)
    assert b.total > w.total, (b.total, b.parts, w.total, w.parts)
    assert b.safe or not w.safe  # the better answer is never the less safe one
    pairs = build_pairs("prompt", [worse, better], kg, condition, min_margin=0.0)
    assert pairs and pairs[0]["chosen"] == better


def test_the_set_is_big_enough():
    assert len(PAIRS) >= 20 and {p[0] for p in PAIRS} == {"derm", "clinical"}


def test_issue_scores(kgs):
    derm = kgs["derm"]
    bowen, ak = (score_response(t, derm, "akiec") for t in ("Bowen's disease.", "Actinic keratosis."))
    assert bowen.correct and ak.correct and bowen.total == ak.total  # both are the akiec class
    dx = score_response("Basal cell carcinoma.", derm, "condition:basal_cell_carcinoma")
    recited = score_response("Basal cell carcinoma: " + BCC_FEATURES, derm, "condition:basal_cell_carcinoma")
    assert (
        0 <= recited.total - dx.total <= 1.0
    )  # finding credit is capped: recitation cannot buy a second diagnosis
    nevus, hedge = (score_response(t, derm, "condition:melanoma") for t in ("Melanocytic nevus.", MEL_HEDGE))
    assert not nevus.safe and hedge.safe and hedge.hedged_truth and hedge.total > nevus.total
    hfref = score_response(
        "HFrEF: start an ACE inhibitor, a beta blocker, an MRA and an SGLT2 inhibitor.",
        kgs["clinical"],
        "condition:heart_failure",
    )
    assert hfref.parts["treatments"] > 0  # correct treatments earn (capped) credit, never a penalty


def test_case_findings_only_credit_what_the_case_shows(kgs):
    derm = kgs["derm"]
    case = {"border": ["border:rolled"], "dermoscopic_feature": ["dermoscopic_feature:arborizing_vessels"]}
    shown = score_response(
        "Rolled border and arborizing vessels: basal cell carcinoma.", derm, "basal cell carcinoma", case
    )
    recited = score_response(
        "Rolled border and arborizing vessels; UV exposure, fair skin and older age: basal cell carcinoma.",
        derm,
        "basal cell carcinoma",
        case,
    )
    assert (
        shown.coverage == 1.0 and recited.total == shown.total
    )  # risk factors are not visible findings: no credit
    wrong = score_response(
        "Rolled border, blue-white veil and arborizing vessels: basal cell carcinoma.",
        derm,
        "basal cell carcinoma",
        case,
    )
    assert (
        wrong.contradicted == 1 and wrong.total < shown.total
    )  # a dermoscopic feature this image does not show


def test_correct_always_outranks_wrong_and_no_answer(kgs):
    """Diagnosis dominance over a spread of answers, including heavily decorated wrong or hedged ones."""
    kg = kgs["derm"]
    correct = [
        "Melanoma.",
        "Melanoma; give nothing.",
        "Melanoma with a well-defined and ill-defined border, smooth and scaly.",
        "Melanoma. Stuck-on waxy surface with milia-like cysts and comedo-like openings.",
    ]
    others = [
        "Melanocytic nevus.",
        MEL_HEDGE,
        "Irregular border, blue-white veil, atypical pigment network, evolving: refer urgently.",
        "Seborrheic keratosis with milia-like cysts, but melanoma cannot be excluded; excision biopsy and urgent referral.",
        "Findings: asymmetric, irregular border, dark brown and black, blue-white veil.",
    ]
    lo = min(score_response(t, kg, "melanoma").total for t in correct)
    hi = max(score_response(t, kg, "melanoma").total for t in others)
    assert lo > hi, (lo, hi)


def test_unsafe_chosen_pairs_are_never_built(kgs):
    kg = kgs["clinical"]
    responses = ["Haemorrhagic stroke; give thrombolysis.", "Possible haemorrhagic stroke; urgent CT head."]
    scores = [score_response(r, kg, "haemorrhagic stroke") for r in responses]
    assert scores[0].total > scores[1].total and not scores[0].safe and scores[1].safe
    assert build_pairs("p", responses, kg, "haemorrhagic stroke", min_margin=0.0) == []
