"""The app's CRPO breakdown: the same reading as the rewards, with the parts a clinician needs to see why."""

from app.crpo import breakdown

CASE = "A 30-year-old man presents with fever and productive cough. On examination: crackles."
OPTIONS = {"A": "pneumonia", "B": "asthma", "C": "pulmonary embolism"}


def test_ruling_out_its_own_answer_shows_and_zeroes_rejection():
    text = (
        "<think>\nFever, cough and crackles.\nA) less likely: no fit.\nB) less likely: no wheeze.\n"
        "C) less likely: no fit.\nSo the answer is A).\n</think>\n<answer>\nFever points to A). \\boxed{A}\n</answer>"
    )
    b = breakdown(CASE, OPTIONS, text, "A")
    assert b["self_rejected"] and b["rejected"] == ["B", "C"]
    assert b["comprehensiveness_parts"]["rejection"] == 0.0 and b["faithfulness_parts"]["consistency"] == 1.0
    fixed = breakdown(CASE, OPTIONS, text.replace("A) less likely: no fit.\n", ""), "A")
    assert not fixed["self_rejected"] and fixed["comprehensiveness_parts"]["rejection"] == 1.0
