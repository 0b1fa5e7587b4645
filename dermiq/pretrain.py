"""Image-text pairs for the embedded VLM's vision pretraining: synthetic lesions described by what they show.

A real VLM arrives able to say what it sees (colours, shapes, borders, surfaces) without knowing dermatology; the
embedded tiny Qwen2.5-VL's vision tower is random, so the language model would have nothing to read from an image.
`training.models.embedded` pretrains the tower and merger on these pairs at build time (it names this hook, it does not
know what the pairs are about). Each caption lists the image's visible findings under the four analysis headings,
in the wording of the DermIQ think part, and never names the condition: naming it is what the pipeline learns.
Deterministic (seeded per image), torch-free.
"""

from __future__ import annotations

import random

from .prompts import NOT_SEEN, SECTION_TYPES, SECTIONS

QUESTION = "Describe what you see in this image."
# One short question per single-valued visible finding: each answer is one finding, so every answer token depends on
# the image (in a full caption half the loss is headings and punctuation an image-blind model predicts as well, and
# the rest is long lists; the tiny LM then learns the text prior and never starts reading the image).
ATTRIBUTE_QUESTIONS = {
    "colour": "What colour is the lesion?",
    "morphology": "What kind of lesion is it?",
    "shape": "What shape is the lesion?",
    "border": "What is the lesion's border like?",
    "size": "How large is the lesion?",
    "distribution": "Is it one lesion or several?",
}
# copies of the full description per image after the warm start (its share of the pairs)
CAPTIONS_PER_IMAGE = 3
SIZE = 112  # the synthetic data sets' default image side


def caption(findings: dict[str, list[str]], label) -> str:
    """'Colour and pigmentation: ...' lines (the reference response's think body), findings named by ``label``."""
    lines = []
    for section in SECTIONS:
        words = [label(v) for t in SECTION_TYPES[section] for v in findings.get(t, [])]
        lines.append(f"{section}: {', '.join(words) if words else NOT_SEEN}.")
    return "\n".join(lines)


def samples(n: int, seed: int) -> list[tuple[object, dict[str, list[str]]]]:
    """``n`` (PIL image, findings by type) over the default conditions, round robin, seeded."""
    from knowledge_graph.io import load_builtin

    from .synthetic import DEFAULT_CONDITIONS, make_sample

    kg = load_builtin("derm")
    out = []
    for i in range(n):
        cond = DEFAULT_CONDITIONS[i % len(DEFAULT_CONDITIONS)]
        img, meta = make_sample(
            kg, cond, seed=10_000 + seed, index=i, size=SIZE
        )  # never a data set's seed/index
        out.append(
            (img, {t: [kg.label(x) if x in kg else str(x) for x in v] for t, v in meta["findings"].items()})
        )
    return out


def image_text_pairs(n: int, seed: int) -> list[tuple[object, str, str]]:
    """(PIL image, question, answer) triples for ``n`` images, in curriculum order (the trainer takes them in order):
    first the colour question for every image (the most visible finding: the LM learns to look at the image at all),
    then, shuffled, one short question per single-valued finding type each image shows (ATTRIBUTE_QUESTIONS -> that
    finding) and the full description (QUESTION -> `caption`, CAPTIONS_PER_IMAGE times: what the DermIQ think part
    needs). The same image object in all of an image's triples."""
    first, rest = [], []
    for img, findings in samples(n, seed):
        rest.extend([(img, QUESTION, caption(findings, str))] * CAPTIONS_PER_IMAGE)
        qa = [(img, q, f"{findings[t][0]}.") for t, q in ATTRIBUTE_QUESTIONS.items() if findings.get(t)]
        first.extend(qa[:1])
        rest.extend(qa)
    rng = random.Random(seed)
    rng.shuffle(first)
    rng.shuffle(rest)
    return first + rest
