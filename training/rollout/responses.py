"""Reading reasoning-format responses: ``<think>...</think><answer>...</answer>`` and ``\\boxed{...}``.

The layout is the generic RL-reasoning one (DeepSeek-R1's template, TRL's format rewards): the reasoning inside
think tags, the answer inside answer tags, a final choice in a LaTeX box. Every reader of it goes through here, so
rewards, evaluation and the app agree on what a response says. Three readings, for three jobs:

- strict (`strict_parts`): the whole text is exactly the layout, each tag once, neither part blank: a format
  reward's test, where a near miss must score nothing;
- tolerant (`tagged` with ``closed=False``): an unclosed tag runs to the end, for showing a response cut at its
  token budget;
- counts (`tag_counts`, `box_count`, `boxes`): what is there, for rewards that grade partial compliance.

Tags match case-insensitively unless a caller's rule says otherwise (``ignore_case=False``). A box ends at its
first ``}``, as the released Clinical-R1 code reads it. Pure Python: data importers and the app use it.
"""

from __future__ import annotations

import functools
import re

THINK, ANSWER = "think", "answer"
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
BOX = "\\boxed"
BOX_RE = re.compile(r"\\boxed\{(.*?)\}", re.S)
BOXED_CHOICE = re.compile(r"\\boxed\{\s*([A-E])\s*\}")  # one option letter in a box, spaces aside
_ANY_TAG = re.compile(r"</?(?:think|answer)>", re.I)


@functools.cache
def tag_pattern(tag: str, closed: bool = True, ignore_case: bool = True) -> re.Pattern:
    """``<tag>(body)</tag>``, the body as short as possible; ``closed=False``: the end of the text also closes it."""
    end = f"</{tag}>" if closed else f"(?:</{tag}>|$)"
    return re.compile(f"<{tag}>(.*?){end}", re.S | (re.I if ignore_case else 0))


def tagged(text: str, tag: str, closed: bool = True, ignore_case: bool = True) -> str | None:
    """The body of the first ``<tag>...</tag>`` as written (None when there is none)."""
    m = tag_pattern(tag, closed, ignore_case).search(text)
    return m.group(1) if m else None


def without(text: str, tag: str, closed: bool = True) -> str:
    """The text with every ``<tag>...</tag>`` block (tags included) replaced by one space."""
    return tag_pattern(tag, closed).sub(" ", text)


def without_tags(text: str) -> str:
    """The text with every think/answer tag replaced by one space (their contents kept)."""
    return _ANY_TAG.sub(" ", text)


def sole_tag(text: str, tag: str) -> str | None:
    """The body when the text is one ``<tag>body</tag>`` and nothing else, with no ``<`` or ``>`` in the body
    (so two tags, or a tag wrapped in prose, are not one); None otherwise."""
    m = re.fullmatch(f"<{tag}>([^<>]*)</{tag}>", text)
    return m.group(1) if m else None


def tag_counts(text: str) -> dict[str, int]:
    """How often each of the four tags occurs (case-insensitive), in `TAGS` order."""
    return {t: len(re.findall(re.escape(t), text, re.I)) for t in TAGS}


@functools.lru_cache(maxsize=2)
def _layout(ignore_case: bool) -> re.Pattern:
    return re.compile(
        r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S | (re.I if ignore_case else 0)
    )


def strict_parts(text: str, ignore_case: bool = True) -> tuple[str, str] | None:
    """(think, answer) as written when the text is exactly the layout: whitespace, one think part, whitespace, one
    answer part, whitespace; each tag once (counted case-insensitively); neither part blank. None otherwise."""
    m = _layout(ignore_case).fullmatch(text)
    if (
        not m
        or any(n != 1 for n in tag_counts(text).values())
        or not m.group(1).strip()
        or not m.group(2).strip()
    ):
        return None
    return m.group(1), m.group(2)


def boxes(text: str) -> list[str]:
    """The contents of every parseable ``\\boxed{...}``."""
    return BOX_RE.findall(text)


def box_count(text: str) -> int:
    """Occurrences of ``\\boxed``, parseable or not."""
    return text.count(BOX)


def without_boxes(text: str, repl: str = " ") -> str:
    """The text with every parseable box replaced by `repl`."""
    return BOX_RE.sub(repl, text)


def boxed_choice(text: str) -> str | None:
    """The option letter (A-E) of the first box holding only one, spaces aside."""
    m = BOXED_CHOICE.search(text)
    return m.group(1) if m else None
