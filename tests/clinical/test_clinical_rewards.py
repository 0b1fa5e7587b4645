"""CRPO objectives on hand-written responses (good, wrong, hallucinating, lazy, malformed, inconsistent).

Expected values are worked out by hand from the definitions in `clinical.rewards` (comments show the sums): the
case holds 7 findings of 4 kinds (symptom: chest pain, nausea; risk factor: smoking, hypertension; sign:
diaphoresis; lab: ST elevation, troponin), the gold answer is C, so 4 options are wrong.
"""

import time

import pytest

from clinical.data import import_data
from clinical.prompts import build_prompt, parse_response
from clinical.rewards import (
    accuracy,
    accuracy_score,
    analysis,
    comprehensiveness,
    faithfulness,
    format_score,
    language_score,
    question_of,
)
from knowledge_graph.claims import extract_claims
from knowledge_graph.io import load_builtin
from training.objectives.rewards import resolve, score

CASE = (
    "A 58-year-old man presents with chest pain and nausea. Relevant history: smoking and hypertension. "
    "On examination: diaphoresis. Investigations: ST elevation in leads II, III and aVF; "
    "troponin I 2.1 ng/mL (ref < 0.04). Which of the following is the most likely diagnosis?"
)
OPTIONS = {
    "A": "aortic dissection",
    "B": "pericarditis",
    "C": "ST elevation myocardial infarction",
    "D": "pulmonary embolism",
    "E": "stable angina",
}
META = {
    "options": OPTIONS,
    "case": CASE,
    "source": "test",
    "finding_ids": {
        "history": [
            "symptom:chest_pain",
            "symptom:nausea",
            "risk_factor:smoking",
            "risk_factor:hypertension",
        ],
        "exam": ["sign:diaphoresis"],
        "labs": ["lab_finding:st_elevation", "lab_finding:troponin_high"],
    },
    "findings": {
        "history": ["chest pain", "nausea", "smoking", "hypertension"],
        "exam": ["diaphoresis"],
        "labs": ["ST elevation in leads II, III and aVF", "troponin I 2.1 ng/mL (ref < 0.04)"],
    },
}
PROMPT = build_prompt(CASE, OPTIONS)

GOOD = (
    "<think>\nThe patient has chest pain with diaphoresis, ST elevation in the inferior leads and a raised "
    "troponin, and he is a smoker.\n"
    "Aortic dissection (A) is unlikely because there is no tearing pain radiating to the back.\n"
    "Pericarditis (B) is less likely since the ST elevation is regional, not diffuse, and the pain is not pleuritic.\n"
    "Pulmonary embolism (D) is unlikely given that there is no hypoxia.\n"
    "Stable angina (E) does not fit because the troponin is raised.\n"
    "Therefore the most likely diagnosis is ST elevation myocardial infarction (C).\n"
    "Check: STEMI is consistent with the ST elevation and the raised troponin.\n</think>\n"
    "<answer>\nInferior ST elevation with a troponin rise in a smoker with chest pain: STEMI. \\boxed{C}\n</answer>"
)
WRONG = (
    "<think>\nThe patient has chest pain and nausea.\n"
    "Pulmonary embolism can present with chest pain, so the answer is pulmonary embolism (D).\n</think>\n"
    "<answer>\nChest pain suggests a pulmonary embolism. \\boxed{D}\n</answer>"
)
HALLUCINATING = (
    "<think>\nThe patient has chest pain, fever, cough and crackles.\n"
    "Therefore the most likely diagnosis is C.\n</think>\n<answer>\nChest pain: \\boxed{C}\n</answer>"
)
LAZY = "<think>\n</think>\n<answer>\\boxed{C}</answer>"
MALFORMED = "The answer is \\boxed{C} or maybe \\boxed{D}."
INCONSISTENT = (
    "<think>\nThe patient has chest pain and ST elevation.\n"
    "Therefore the most likely diagnosis is pulmonary embolism (D).\n</think>\n"
    "<answer>\nST elevation and chest pain. \\boxed{C}\n</answer>"
)

