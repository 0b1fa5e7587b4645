"""The one reader of the ``<think>/<answer>`` and boxed layouts: strict, tolerant and counting readings."""

from __future__ import annotations

import re

import pytest

from training.rollout.responses import (
    ANSWER,
    THINK,
    box_count,
    boxed_choice,
    boxes,
    sole_tag,
    strict_parts,
    tag_counts,
    tag_pattern,
    tagged,
    without,
    without_boxes,
    without_tags,
)

TEXTS = [
    "<think>warm, red</think><answer>B) cellulitis \\boxed{B}</answer>",
    "  <think>\nx\n</think>\n<answer>y</answer>\n",
    "<THINK>x</THINK><ANSWER>y</ANSWER>",
    "<think>x</think><answer> </answer>",
    "<think>x</think>prose<answer>y</answer>",
    "<answer>y</answer><think>x</think>",
    "<think>a</think><think>b</think><answer>y</answer>",
    "<think>cut at the budget",
    "<think>done</think><answer>half an answer",
    "\\boxed{A} and \\boxed{ C } and \\boxed{",
    "no tags at all",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_strict_parts_is_the_full_layout_with_each_tag_once(text):
    full = re.fullmatch(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", text, re.S | re.I)
    counts = [
        len(re.findall(re.escape(t), text, re.I)) for t in ("<think>", "</think>", "<answer>", "</answer>")
    ]
    ok = bool(full) and counts == [1, 1, 1, 1] and bool(full.group(1).strip()) and bool(full.group(2).strip())
    assert strict_parts(text) == ((full.group(1), full.group(2)) if ok else None)
    assert list(tag_counts(text).values()) == counts


def test_readings_by_hand():
    t = TEXTS[0]
    assert tagged(t, THINK) == "warm, red" and tagged(t, ANSWER) == "B) cellulitis \\boxed{B}"
    assert strict_parts(TEXTS[2]) == ("x", "y") and strict_parts(TEXTS[2], ignore_case=False) is None
    assert tagged(TEXTS[7], THINK) is None and tagged(TEXTS[7], THINK, closed=False) == "cut at the budget"
    assert tagged(TEXTS[8], ANSWER, closed=False) == "half an answer"
    assert without(TEXTS[8], ANSWER, closed=False) == "<think>done</think> "
    assert without_tags("<think>a</think><answer>b</answer>") == " a  b "
    assert boxes(TEXTS[9]) == ["A", " C "] and box_count(TEXTS[9]) == 3
    assert without_boxes("sum \\boxed{B}", "") == "sum " and boxed_choice(TEXTS[9]) == "A"
    assert boxed_choice("\\boxed{AB}") is None
    assert tag_pattern("ask", ignore_case=False).search("<ASK>x</ASK>") is None
    assert sole_tag("<ask>history</ask>", "ask") == "history"
    assert (
        sole_tag("<ask>a</ask><ask>b</ask>", "ask") is None
        and sole_tag("so <answer>B</answer>", ANSWER) is None
    )
