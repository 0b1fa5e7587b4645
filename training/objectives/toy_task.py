"""A verifiable toy task for the embedded text model: the prompt names a number, the answer is that number.

It stands in for the medical pipelines in the demo and tests of the RL core: rewards are exact (no judge),
dense enough that a randomly initialised tiny model improves within a few GRPO++ steps, and domain-free.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from training.data.records import write_jsonl
from training.objectives.rewards import reward

NUMBER = re.compile(r"\d+")
PROMPT = "Reply with the number {n} and nothing else."


def make_records(n: int, seed: int = 0, low: int = 0, high: int = 4, filler: str = "") -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(low, high)
        text = (filler + "\n" if filler else "") + PROMPT.format(n=k)
        out.append(
            {
                "prompt": [{"role": "user", "content": text}],
                "images": [],
                "answer": str(k),
                "meta": {"task": "toy_number"},
            }
        )
    return out


def write_records(path: str | Path, n: int, seed: int = 0, **kw) -> Path:
    write_jsonl(path, make_records(n, seed, **kw))
    return Path(path)


@reward("toy_correct")
def correct(prompts, completions, answer, **_) -> list[float]:
    """1 if the first number in the completion is the requested one."""
    out = []
    for text, ans in zip(completions, answer):
        m = NUMBER.search(text)
        out.append(1.0 if m and m.group() == str(ans) else 0.0)
    return out


@reward("toy_digits")
def digits(prompts, completions, **_) -> list[float]:
    """Share of non-space characters that are digits: 'answer with a number' as a dense format reward."""
    out = []
    for text in completions:
        chars = [c for c in text if not c.isspace()]
        out.append(sum(c.isdigit() for c in chars) / len(chars) if chars else 0.0)
    return out


def write_recipe_data(out: str | Path, seed: int = 0) -> dict[str, Path]:
    """`medrl recipes --data`: the prompts `grpopp_qwen2_toy` reads (64 records)."""
    return {"toy_numbers.jsonl": write_records(Path(out) / "toy_numbers.jsonl", 64, seed=seed)}