# name: (accuracy, format, language, faithfulness, comprehensiveness)
EXPECTED = {
    # 5 case findings cited (>= 3): evidence 1; nothing invented; concludes C = boxed C -> .5 + .5 = 1.
    # rejects A, B, D, E with reasons (4/4), cites all 4 kinds, checks STEMI against ST elevation -> .5 + .25 + .25
    "good": (GOOD, 1.0, 1.5, 1.0, 1.0, 1.0),
    # cites chest pain and nausea: 2/3; concludes D = boxed D: +1 -> 1/3 + 1/2. Rejects nothing, 1 kind of 4, no check.
    "wrong": (WRONG, 0.0, 1.5, 1.0, 1 / 3 + 1 / 2, 0.25 * 0.25),
    # cites chest pain: 1/3; asserts 4 findings, 3 not in the case: 3/4; consistent: 1/6 - 3/8 + 1/2 = 7/24.
    "hallucinating": (HALLUCINATING, 1.0, 1.5, 1.0, 7 / 24, 0.25 * 0.25),
    # empty think: no format credit; no evidence; a box the reasoning does not conclude for: -1 -> -1/2.
    "lazy": (LAZY, 1.0, 0.0, 1.0, -0.5, 0.0),
    # two boxes: -2; no tags; no single boxed letter.
    "malformed": (MALFORMED, -2.0, 0.0, 1.0, 0.0, 0.0),
    # cites chest pain and ST elevation: 2/3; concludes D but boxes C: -1 -> 1/3 - 1/2. Two kinds of four: .25 * .5.
    "inconsistent": (INCONSISTENT, 1.0, 1.5, 1.0, 1 / 3 - 1 / 2, 0.25 * 0.5),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_hand_written_responses(name):
    text, acc, fmt, lang, faith, comp = EXPECTED[name]
    assert accuracy_score(text, "C") == acc
    assert format_score(text) == fmt
    assert language_score(text) == pytest.approx(lang)
    assert faithfulness([PROMPT], [text], answer=["C"], meta=[META])[0] == pytest.approx(faith)
    assert comprehensiveness([PROMPT], [text], answer=["C"], meta=[META])[0] == pytest.approx(comp)


def test_what_the_analysis_reads():
    a = analysis(PROMPT, GOOD, "C", META)
    assert a.boxed == a.concluded == "C" and a.rejected == {"A", "B", "D", "E"} and a.verifications == 1
    assert a.cited == {
        "symptom:chest_pain",
        "sign:diaphoresis",
        "lab_finding:st_elevation",
        "lab_finding:troponin_high",
        "risk_factor:smoking",
    }
    assert a.types_cited == a.types_case == {"symptom", "sign", "lab_finding", "risk_factor"}
    h = analysis(PROMPT, HALLUCINATING, "C", META)
    assert h.hallucinated == {"symptom:fever", "symptom:cough", "sign:crackles"}
    w = analysis(PROMPT, WRONG, "C", META)
    assert w.concluded == w.boxed == "D" and w.considered == {"D"} and not w.rejected
    # a textbook statement is not a claim about the patient; a case finding called absent is misreported
    t = analysis(PROMPT, "<think>Pneumonia typically causes fever. There is no nausea.</think>", "C", META)
    assert not t.hallucinated and t.misreported == {"symptom:nausea"}
    assert faithfulness([PROMPT], [t.response.text], answer=["C"], meta=[META]) == [pytest.approx(-0.5)]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<answer>\\boxed{C}</answer>", 1.0),
        ("\\boxed{ C }", 1.0),
        ("\\boxed{F}", 0.0),
        ("\\boxed{Pneumonia}", -0.5),
        ("\\boxed{c}", -0.5),
        ("\\boxed C", -1.0),
        ("no box at all: C", -1.0),
        ("", -1.0),
        ("\\boxed{A} \\boxed{B} \\boxed{C}", -3.0),
        ("\\boxed{\\text{C}}", -0.5),
    ],
)
def test_accuracy_grades(text, expected):
    assert accuracy_score(text, "C") == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<think>a</think><answer>b \\boxed{C}</answer>", 1.5),
        ("  <think>a</think>\n\n<answer>b \\boxed{C}</answer>\n", 1.5),
        ("<think>a</think><answer>\\boxed{C}</answer>", 1.0),
        ("<think>a</think><answer>b \\boxed{C} \\boxed{D}</answer>", 1.0),
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think>a</think><answer>b \\boxed{C}</answer> more", 0.0),
        ("<think>a</think><answer>b</answer><answer>\\boxed{C}</answer>", 0.0),
        ("<answer>b \\boxed{C}</answer>", 0.0),
        ("<think>a</think><answer> </answer>", 0.0),
        ("<think>a<think>b</think><answer>c \\boxed{C}</answer>", 0.0),
    ],
)
def test_format_grades(text, expected):
    assert format_score(text) == expected


