"""DermIQ rewards on hand-written responses, against values worked out by hand.

derm_format = 0.5 (tags) + 0.1 x headings with text + 0.1 (answer written as a listed label);
derm_kg_consistency = (supported - contradicted) / findings, judged against the answered condition.
"""

from __future__ import annotations

import time

import pytest

from dermiq.prompts import build_prompt
from dermiq.rewards import (
    accuracy,
    consistency_parts,
    format_reward,
    kg,
    kg_consistency,
    resolve_answer,
    truth_set,
    use_kg,
)
from training.objectives.rewards import resolve, score

LABELS = ["melanoma", "melanocytic nevus", "seborrheic keratosis", "psoriasis"]
PROMPT = build_prompt(LABELS)
MELANOMA = {"condition_id": "condition:melanoma"}

# 8 findings, all linked to melanoma in the KG (dark brown, black, atypical pigment network, macule, smooth,
# asymmetric, irregular border, solitary): 8 supported of 8.
GOOD = """<think>
Colour and pigmentation: dark brown and black; an atypical pigment network.
Texture and surface: a flat macule with a smooth surface.
Shape and border: asymmetric, with an irregular border.
Distribution: solitary.
</think>
<answer>melanoma</answer>"""
# The same findings, concluded as a nevus: against nevus, dark brown, macule, smooth, solitary are supported;
# black and atypical pigment network are not linked to nevus (unverifiable); asymmetric and irregular border
# argue against it (contradicted): (4 - 2) / 8 = 0.25.
WRONG = GOOD.replace("<answer>melanoma</answer>", "<answer>melanocytic nevus</answer>")
# A nevus described and concluded consistently, but the truth is melanoma: light brown, pigment network, smooth,
# macule, round, well-defined border, solitary: 7 of 7 supported for nevus.
WRONG_CONSISTENT = """<think>
Colour and pigmentation: light brown; a regular pigment network.
Texture and surface: smooth macule.
Shape and border: round with a well-defined border.
Distribution: solitary.
</think>
<answer>melanocytic nevus</answer>"""
# Right answer, seborrheic keratosis findings: light brown supported (possible in melanoma); milia-like cysts and
# stuck-on waxy surface contradicted (they argue against melanoma); round, well-defined border, multiple not linked
# to melanoma (unverifiable): (1 - 2) / 6 = -1/6.
HALLUCINATING = """<think>
Colour and pigmentation: light brown with milia-like cysts.
Texture and surface: stuck-on waxy surface.
Shape and border: round with a well-defined border.
Distribution: multiple.
</think>
<answer>melanoma</answer>"""
# tags + label, no heading, no finding
LAZY = "<think>It looks like melanoma.</think><answer>melanoma</answer>"
MALFORMED = "Colour and pigmentation: dark brown and black. The diagnosis is melanoma."  # no tags at all
# Absent findings count: blue-white veil and atypical pigment network are absent features of seborrheic keratosis,
# so saying they are absent is supported; with light brown, dark brown, stuck-on, oval, well-defined, multiple: 8/8.
ABSENT = """<think>
Colour and pigmentation: light brown and dark brown; no blue-white veil and no atypical pigment network.
Texture and surface: stuck-on waxy surface.
Shape and border: oval with a well-defined border.
Distribution: multiple.
</think>
<answer>seborrheic keratosis</answer>"""
NO_ANSWER = GOOD.split("<answer>")[0]  # cut before the answer: headings only, 4 x 0.1


def rewards(text: str, meta: dict = MELANOMA, answer: str = "melanoma", prompt: list = PROMPT) -> tuple:
    return (
        accuracy([prompt], [text], answer=[answer], meta=[meta])[0],
        format_reward([prompt], [text])[0],
        kg_consistency([prompt], [text])[0],
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        (GOOD, (7.0, 1.0, 1.0)),
        (WRONG, (-1.0, 1.0, 0.25)),
        (WRONG_CONSISTENT, (-1.0, 1.0, 1.0)),
        (HALLUCINATING, (7.0, 1.0, -1 / 6)),
        (LAZY, (7.0, 0.6, 0.0)),
        (MALFORMED, (-1.0, 0.0, 0.0)),
        (ABSENT, (-1.0, 1.0, 1.0)),
        (NO_ANSWER, (-1.0, 0.4, 0.0)),
    ],
    ids=[
        "good",
        "wrong",
        "wrong_consistent",
        "hallucinating",
        "lazy",
        "malformed",
        "absent_findings",
        "no_answer",
    ],
)
def test_hand_written_responses(text, expected):
    assert rewards(text) == pytest.approx(expected)


def test_consistency_parts_by_hand():
    assert consistency_parts(GOOD) == (8, 0, 8)
    assert consistency_parts(WRONG) == (4, 2, 8)
    assert consistency_parts(HALLUCINATING) == (1, 2, 6)
    assert consistency_parts(LAZY) == (0, 0, 0)  # the answer's own name is not a finding


def test_answer_names_through_the_kg_lexicon():
    ok = "<think>x</think><answer>{}</answer>"
    assert rewards(ok.format("Malignant melanoma."))[:2] == (
        7.0,
        0.5,
    )  # an alias: right, but not the listed label
    assert rewards(ok.format("MEL"))[0] == 7.0  # HAM10000 code
    assert rewards(ok.format("Melanoma"))[:2] == (7.0, 0.6)  # case and punctuation aside it is the label
    assert rewards(ok.format("melanoma or melanocytic nevus"))[:2] == (-1.0, 0.5)  # two conditions: no answer
    assert resolve_answer("stasis dermatitis") is None  # a disease the KG does not model is not 'dermatitis'
    assert resolve_answer("") is None and resolve_answer(None) is None and resolve_answer("xyz") is None


