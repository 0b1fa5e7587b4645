"""The DermIQ response format, the prompt that asks for it, and a parser the rewards and evaluation share.

A response is ``<think>`` a structured analysis under four headings (colour and pigmentation; texture and surface;
shape and border; distribution) ``</think><answer>`` one condition ``</answer>``, the condition written as one of the
run's labels. The labels are listed in the prompt, because a policy can only be held to a label set it was shown.
The fixed part (role, format, labels) is the system turn, identical for every record of a run, so it is one shared
prefix; the user turn holds the image(s) and the question. Torch-free: the importers use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from knowledge_graph.lexicon import normalize
from training.rollout.responses import ANSWER, TAGS, THINK, strict_parts, tagged, without

# The four headings of the analysis, in order; the finding types each one reports (the SFT target's layout).
SECTIONS: tuple[str, ...] = (
    "Colour and pigmentation",
    "Texture and surface",
    "Shape and border",
    "Distribution",
)
SECTION_TYPES: dict[str, tuple[str, ...]] = {
    "Colour and pigmentation": ("colour", "dermoscopic_feature"),
    "Texture and surface": ("morphology", "surface"),
    "Shape and border": ("shape", "border", "size"),
    "Distribution": ("distribution", "body_site"),
}
NOT_SEEN = "no distinctive finding"  # what a section says when the image shows nothing of its kind
QUESTION = "Examine this skin lesion image and give the most likely condition."
LABELS_PREFIX = "Labels: "
LABEL_SEP = "; "
THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = TAGS

_LAYOUT = "\n".join(
    [THINK_OPEN, *(f"{s}: ..." for s in SECTIONS), THINK_CLOSE, f"{ANSWER_OPEN}condition{ANSWER_CLOSE}"]
)
_INTRO = (
    "You are a dermatologist. Look at the skin lesion image and answer in exactly two parts.\n"
    "1. Between <think> and </think>: describe what you see under four headings, one line each: "
    f"{'; '.join(SECTIONS)}.\n"
    "2. Between <answer> and </answer>: the single most likely condition, written exactly as one of the labels below.\n"
    f"Use exactly this layout:\n{_LAYOUT}"
)
# A heading at the start of a line, with optional list marks or bold around it, then ':' (US 'color' too).
_HEADING = re.compile(
    r"^[ \t>*#\-\d.)]*\**\s*(colou?r and pigmentation|texture and surface|shape and border|distribution)\s*\**\s*:\**",
    re.I | re.M,
)
_LETTER = re.compile(r"[^\W\d_]")


def system_text(labels: Iterable[str]) -> str:
    """The format spec and the run's label set, one ``Labels:`` line (sorted, de-duplicated)."""
    names = sorted({str(x).strip() for x in labels if str(x).strip()}, key=str.lower)
    if not names:
        raise ValueError("a DermIQ prompt needs at least one label")
    if any(LABEL_SEP.strip() in n or "\n" in n for n in names):
        raise ValueError(f"labels may not contain '{LABEL_SEP.strip()}' or a newline: {names}")
    return f"{_INTRO}\n{LABELS_PREFIX}{LABEL_SEP.join(names)}"


def build_prompt(labels: Iterable[str], n_images: int = 1) -> list[dict]:
    """The RL prompt messages: the format and labels (system), then one image slot per image and the question."""
    content = [*({"type": "image"} for _ in range(n_images)), {"type": "text", "text": QUESTION}]
    return [{"role": "system", "content": system_text(labels)}, {"role": "user", "content": content}]


def labels_of(prompt: list[dict] | None) -> list[str] | None:
    """The label set a prompt lists (None when it lists none, e.g. a user's own messages)."""
    for msg in prompt or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        texts = (
            [content]
            if isinstance(content, str)
            else [p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"]
        )
        for text in texts:
            for line in str(text).splitlines():
                if line.startswith(LABELS_PREFIX):
                    return [
                        x.strip() for x in line[len(LABELS_PREFIX) :].split(LABEL_SEP.strip()) if x.strip()
                    ]
    return None


def reference_response(findings: Mapping[str, list[str]], answer: str, label=None) -> str:
    """A well-formed response from ground-truth findings ({type: [ids or names]}): the SFT target.

    ``label`` maps an id to its name (``kg.label``); names pass through. A section with nothing of its kind says so.
    """
    name = label or (lambda x: x)
    lines = []
    for section in SECTIONS:
        words = [name(v) for t in SECTION_TYPES[section] for v in findings.get(t, [])]
        lines.append(f"{section}: {', '.join(words) if words else NOT_SEEN}.")
    return f"{THINK_OPEN}\n" + "\n".join(lines) + f"\n{THINK_CLOSE}\n{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


@dataclass
class Response:
    """A completion cut along the format."""

    text: str
    think: str | None  # inside the first <think>...</think>
    answer: str | None  # inside the first <answer>...</answer>, stripped
    well_formed: bool  # exactly one of each tag, think then answer, nothing outside, neither part blank
    sections: dict[str, str] = field(
        default_factory=dict
    )  # heading (canonical) -> its text, when it has a word

    @property
    def findings_text(self) -> str:
        """Where the findings are described: the think part, else everything but the answer."""
        if self.think is not None:
            return self.think
        return without(self.text, ANSWER)


def parse_response(text: str) -> Response:
    """Split a completion into think / answer and the analysis into its headed sections."""
    think, answer = tagged(text, THINK), tagged(text, ANSWER)
    answer = answer.strip() if answer is not None else None
    return Response(text, think, answer, strict_parts(text) is not None, _sections(think or ""))


def _sections(think: str) -> dict[str, str]:
    """Heading -> the text up to the next heading, kept only when it has at least one letter."""
    marks = list(_HEADING.finditer(think))
    out: dict[str, str] = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(think)
        body = think[m.end() : end].strip()
        key = next(s for s in SECTIONS if normalize(s) == normalize(m.group(1)))
        if _LETTER.search(body) and key not in out:
            out[key] = body
    return out


def in_label_set(answer: str | None, labels: Iterable[str]) -> bool:
    """Is the answer written as one of the labels (case, spacing and punctuation aside)?"""
    return answer is not None and normalize(answer) in {normalize(x) for x in labels}
