"""The DermIQ prompt: format and label set in the system turn, images and question in the user turn; the parser."""

import pytest

from dermiq.prompts import (
    QUESTION,
    SECTIONS,
    build_prompt,
    in_label_set,
    labels_of,
    parse_response,
    reference_response,
)


def test_prompt_lists_the_label_set_once_sorted():
    p = build_prompt(["psoriasis", "Melanoma", "psoriasis", " basal cell carcinoma "], n_images=2)
    assert [m["role"] for m in p] == ["system", "user"]
    system = p[0]["content"]
    assert (
        all(s in system for s in SECTIONS) and "<think>" in system and "<answer>condition</answer>" in system
    )
    assert system.endswith("Labels: basal cell carcinoma; Melanoma; psoriasis")
    assert p[1]["content"] == [{"type": "image"}, {"type": "image"}, {"type": "text", "text": QUESTION}]
    assert labels_of(p) == ["basal cell carcinoma", "Melanoma", "psoriasis"]
    assert labels_of([{"role": "user", "content": [{"type": "text", "text": "What is this?"}]}]) is None
    assert labels_of(None) is None


def test_prompt_refuses_bad_label_sets():
    with pytest.raises(ValueError, match="at least one label"):
        build_prompt([" "])
    with pytest.raises(ValueError, match="may not contain"):
        build_prompt(["a; b"])


def test_reference_response_round_trips():
    findings = {
        "colour": ["dark brown"],
        "dermoscopic_feature": ["streaks"],
        "border": ["irregular border"],
        "size": ["medium (6-20 mm)"],
    }
    text = reference_response(findings, "melanoma")
    assert text == (
        "<think>\nColour and pigmentation: dark brown, streaks.\nTexture and surface: no distinctive finding.\n"
        "Shape and border: irregular border, medium (6-20 mm).\nDistribution: no distinctive finding.\n"
        "</think>\n<answer>melanoma</answer>"
    )
    r = parse_response(text)
    assert r.well_formed and r.answer == "melanoma" and list(r.sections) == list(SECTIONS)
    assert r.sections["Shape and border"] == "irregular border, medium (6-20 mm)."


def test_parse_malformed_and_truncated():
    r = parse_response("<think>Colour and pigmentation: red.\nShape and border:")  # cut by max_new_tokens
    assert not r.well_formed and r.think is None and r.answer is None and r.sections == {}
    assert "red" in r.findings_text  # the claim checker still reads what was written
    r = parse_response("<think>Distribution: solitary</think><answer> melanoma </answer>")
    assert r.well_formed and r.answer == "melanoma" and list(r.sections) == ["Distribution"]
    assert not parse_response("<answer>melanoma</answer><think>x</think>").well_formed  # order matters
    assert in_label_set("Melanoma.", ["melanoma"]) and not in_label_set(None, ["melanoma"])
