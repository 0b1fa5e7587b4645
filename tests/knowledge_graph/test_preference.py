"""Response scoring and DPO pair building: ordering, margins, record format."""

import json
from collections import Counter

import pytest

from knowledge_graph.io import load_builtin
from knowledge_graph.preference import abstention_summary, build_pairs, score_response, write_dpo_jsonl

GOOD = (
    "Asymmetric dark brown and black plaque with an irregular border and a blue-white veil; no milia-like cysts. "
    "<answer>melanoma</answer>"
)
OK = "Dark brown lesion. <answer>melanoma</answer>"
HALLU = "Silvery scale and honey-coloured crust with Wickham striae. <answer>melanoma</answer>"
WRONG = "Stuck-on waxy papule with milia-like cysts and comedo-like openings. <answer>seborrheic keratosis</answer>"


@pytest.fixture(scope="module")
def kg():
    return load_builtin("derm")


def test_scores_order(kg):
    s = {
        name: score_response(t, kg, "melanoma")
        for name, t in [("good", GOOD), ("ok", OK), ("hallu", HALLU), ("wrong", WRONG)]
    }
    assert s["good"].correct and s["ok"].correct and s["hallu"].correct and not s["wrong"].correct
    assert s["good"].total > s["ok"].total > s["hallu"].total > s["wrong"].total
    assert s["hallu"].hallucinated == 3 and s["hallu"].contradicted == 0
    assert s["wrong"].contradicted >= 3
    assert 0 < s["ok"].coverage < s["good"].coverage <= 1
    assert s["good"].diagnosis == "condition:melanoma"


def test_case_findings_drive_coverage(kg):
    case = {"colour": ["colour:dark_brown"], "border": ["border:irregular"]}
    full = score_response("Dark brown, irregular border. <answer>melanoma</answer>", kg, "melanoma", case)
    assert full.coverage == 1.0 and full.contradicted == 0
    extra = score_response(
        "Dark brown and black, irregular border. <answer>melanoma</answer>", kg, "melanoma", case
    )
    assert extra.contradicted == 1 and extra.total < full.total  # black is not in this image


