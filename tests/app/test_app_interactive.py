"""Stepping through a multi-step case below the UI: the case shows its options and turn limit, answers what is
asked, ends on an answer, scores a turn only when it is exactly one action, and only case-trained runs play it, on
exactly the text Tree-GRPO trains on."""

import re
from html import unescape
from types import SimpleNamespace

import gradio as gr
import pytest

from app import interactive, tab_case
from app.context import error_text, user_errors
from knowledge_graph.disclaimer import DISCLAIMER
from training.rollout.env import OBSERVATION


def visible(fragment: str) -> str:
    """The text a browser shows for an HTML fragment (tags dropped, entities read)."""
    return unescape(re.sub(r"<[^>]+>", "", fragment))


def clinical_key() -> str:
    return next(
        k
        for _, k in interactive.sample_choices()
        if interactive.samples()[int(k) - 1]["meta"]["case"].get("dermoscopy") is None
    )


class GarbledService:
    """Stands in for the inference service: the 'model' writes a fixed text, as a barely trained model might."""

    def __init__(self, text: str):
        self.text = text
        self.calls: list[dict] = []

    def generate(self, run_id, stage, messages, **kwargs):
        self.calls.append({"run": run_id, "stage": stage, **kwargs})
        return SimpleNamespace(text=self.text)


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
    assert s.info["invalid"] == 1 and s.turns[-2]["scored"] is False
    assert "question(s) asked so far" in interactive.outcome(s)
    gold = s.record["answer"]
    interactive.act(s, f"<answer>{gold}</answer>", "clinician")
    assert s.done and s.info["correct"] is True
    text = interactive.outcome(s)
    assert text.startswith("**Correct.**") and f"The case's answer: {gold})" in text and DISCLAIMER in text
    with pytest.raises(ValueError, match="the case is over"):
        interactive.act(s, "<ask>exam</ask>", "clinician")


def test_the_options_and_the_turn_limit_are_shown():
    s = interactive.start(clinical_key())
    options = s.record["meta"]["options"]
    assert s.options == sorted(options.items()) and len(s.options) >= 2
    assert s.max_turns == 4
    shown = visible(tab_case.transcript_html(s))
    assert "Turn limit: 4" in shown and "Turns used: 0 of 4" in shown
    for letter, label in options.items():
        assert f"{letter}) {label}" in shown
    assert "Turns used: 0 of 4" in interactive.outcome(s)
    interactive.act(s, "<ask>exam</ask>", "clinician")
    assert "Turns used: 1 of 4" in visible(tab_case.transcript_html(s))
    assert interactive.outcome(s).startswith("Turns used: 1 of 4. 1 question(s) asked so far")


@pytest.mark.parametrize(
    "garbled",
    [
        "Which number is larger <answer>{gold}</answer>",  # an answer wrapped in prose
        "<answer>{gold} or maybe {other}</answer>",  # hedged between two options
        "<answer>{gold}) not its label</answer>",  # a letter with some other condition's name
        "<answer>{gold}</answer><ask>exam</ask>",  # two actions in one turn
        "<answer>Z</answer>",  # not an option
        "20Fitzpatrick<ask>hist",  # no action at all (what the embedded model writes)
    ],
)
def test_a_garbled_turn_is_not_scored(garbled):
    s = interactive.start(clinical_key())
    gold = s.record["answer"]
    other = next(k for k in s.record["meta"]["options"] if k != gold)
    service = GarbledService(garbled.format(gold=gold, other=other))
    interactive.model_turn(s, service, "demo/cases", "final", max_new_tokens=16)
    assert service.calls[0]["max_new_tokens"] == 16 and service.calls[0]["stop_strings"] == [
        "</ask>",
        "</answer>",
    ]
    turn = next(t for t in s.turns if t["who"] == "model")
    assert turn["scored"] is False and turn["text"] == service.text
    assert not s.done and not s.info["correct"] and s.info["reward"] == 0.0
    text = interactive.outcome(s)
    assert text.startswith(f"Last turn: {interactive.UNREADABLE}.") and "Correct" not in text
    assert "1 unreadable turn(s) (not scored)" in text
    assert interactive.UNREADABLE in visible(tab_case.transcript_html(s))