def test_groups_subtypes_and_dermnet_members():
    ok = "<think>x</think><answer>{}</answer>"
    akiec = {
        "condition_id": "condition:akiec"
    }  # HAM10000 akiec: the group of actinic keratosis and Bowen's disease
    assert rewards(ok.format("Bowen's disease"), akiec, "x")[0] == 7.0
    assert rewards(ok.format("actinic keratosis"), akiec, "x")[0] == 7.0
    ak = {"condition_id": "condition:actinic_keratosis"}
    assert rewards(ok.format("akiec"), ak, "x")[0] == 3.0  # the group of the true subtype: a partial answer
    assert rewards(ok.format("Bowen's disease"), ak, "x")[0] == -1.0  # a sibling is another disease
    assert truth_set("condition:akiec") == {
        "condition:akiec",
        "condition:actinic_keratosis",
        "condition:bowen_disease",
    }
    folder = {
        "condition_id": "category:dermnet_melanoma_nevi",
        "members": ["condition:melanocytic_nevus", "condition:melanoma"],
    }
    assert rewards(ok.format("melanocytic nevus"), folder, "x")[0] == 7.0
    assert (
        rewards(ok.format("Melanoma Skin Cancer Nevi and Moles"), folder, "x")[0] == 7.0
    )  # the folder itself
    assert rewards(ok.format("psoriasis"), folder, "x")[0] == -1.0
    # without meta the record's answer is the truth
    assert accuracy(None, [ok.format("melanoma")], answer=["malignant melanoma"])[0] == 7.0


def test_dermnet_folder_answer_is_judged_against_its_best_member():
    # The folder 'Melanoma Skin Cancer Nevi and Moles' has no findings of its own; its members melanoma and nevus do.
    # Against nevus: light brown, macule, smooth, round, well-defined border, solitary all supported: 6/6.
    # Against melanoma: round and well-defined border are not linked (unverifiable): 4/6. The best member counts.
    text = """<think>
Colour and pigmentation: light brown.
Texture and surface: smooth macule.
Shape and border: round with a well-defined border.
Distribution: solitary.
</think>
<answer>Melanoma Skin Cancer Nevi and Moles</answer>"""
    assert consistency_parts(text) == (6, 0, 6)
    assert consistency_parts(text.replace("Melanoma Skin Cancer Nevi and Moles", "melanoma")) == (4, 0, 6)
    akiec = text.replace("Melanoma Skin Cancer Nevi and Moles", "akiec")  # a group with findings of its own
    assert consistency_parts(akiec) == (1, 0, 6)  # only the macule is linked to akiec


def test_format_details():
    body = GOOD.split("<think>")[1].split("</think>")[0]
    assert rewards("Sure. " + GOOD)[1] == pytest.approx(
        0.5
    )  # text outside the tags: tags lost, headings + label kept
    assert rewards(GOOD + GOOD)[1] == pytest.approx(0.5)  # two of each tag
    bold = body.replace("Colour and pigmentation:", "**Color and pigmentation:**").replace(
        "Distribution:", "- Distribution:"
    )
    assert rewards(f"<think>{bold}</think><answer>melanoma</answer>")[1] == pytest.approx(1.0)
    empty = body.replace("Distribution: solitary.", "Distribution: ...")
    assert rewards(f"<think>{empty}</think><answer>melanoma</answer>")[1] == pytest.approx(0.9)
    assert rewards("<think> </think><answer>melanoma</answer>")[1] == pytest.approx(
        0.1
    )  # blank think: no tag credit
    own = [
        {"role": "user", "content": "What is this?"}
    ]  # a user's own prompt lists no labels: any KG condition
    assert rewards("<think>x</think><answer>malignant melanoma</answer>", prompt=own)[1] == pytest.approx(0.6)
    assert rewards("<think>x</think><answer>xyz</answer>", prompt=own)[1] == pytest.approx(0.5)


def test_registered_and_fast():
    fns = resolve(["derm_accuracy", "derm_format", "derm_kg_consistency"], ["dermiq.rewards"])
    kg_consistency([PROMPT], [GOOD + " "])  # builds the medspaCy pipeline once
    colours = ["dark brown", "black", "light brown", "pink", "red", "blue-grey", "white", "skin-coloured"]
    texts = [GOOD.replace("dark brown and black", f"{a} and {b}") for a in colours for b in colours]
    fields = {"answer": ["melanoma"] * len(texts), "meta": [MELANOMA] * len(texts)}
    t = time.perf_counter()
    out = {name: score(name, fn, [PROMPT] * len(texts), texts, fields) for name, fn in fns.items()}
    per = (time.perf_counter() - t) / len(texts)
    assert all(len(v) == 64 for v in out.values()) and set(out["derm_accuracy"].tolist()) == {7.0}
    assert per < 0.1, (
        f"{per * 1000:.1f} ms per completion"
    )  # 10-30 ms here (load-dependent); slack for busy CI
    t = time.perf_counter()
    kg_consistency([PROMPT] * 64, texts)  # a group's repeated completions: cached
    assert time.perf_counter() - t < 0.05


def test_use_kg_clears_caches():
    graph = kg()
    assert resolve_answer("melanoma") == "condition:melanoma"
    use_kg(graph)
    assert resolve_answer.cache_info().currsize == 0 and resolve_answer("melanoma") == "condition:melanoma"