def test_language_share():
    assert language_score("<think>胸痛</think><answer>\\boxed{C}</answer>") == pytest.approx(41 / 43)
    assert language_score("Temp 38.5 °C, BP 90/60 – tachycardic…") == 1.0
    assert language_score("") == 0.0


def test_a_question_the_kg_knows_nothing_of_uses_case_words():
    case, options = (
        "Which enzyme is deficient in phenylketonuria?",
        {
            "A": "Phenylalanine hydroxylase",
            "B": "Tyrosinase",
            "C": "Homogentisate oxidase",
            "D": "Fumarylacetoacetate hydrolase",
        },
    )
    text = (
        "<think>Phenylketonuria is caused by a deficient phenylalanine hydroxylase. Tyrosinase (B) is wrong because "
        "its loss causes albinism. Homogentisate oxidase (C) is excluded since its loss causes alkaptonuria. "
        "Fumarylacetoacetate hydrolase (D) is incorrect: it causes tyrosinaemia type 1. "
        "So the answer is A, which is consistent with phenylketonuria.</think>"
        "<answer>PKU is phenylalanine hydroxylase deficiency. \\boxed{A}</answer>"
    )
    prompt, meta = build_prompt(case, options), {"options": options, "case": case}
    a = analysis(prompt, text, "A", meta)
    assert (
        not a.case_findings and a.case_words == 3 and a.cited_words == 2
    )  # enzyme, deficient, phenylketonuria
    # evidence 2/min(5, 3); nothing asserted; concludes A = boxed A -> 1/3 + 1/2
    assert faithfulness([prompt], [text], answer=["A"], meta=[meta]) == [pytest.approx(1 / 3 + 1 / 2)]
    # no finding kinds in the case: (0.5 * 3/3 + 0.25 * 1) / 0.75
    assert comprehensiveness([prompt], [text], answer=["A"], meta=[meta]) == [pytest.approx(1.0)]


def test_the_question_is_read_back_from_the_prompt_when_meta_lacks_it():
    assert question_of(PROMPT, {}) == (CASE, OPTIONS)
    assert question_of(PROMPT, None) == (CASE, OPTIONS)
    full = faithfulness([PROMPT], [GOOD], answer=["C"], meta=[{"options": OPTIONS, "case": CASE}])
    assert faithfulness([PROMPT], [GOOD], answer=["C"], meta=[{}]) == full


def test_mentions_agree_with_the_claim_checker():
    """The fast reader polarity matches knowledge_graph.claims on the phrasings responses use."""
    from clinical.mentions import finder

    kg = load_builtin("clinical")
    for s in [
        "No fever, cough or haemoptysis.",
        "She is afebrile.",
        "The troponin was raised.",
        "D-dimer normal.",
        "Crackles at the right base with bronchial breathing.",
        "Pulmonary embolism cannot be ruled out.",
        "Chest pain and diaphoresis, but no ST elevation.",
        "Aortic dissection is unlikely.",
    ]:
        assert {m.node_id: m.polarity for m in finder(kg).find(s)} == {
            c.node_id: c.polarity for c in extract_claims(s, kg)
        }, s


