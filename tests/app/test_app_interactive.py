"""Stepping through a multi-step case below the UI: the case answers what is asked, ends on an answer, and a run's
model takes turns on exactly the text Tree-GRPO trains on."""

import pytest

from app import interactive
from training.env import OBSERVATION
from training.run import DISCLAIMER


def clinical_key() -> str:
    return next(k for _, k in interactive.sample_choices()
                if interactive.samples()[int(k) - 1]["meta"]["case"].get("dermoscopy") is None)


def test_the_case_reveals_what_is_asked_and_ends_on_the_answer():
    s = interactive.start(clinical_key())
    case = s.record["meta"]["case"]
    assert s.turns == [{"who": "case", "text": f"Presenting complaint: {case['complaint']}"}]
    assert s.messages[-1]["content"].endswith(f"\n\nPresenting complaint: {case['complaint']}")
    interactive.act(s, "<ask>history</ask>", "clinician")
    history = s.turns[-1]["text"]
    assert s.turns[-1]["who"] == "case" and history.startswith("History:")
    assert s.transcript == "<ask>history</ask>" + OBSERVATION.format(history)
    assert not s.done and s.info["questions"] == 1
    interactive.act(s, "<ask>what is this</ask>", "clinician")
    assert s.info["invalid"] == 1
    assert "question(s) asked so far" in interactive.outcome(s)
    gold = s.record["answer"]
    interactive.act(s, f"<answer>{gold}</answer>", "clinician")
    assert s.done and s.info["correct"] is True
    text = interactive.outcome(s)
    assert text.startswith("**Correct.**") and f"The case's answer: {gold})" in text and DISCLAIMER in text
    with pytest.raises(ValueError, match="the case is over"):
        interactive.act(s, "<ask>exam</ask>", "clinician")


def test_a_wrong_answer_and_bad_actions():
    s = interactive.start(clinical_key())
    wrong = next(k for k in s.record["meta"]["options"] if k != s.record["answer"])
    with pytest.raises(ValueError, match="type an action"):
        interactive.act(s, "   ", "clinician")
    with pytest.raises(ValueError, match="at most 300 characters"):
        interactive.act(s, "x" * 301, "clinician")
    interactive.act(s, f"<answer>{wrong}</answer>", "clinician")
    assert s.done and interactive.outcome(s).startswith("**Not correct.**")
    with pytest.raises(ValueError, match="choose a case"):
        interactive.start("99")


def test_a_runs_model_takes_a_turn_from_where_the_case_is(app_ctx):
    s = interactive.start(clinical_key())
    interactive.act(s, "<ask>exam</ask>", "clinician")
    before = s.transcript
    interactive.model_turn(s, app_ctx.service, "demo/lm", "final", max_new_tokens=6)
    model = [t for t in s.turns if t["who"] == "model"]
    assert len(model) == 1 and model[0]["text"]
    assert s.transcript.startswith(before + model[0]["text"])  # the model continued the same assistant turn
    assert s.info["turns"] == 2