def test_pairs_ordering_and_margin(kg, tmp_path):
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Diagnose."}]}]
    responses = [OK, WRONG, GOOD, HALLU, GOOD]
    pairs = build_pairs(prompt, responses, kg, "melanoma", images=["img.png"], min_margin=0.5, max_pairs=None)
    margins = [p["meta"]["margin"] for p in pairs]
    assert margins == sorted(margins, reverse=True) and min(margins) >= 0.5
    first = pairs[0]
    assert first["chosen"] == [{"role": "assistant", "content": GOOD}]
    assert first["rejected"] == [{"role": "assistant", "content": WRONG}]
    assert first["meta"]["chosen_index"] == 2  # ties between identical samples go to the earlier one
    for p in pairs:
        assert p["meta"]["chosen_score"]["total"] - p["meta"]["rejected_score"]["total"] >= 0.5
        assert p["chosen"] != p["rejected"] and p["images"] == ["img.png"] and p["prompt"] == prompt
    assert not any(
        p["meta"]["chosen_index"] in (2, 4) and p["meta"]["rejected_index"] in (2, 4) for p in pairs
    )
    assert len(build_pairs(prompt, responses, kg, "melanoma", max_pairs=2)) == 2
    assert build_pairs("text prompt", [OK, OK], kg, "melanoma") == []
    path = write_dpo_jsonl(pairs, tmp_path / "dpo.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == len(pairs) and set(rows[0]) == {"prompt", "chosen", "rejected", "images", "meta"}
    assert rows[0]["meta"]["chosen_score"]["verdicts"]


def test_string_prompt_gives_string_completions(kg):
    pairs = build_pairs("Describe and diagnose.", [GOOD, WRONG], kg, "melanoma")
    assert pairs[0]["chosen"] == GOOD and pairs[0]["rejected"] == WRONG


def test_only_eligible_responses_are_chosen(kg):
    """A caller's format check: a malformed response never becomes 'chosen', however well its claims score."""
    responses = [GOOD, OK, WRONG]
    every = build_pairs("Diagnose.", responses, kg, "melanoma", min_margin=0.1, max_pairs=None)
    assert {p["meta"]["chosen_index"] for p in every} == {0, 1}
    kept = build_pairs(
        "Diagnose.", responses, kg, "melanoma", min_margin=0.1, max_pairs=None, eligible=[False, True, True]
    )
    assert kept and {p["meta"]["chosen_index"] for p in kept} == {1}
    assert [(p["chosen"], p["rejected"]) for p in kept] == [
        (OK, WRONG)
    ]  # GOOD over OK, GOOD over WRONG are dropped
    assert build_pairs("Diagnose.", responses, kg, "melanoma", eligible=[False, False, True]) == []


# ---- the judge's axes and abstention -------------------------------------------------------------------
@pytest.fixture(scope="module")
def clin():
    return load_builtin("clinical")


def test_groups_are_partial_and_siblings_wrong(clin):
    levels = {
        t: score_response(t, clin, "condition:stemi").axes["diagnosis"]
        for t in ("Inferior STEMI.", "Acute coronary syndrome.", "NSTEMI.", "No diagnosis yet.")
    }
    assert levels == {
        "Inferior STEMI.": "exact",
        "Acute coronary syndrome.": "group",
        "NSTEMI.": "missed",
        "No diagnosis yet.": "none",
    }
    pairs = build_pairs(
        "p",
        ["NSTEMI.", "Acute coronary syndrome.", "Inferior STEMI."],
        clin,
        "condition:stemi",
        max_pairs=None,
    )
    order = {(p["chosen"], p["rejected"]) for p in pairs}
    assert order == {
        ("Acute coronary syndrome.", "NSTEMI."),
        ("Inferior STEMI.", "NSTEMI."),
        ("Inferior STEMI.", "Acute coronary syndrome."),
    }


def test_harmful_management_loses_to_the_right_action_whatever_the_label(clin, kg):
    bleed = [
        score_response(t, clin, "condition:haemorrhagic_stroke")
        for t in ("Haemorrhagic stroke; give thrombolysis.", "Haemorrhagic stroke; lower the blood pressure.")
    ]
    assert bleed[0].axes["management"] == "harmful" and not bleed[0].safe
    pairs = build_pairs(
        "p",
        ["Melanoma; cryotherapy today.", "Melanoma; urgent referral for excision biopsy."],
        kg,
        "melanoma",
    )
    assert (
        pairs
        and pairs[0]["chosen"].startswith("Melanoma; urgent")
        and "management" in pairs[0]["meta"]["decided_by"]
    )


def test_the_judge_abstains_when_it_did_not_understand(clin):
    assert not score_response(
        "PE likely.", clin, "condition:pulmonary_embolism"
    ).abstain  # a cue after it reads it
    unread = score_response("Discussed PE with the team.", clin, "condition:pulmonary_embolism")
    assert unread.abstain and "PE" in unread.abstain  # ambiguous abbreviation with no context
    unknown = score_response("<answer>blue rubber bleb naevus</answer>", clin, "condition:stemi")
    assert unknown.abstain and "does not know" in unknown.abstain
    stats = Counter()
    assert (
        build_pairs(
            "p",
            ["Discussed PE with the team.", "Pneumonia."],
            clin,
            "condition:pulmonary_embolism",
            stats=stats,
        )
        == []
    )
    assert stats["abstained"] == 1 and abstention_summary(stats)["abstention_rate"] == 1.0


def test_disagreeing_on_an_action_the_kg_cannot_judge_abstains(clin):
    """One answer withholds what the other gives: a patient-specific reason (pregnancy, renal failure) may be why."""
    stats = Counter()
    pairs = build_pairs(
        "p",
        ["AKI: stop ramipril; IV fluids.", "AKI: continue ramipril; IV fluids."],
        clin,
        "condition:acute_kidney_injury",
        stats=stats,
    )
    assert all(p["chosen"] != "AKI: continue ramipril; IV fluids." for p in pairs)


def test_a_condition_without_findings_is_not_judged_on_them(kg):
    """A derm condition with a documented no_findings_reason: described findings neither cost nor earn."""
    cond = next(c for c in kg.conditions() if kg.node(c).get("no_findings_reason"))
    s = score_response(f"Silvery scale with Wickham striae. <answer>{kg.label(cond)}</answer>", kg, cond)
    assert s.axes["faithfulness"] == 0 and "not judged" in s.axes["reasons"]["faithfulness"]
    assert all(kg.features(c) or kg.node(c).get("no_findings_reason") for c in kg.conditions())
