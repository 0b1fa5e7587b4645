"""What sits around an answer, without a browser or a model: prompts built from a run's task card, the flags, the
model's record, letter answers and keys the KG check can read."""

import json
from types import SimpleNamespace

from app.answer_view import answer_flags, record_card
from app.kgcheck import check, condition_in
from app.tab_clinical import parse_options, readable
from clinical import task as clinical_task
from clinical.prompts import SYSTEM
from dermiq import task as derm_task
from dermiq.prompts import build_prompt, labels_of
from training.run.rundir import RunDir

SIX = ["dermatitis", "melanoma", "psoriasis", "seborrheic keratosis", "vascular lesion", "vitiligo"]


def gen(text="", answer="", new=8, budget=8, finished=False):
    return SimpleNamespace(
        text=text,
        answer=answer,
        new_tokens=new,
        max_new_tokens=budget,
        truncated=not finished,
        reasoning="",
        run_id="r",
        stage="final",
        seconds=0.1,
        load_seconds=0.0,
    )


def test_dermiq_prompt_comes_from_the_card_labels_not_the_kg():
    card = {"prompt": build_prompt(SIX), "max_new_tokens": 120}
    msgs = derm_task.messages(card, 1, fallback_labels=["a", "b", "c"])
    assert labels_of(msgs) == SIX and msgs == build_prompt(SIX)
    assert derm_task.max_new_tokens(card) == 120 and derm_task.max_new_tokens(None) == 160
    other = {
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    }
    assert derm_task.messages(other, 2)[0]["content"] == [
        {"type": "image"},
        {"type": "image"},
        {"type": "text", "text": "Describe."},
    ]
    assert labels_of(derm_task.messages(None, 1, fallback_labels=["x", "y"])) == ["x", "y"]


def test_clinical_prompt_keeps_the_trained_system_turn_and_layout():
    card = {
        "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "c\n\nOptions:\nA) x"}]
    }
    msgs = clinical_task.messages(card, "A case.", {"A": "x", "B": "y"})
    assert msgs[0] == {"role": "system", "content": SYSTEM} and "Options:\nA) x\nB) y" in msgs[1]["content"]
    free = clinical_task.messages(card, "A case. Diagnosis and first steps?", None)
    assert "no options" in free[1]["content"] and "\\boxed{}" in free[1]["content"]
    bare = {"prompt": [{"role": "user", "content": "stem\nA) x\nB) y"}]}  # an SFT run on the bare layout
    assert clinical_task.messages(bare, "stem", {"A": "x", "B": "y"}) == [
        {"role": "user", "content": "stem\nA) x\nB) y"}
    ]
    assert parse_options("") == {}  # no options: a free-text question, not an error


def test_flags_say_cut_off_empty_off_label():
    flags = answer_flags(gen("<think>Colour", ""), well_formed=False, answer_ok=None, trained_tokens=160)
    assert [f.kind for f in flags] == ["cut", "format"] and "all 8 new tokens" in flags[0].text
    assert [f.kind for f in answer_flags(gen("", "", finished=True), None, None, 160)] == ["empty"]
    off = answer_flags(
        gen("<answer>lichen planus</answer>", "lichen planus", finished=True), True, False, 160, SIX
    )
    assert [f.kind for f in off] == ["label"] and "6: dermatitis" in off[0].text
    assert (
        answer_flags(gen("<answer>melanoma</answer>", "melanoma", finished=True), True, True, 160, SIX) == []
    )


def test_record_card_shows_held_out_measures_and_must_not_miss_recall(tmp_path):
    from dermiq.rewards import resolve_answer
    from knowledge_graph.io import load_builtin

    run = tmp_path / "dpo"
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text("trainer: dpo\nmodel: {name: 'embedded:qwen25vl'}\n")
    (run / "eval" / "metrics.json").write_text(
        json.dumps(
            {
                "n": 36,
                "accuracy": 0.83,
                "balanced_accuracy": 0.81,
                "data": "test.jsonl",
                "per_class_recall": {"melanoma": 0.33, "psoriasis": 1.0},
            }
        )
    )
    card = {
        "base_model": "embedded:qwen25vl",
        "trained_on": [{"trainer": "sft", "run": "sft", "data": "s.jsonl", "records": 96}],
    }
    html = record_card(RunDir(run), card, load_builtin("derm"), resolve_answer)
    assert "no medical skill" in html and "0.810" in html and "s.jsonl" in html
    mel = html[html.index("<td>melanoma") :].split("</tr>")[0]
    assert "must not miss" in mel and 'class="medrl-sens"' in mel  # a must-not-miss class missed 2 in 3: red
    pso = html[html.index("<td>psoriasis") :].split("</tr>")[0]
    assert "must not miss" not in pso
    assert "No held-out evaluation" in record_card(RunDir(tmp_path / "none"), None)


def test_letter_answers_and_text_keys_are_read(tmp_path):
    from knowledge_graph.io import load_builtin

    kg = load_builtin("clinical")
    options = {"A": "Acute pericarditis", "B": "Inferior STEMI"}
    assert condition_in("inferior STEMI", kg) == "condition:stemi"  # a key written as text, not a node label
    res = check(
        readable("<think>ST up</think><answer>\\boxed{A}</answer>", options),
        kg,
        condition_in(options["B"], kg),
        "key",
    )
    assert res.diagnosis == "condition:pericarditis"  # the letter read as its option
    assert [c.verdict for c in res.claims if c.kind == "diagnosis"] == ["contradicted"]


def test_samples_are_rendered_at_the_side_the_run_trained_on(tmp_path):
    from app.context import AppContext
    from app.tab_derm import SAMPLE_SIDE, sample

    ctx = AppContext(tmp_path / "runs", scratch=tmp_path / "scratch")
    shown, meta = sample(ctx, "condition:melanoma/0")
    asked, same = sample(ctx, "condition:melanoma/0", 112)  # a card's image_side
    assert max(shown.size) == SAMPLE_SIDE and max(asked.size) == 112 and meta == same