def test_registered_and_scored_on_imported_records(tmp_path):
    fns = resolve(
        [
            "clinical_accuracy",
            "clinical_format",
            "clinical_language",
            "clinical_faithfulness",
            "clinical_comprehensiveness",
        ],
        ["clinical.rewards"],
    )
    import_data("vignettes", "embedded", tmp_path, val_frac=0, test_frac=0, n=3, seed=5)
    import json

    recs = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    completions, fields = [], {"answer": [], "meta": [], "images": []}
    for r in recs:
        m = r["meta"]
        finding = m["findings"]["history"][0]
        completions += [
            f"<think>The patient has {finding}. The most likely diagnosis is {m['answer_text']}.</think>"
            f"<answer>{m['answer_text']}. \\boxed{{{r['answer']}}}</answer>",
            "\\boxed{Z} \\boxed{Y}",
        ]
        for _ in range(2):
            fields["answer"].append(r["answer"])
            fields["meta"].append(m)
            fields["images"].append([])
    prompts = [r["prompt"] for r in recs for _ in range(2)]
    got = {name: score(name, fn, prompts, completions, fields).tolist() for name, fn in fns.items()}
    assert got["clinical_accuracy"] == [1.0, -2.0] * 3 and got["clinical_format"] == [1.5, 0.0] * 3
    assert (
        all(v > 0.5 for v in got["clinical_faithfulness"][::2])
        and got["clinical_faithfulness"][1::2] == [0.0] * 3
    )
    assert accuracy(None, ["\\boxed{A}"]) == [0.0]  # no gold given: never correct


def test_fast_enough_for_every_completion():
    """64 distinct long responses through the five objectives: a fraction of a second per RL step."""
    fns = resolve(
        [
            "clinical_accuracy",
            "clinical_format",
            "clinical_language",
            "clinical_faithfulness",
            "clinical_comprehensiveness",
        ],
        ["clinical.rewards"],
    )
    faithfulness([PROMPT], [GOOD + " warm-up"], answer=["C"], meta=[META])  # builds the KG reader once
    texts = [
        GOOD.replace("</think>", f"Note {i}: " + "Chest pain with diaphoresis persists. " * 20 + "</think>")
        for i in range(64)
    ]
    fields = {"answer": ["C"] * 64, "meta": [META] * 64}
    t = time.perf_counter()
    for name, fn in fns.items():
        assert len(score(name, fn, [PROMPT] * 64, texts, fields)) == 64
    assert time.perf_counter() - t < 5.0  # about 0.5 s measured on 2 busy cores
    assert len(texts[0]) >= 1500 and parse_response(texts[0]).think


def test_ranges_hold_on_random_text():
    import random

    rng = random.Random(0)
    pieces = [
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "\\boxed{C}",
        "\\boxed{x}",
        "fever",
        "no",
        "chest pain",
        "(A)",
        "unlikely because",
        "Therefore",
        "consistent with",
        ".",
        "\n",
        "ST elevation",
        "答",
    ]
    texts = ["".join(rng.choice(pieces) + " " for _ in range(rng.randint(0, 40))) for _ in range(200)]
    n = len(texts)
    f = faithfulness([PROMPT] * n, texts, answer=["C"] * n, meta=[META] * n)
    c = comprehensiveness([PROMPT] * n, texts, answer=["C"] * n, meta=[META] * n)
    assert all(-1 <= v <= 1 for v in f) and all(0 <= v <= 1 for v in c)
    assert all(0 <= format_score(t) <= 1.5 and 0 <= language_score(t) <= 1 for t in texts)
    assert all(
        accuracy_score(t, "C") in (1.0, 0.0, -0.5, -1.0) or accuracy_score(t, "C") <= -2 for t in texts
    )


