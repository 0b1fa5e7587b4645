"""The multi-step case environment: actions reveal the KG findings, errors are fixed, turns are capped, rewards."""

from __future__ import annotations

import copy

from clinical.cases import (
    INVALID,
    case_correct,
    case_questions,
    case_valid,
    demonstration,
    format_credit,
    make_case_records,
    parse_action,
    score_transcript,
)
from training.rollout.env import OBSERVATION, Environment, make_env, split_turns


def _records():
    recs = make_case_records(8, seed=3, derm_fraction=0.25)
    clinical = next(r for r in recs if r["meta"]["case"]["kind"] == "clinical" and r["meta"]["case"]["labs"])
    derm = next(r for r in recs if r["meta"]["case"]["kind"] == "dermatology")
    return recs, clinical, derm


def test_records_are_seeded_and_mixed():
    recs, _, _ = _records()
    assert recs == make_case_records(8, seed=3, derm_fraction=0.25)
    kinds = [r["meta"]["case"]["kind"] for r in recs]
    assert kinds.count("dermatology") == 2 and kinds.count("clinical") == 6
    for r in recs:
        assert r["answer"] in r["meta"]["options"] and len(r["meta"]["options"]) == 5
        assert "<answer>LETTER</answer>" in r["prompt"][0]["content"]


def test_clinical_episode_reveals_findings_and_scores():
    _, rec, _ = _records()
    env = make_env("clinical_case", ["clinical.cases"], max_turns=5, question_cost=0.1)
    assert isinstance(env, Environment)
    case = rec["meta"]["case"]
    assert env.reset(rec) == f"Presenting complaint: {case['complaint']}"
    obs, done, info = env.step("I will ask. <ask>history</ask>")
    assert obs == f"History: {', '.join(case['history'])}." and not done and info["questions"] == 1
    obs, done, _ = env.step("<ask>exam</ask>")
    assert obs.startswith("Examination: ") and all(x in obs for x in case["exam"])
    lab_id, lab_text = case["labs"][0]
    name = lab_id.split(":")[1].split("_")[0]
    obs, _, _ = env.step(f"<ask>labs: {name}</ask>")
    assert lab_text in obs
    obs, _, _ = env.step("<ask>labs: zzzqqq</ask>")
    assert obs == "zzzqqq: no abnormality reported."
    obs, done, info = env.step(f"<answer>{rec['answer']}) whatever</answer>")
    assert done and info == {
        "turns": 5,
        "questions": 4,
        "invalid": 0,
        "answered": True,
        "correct": True,
        "reward": 1.0 - 0.4,
    }


def test_invalid_actions_turn_limit_and_branch_copies():
    _, rec, derm = _records()
    env = make_env("clinical_case", ["clinical.cases"], max_turns=2)
    env.reset(rec)
    assert env.step("<ask>dermoscopy</ask>") == (INVALID, False, env._info(False, False))  # not a derm case
    twin = copy.deepcopy(env)
    obs, done, info = env.step("hello")
    assert obs == INVALID and done and info["answered"] is False and info["invalid"] == 2
    assert (
        twin.turns == 1 and twin.step("<answer>Z</answer>")[2]["correct"] is False
    )  # copies are independent
    env.reset(derm)
    obs, _, _ = env.step("<ask>dermoscopy</ask>")
    assert obs.startswith("Dermoscopy: ") and all(x in obs for x in derm["meta"]["case"]["dermoscopy"])


def test_parse_action_forms():
    assert parse_action("<answer>C</answer><ask>exam</ask>").kind == "answer"
    assert parse_action("<ask>labs</ask>").kind == "invalid"  # a lab needs a name
    assert parse_action("<ask> Exam </ask>").kind == "exam"
    assert parse_action("<ask>labs: troponin</ask>").arg == "troponin"


def test_rewards_score_transcripts_like_the_env():
    recs, rec, _ = _records()
    good = demonstration(rec, OBSERVATION)
    assert split_turns(good) == ["<ask>history</ask>", "<ask>exam</ask>", f"<answer>{rec['answer']}</answer>"]
    wrong = (
        "blah"
        + OBSERVATION.format(INVALID)
        + "<answer>"
        + ("A" if rec["answer"] != "A" else "B")
        + "</answer>"
    )
    kw = {"answer": [rec["answer"]] * 2, "meta": [rec["meta"]] * 2}
    assert case_correct(None, [good, wrong], **kw) == [1.0, 0.0]
    assert case_questions(None, [good, wrong], **kw) == [2.0, 0.0]
    assert case_valid(None, [good, wrong], **kw) == [1.0, 0.5]
    assert (
        format_credit("so <ask>hist") == 0.5 * 9 / 18
        and format_credit("x < y") == 0.5 / 8
        and format_credit("xyz") == 0
    )
    assert score_transcript(good, rec["answer"], rec["meta"]["options"])["answered"]
