"""Image-text pairs for the embedded VLM's vision pretraining: synthetic lesions described by what they show.

A real VLM arrives able to say what it sees (colours, shapes, borders, surfaces) without knowing dermatology; the
embedded tiny Qwen2.5-VL's vision tower is random, so the language model would have nothing to read from an image.
`training.embedded` pretrains the tower and merger on these pairs at build time (it names this hook, it does not
know what the pairs are about). Each caption lists the image's visible findings under the four analysis headings,
in the wording of the DermIQ think part, and never names the condition: naming it is what the pipeline learns.
Deterministic (seeded per image), torch-free.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from .prompts import NOT_SEEN, SECTION_TYPES, SECTIONS

QUESTION = "Describe what you see in this image."
SIZE = 112  # the synthetic data sets' default image side


def caption(findings: dict[str, list[str]], label) -> str:
    """'Colour and pigmentation: ...' lines (the reference response's think body), findings named by ``label``."""
    lines = []
    for section in SECTIONS:
        words = [label(v) for t in SECTION_TYPES[section] for v in findings.get(t, [])]
        lines.append(f"{section}: {', '.join(words) if words else NOT_SEEN}.")
    return "\n".join(lines)


def image_text_pairs(n: int, seed: int) -> list[tuple[object, str, str]]:
    """``n`` (PIL image, question, caption) triples over the default conditions, round robin, seeded."""
    from knowledge_graph.io import load_builtin

    from .synthetic import DEFAULT_CONDITIONS, make_sample

    kg = load_builtin("derm")
    out = []
    rng = random.Random(seed)
    for i in range(n):
        cond = DEFAULT_CONDITIONS[i % len(DEFAULT_CONDITIONS)]
        img, meta = make_sample(kg, cond, seed=10_000 + seed, index=i, size=SIZE)  # never a data set's seed/index
        out.append((img, QUESTION, caption(meta["findings"], lambda x: kg.label(x) if x in kg else str(x))))
    rng.shuffle(out)
    return out


def fingerprint() -> str:
    """What the pairs depend on (this file, the renderer, the sampler, the prompts), for the build's cache key."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("pretrain.py", "render.py", "findings.py", "synthetic.py", "prompts.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]