# Every option 'less likely', its own answer too: full coverage by the letter count, but nothing was decided.
REJECTS_ALL = (
    "<think>\nThe patient has chest pain and ST elevation.\n"
    + "".join(f"{k}) less likely: no fit.\n" for k in "ABCDE")
    + "So the answer is C).\n</think>\n<answer>\nST elevation points to C). \\boxed{C}\n</answer>"
)


def test_ruling_out_its_own_answer_earns_no_rejection_credit():
    a = analysis(PROMPT, REJECTS_ALL, "C", META)
    assert a.rejected == {"A", "B", "D", "E"} and a.self_rejected and a.concluded == a.boxed == "C"
    # rejection 0; two kinds of four cited: .25 * .5; no check sentence
    assert comprehensiveness([PROMPT], [REJECTS_ALL], answer=["C"], meta=[META]) == [
        pytest.approx(0.25 * 0.5)
    ]
    skips_own = REJECTS_ALL.replace("C) less likely: no fit.\n", "")
    assert not analysis(PROMPT, skips_own, "C", META).self_rejected
    assert comprehensiveness([PROMPT], [skips_own], answer=["C"], meta=[META]) == [
        pytest.approx(0.5 + 0.25 * 0.5)
    ]


def test_ruling_out_the_concluded_option_and_boxing_another_earns_no_rejection_credit():
    """CRPO found this under the box-only rule (6 of 40 greedy answers of one seed): rule out B, conclude B, box the
    option left standing (C). The rejections decided nothing, and coverage paid for the contradiction."""
    skips_c = REJECTS_ALL.replace("C) less likely: no fit.\n", "")
    boxes_other = skips_c.replace("So the answer is C).", "So the answer is B).")
    a = analysis(PROMPT, boxes_other, "C", META)
    assert a.concluded == "B" and a.boxed == "C" and a.self_rejected
    assert comprehensiveness([PROMPT], [boxes_other], answer=["C"], meta=[META]) == [
        pytest.approx(0.25 * 0.5)
    ]
    assert not analysis(PROMPT, skips_c, "C", META).self_rejected  # concluded and boxed C, C left standing


@pytest.mark.parametrize(
    "sentence,self_rejected",
    [
        ("Pericarditis (B) is less likely than C because the ST elevation is regional.", False),
        ("Option C is less likely because the troponin is normal.", True),
        ("Therefore it is C rather than B, given the troponin.", False),
        ("The answer is not option C, since the pain is pleuritic.", True),
    ],
)
def test_which_sentences_rule_out_the_answer(sentence, self_rejected):
    text = f"<think>\nChest pain and ST elevation.\n{sentence}\n</think>\n<answer>\nSTEMI. \\boxed{{C}}\n</answer>"
    assert analysis(PROMPT, text, "C", META).self_rejected is self_rejected


def test_a_box_without_a_conclusion_is_unsupported():
    bare = "<think>\nThe patient has chest pain and ST elevation.\n</think>\n<answer>\nSTEMI. \\boxed{C}\n</answer>"
    no_box = bare.replace(" \\boxed{C}", "")
    # evidence 2/3, consistency -1 (boxed, nothing concluded) vs 0 (no box: accuracy's to punish)
    assert faithfulness([PROMPT, PROMPT], [bare, no_box], answer=["C", "C"], meta=[META, META]) == [
        pytest.approx(1 / 3 - 1 / 2),
        pytest.approx(1 / 3),
    ]


@pytest.mark.parametrize(
    "reasoning,concluded",
    [
        (
            "So the answer is A).\nCheck: chest pain and ST elevation are consistent with E).",
            "A",
        ),  # the answer statement
        ("Chest pain and ST elevation point to C).", "C"),  # no answer statement: the weak cue names it
        ("ST elevation is consistent with C).\nTherefore the most likely diagnosis is D).", "D"),
    ],
)
def test_the_answer_statement_is_the_conclusion(reasoning, concluded):
    text = f"<think>\n{reasoning}\n</think>\n<answer>\nSTEMI. \\boxed{{E}}\n</answer>"
    assert analysis(PROMPT, text, "C", META).concluded == concluded
