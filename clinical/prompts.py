"""The Clinical-R1 response format and the prompt that asks for it.

A response is ``<think>`` reasoning ``</think>`` then ``<answer>`` a short summary ending in the final choice
``\\boxed{X}`` ``</answer>``, as the paper's released GRPO prompt asks (there the whole instruction sits in the user
turn; here the fixed part is the system turn so every prompt of a run shares it as one cached prefix). The system
turn also asks for what the comprehensiveness reward measures (weigh every option, check the conclusion against the
findings): a policy should be told what it is scored on. Torch-free: the importer uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from training.rollout.responses import (
    ANSWER,
    THINK,
    box_count,
    boxes,
    tag_counts,
    tagged,
    without,
    without_boxes,
    without_tags,
)
from training.rollout.responses import (
    BOX_RE as BOX_RE,  # the app's answer view marks boxes with the same pattern
)

SYSTEM = (
    "You are a medical expert in clinical reasoning, diagnosis and treatment. Answer in exactly two parts.\n"
    "1. Reasoning between <think> and </think>: use the findings given in the case, consider every option and say "
    "why each wrong one does not fit, then check your conclusion against the findings.\n"
    "2. Between <answer> and </answer>: a short summary of the reasoning, ending with your final choice as one "
    "letter in \\boxed{}, for example \\boxed{A}.\n"
    "Write in English. Use exactly this layout:\n"
    "<think>\nyour reasoning\n</think>\n<answer>\nsummary and \\boxed{X}\n</answer>"
)
CHOICE_NOTE = "Give your final choice as one letter in \\boxed{}."
MULTI_NOTE = "More than one option may be true; choose the single best one."


def format_options(options: dict[str, str]) -> str:
    """``A) text`` lines in letter order (the layout `clinical.records.question` uses)."""
    return "\n".join(f"{k}) {v}" for k, v in sorted(options.items()))


def user_text(case: str, options: dict[str, str], note: str | None = None) -> str:
    """Case text, the options, then the reminder to box one letter (and an optional note, e.g. MULTI_NOTE)."""
    tail = f"{note} {CHOICE_NOTE}" if note else CHOICE_NOTE
    return f"{case.strip()}\n\nOptions:\n{format_options(options)}\n\n{tail}"


def build_prompt(case: str, options: dict[str, str], note: str | None = None) -> list[dict]:
    """The RL prompt messages for one question: the format spec (system) and the question (user)."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user_text(case, options, note)},
    ]


@dataclass
class Response:
    """A completion cut along the format: the parts found and how many of each tag and box it has."""

    text: str
    think: str | None  # inside the first <think>...</think>, None when there is none
    answer: str | None  # inside the first <answer>...</answer>
    boxes: list[str] = field(default_factory=list)  # contents of every parseable \boxed{...}
    box_count: int = 0  # occurrences of '\boxed', parseable or not (the released accuracy rule counts these)
    tag_counts: dict[str, int] = field(default_factory=dict)

    @property
    def reasoning(self) -> str:
        """What the model reasoned in: the think part, else everything outside the answer, tags removed."""
        if self.think is not None:
            return self.think
        return without_tags(without(self.text, ANSWER, closed=False))

    @property
    def summary(self) -> str:
        """The answer part without its box (the summary the format asks for)."""
        return without_boxes(self.answer or "").strip()


def parse_response(text: str) -> Response:
    """Split a completion into its think and answer parts and find its boxes."""
    return Response(
        text=text,
        think=tagged(text, THINK),
        answer=tagged(text, ANSWER),
        boxes=boxes(text),
        box_count=box_count(text),
        tag_counts=tag_counts(text),
    )