def test_only_a_whole_action_is_scored_and_garbage_runs_out_the_turns():
    s = interactive.start(clinical_key())
    gold, options = s.record["answer"], s.record["meta"]["options"]
    for answer in (
        gold,
        f"({gold})",
        f"{gold}.",
        f"\\boxed{{{gold}}}",
        f"{gold}) {options[gold]}",
        options[gold].upper(),
        f"  {gold}  ",
    ):
        assert interactive.read_action(f" <answer>{answer}</answer>\n", s) == f"<answer>{gold}</answer>", (
            answer
        )
    assert interactive.read_action("<ask>labs: troponin</ask>", s) == "<ask>labs: troponin</ask>"
    assert interactive.read_action("<ask>dermoscopy</ask>", s) is None  # a clinical case has no dermoscopy
    for _ in range(s.max_turns):
        interactive.model_turn(s, GarbledService(f"noise <answer>{gold}</answer>"), "demo/cases", "final")
    assert s.done and not s.info["answered"] and s.unreadable == 4
    text = interactive.outcome(s)
    assert text.startswith("**No answer** before the turn limit (4 turns).") and "reward +0.00" in text
    assert "Turns used: 4 of 4" in text
    with pytest.raises(ValueError, match="the case is over"):
        interactive.model_turn(s, GarbledService("<ask>exam</ask>"), "demo/cases", "final")


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


def test_the_error_message_keeps_its_examples():
    """Gradio renders an error as HTML: the examples in angle brackets must arrive escaped, or they vanish."""
    s = interactive.start(clinical_key())
    with pytest.raises(ValueError) as err:
        interactive.act(s, "", "clinician")
    message = str(err.value)
    assert message == (
        "type an action, e.g. <ask>history</ask>, <ask>exam</ask>, <ask>labs: CRP</ask> or <answer>B</answer>"
    )
    shown = error_text(err.value)
    assert "<" not in shown and "&lt;ask&gt;history&lt;/ask&gt;" in shown and unescape(shown) == message

    @user_errors
    def send():
        interactive.act(s, " ", "clinician")

    with pytest.raises(gr.Error) as raised:
        send()
    assert raised.value.message == shown


@pytest.mark.parametrize(
    "cfg,trained",
    [
        ({"trainer": "rl", "rollout": {"strategy": "tree", "env": "clinical_case"}}, True),
        ({"trainer": "rl", "rollout": {"strategy": "group", "env": "clinical_case"}}, True),
        ({"trainer": "rl", "rollout": {"strategy": "group"}}, False),
        ({"trainer": "rl", "rollout": {"strategy": "tree", "env": "search"}}, False),
        ({"trainer": "sft", "data": {"train": "runs/demo_data/cases-sft.jsonl"}}, False),
        ({}, False),
    ],
)
def test_what_counts_as_a_case_trained_run(cfg, trained):
    assert interactive.case_trained(cfg) is trained


def test_runs_not_trained_for_cases_are_not_offered(app_ctx):
    assert app_ctx.reader.run_ids()  # there are runs, none trained on cases
    choices, note = tab_case.model_choices(app_ctx)
    assert choices == [] and note == interactive.NO_CASE_RUNS and "trained on multi-step cases" in note
    s = interactive.start(clinical_key())
    with pytest.raises(ValueError, match="demo/lm was not trained on multi-step cases"):
        tab_case.play_model_turn(app_ctx, s, "demo/lm@final")
    assert interactive.turn_tokens({"rollout": {"max_new_tokens": 16}}) == 16
    assert tab_case.turn_budget(app_ctx, {"rollout": {"max_new_tokens": 16}}) == 8  # the app's cap (8 here)


def test_a_runs_model_takes_a_turn_from_where_the_case_is(app_ctx):
    s = interactive.start(clinical_key())
    interactive.act(s, "<ask>exam</ask>", "clinician")
    before = s.transcript
    interactive.model_turn(s, app_ctx.service, "demo/lm", "final", max_new_tokens=6)
    model = [t for t in s.turns if t["who"] == "model"]
    assert len(model) == 1 and model[0]["text"]
    assert s.transcript.startswith(before + model[0]["text"])  # the model continued the same assistant turn
    assert s.info["turns"] == 2
