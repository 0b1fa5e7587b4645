"""How a DermIQ run is asked, read from its task card (`training.run.task_card`): the label set and layout of the system
turn it trained with, one image slot per image, the question, and the answer length.

The app and `medrl dermiq eval` both build their prompts here, so a model is never asked to choose among labels it
was not trained on (the app once offered a 6-label model all 13 conditions of the KG: 0.14 accuracy against 0.83).
"""

from __future__ import annotations

from .prompts import build_prompt, labels_of

DEFAULT_MAX_NEW_TOKENS = 160  # a full DermIQ answer (four headed lines and the label) fits


def labels(card: dict | None) -> list[str] | None:
    """The label set the run was trained to answer in (the system turn's `Labels:` line), None when it has none."""
    return labels_of((card or {}).get("prompt"))


def is_dermiq(card: dict | None) -> bool:
    return bool(labels(card))


def messages(card: dict | None, n_images: int = 1, fallback_labels: list[str] | None = None) -> list[dict]:
    """The prompt to ask with: the DermIQ prompt over the card's labels; for a run trained on another prompt (e.g. a
    plain image SFT), that prompt itself with `n_images` image slots; with no card, the DermIQ prompt over
    `fallback_labels`."""
    labs = labels(card)
    if labs:
        return build_prompt(labs, n_images)
    prompt = (card or {}).get("prompt")
    if prompt:
        return _with_images(prompt, n_images)
    if fallback_labels:
        return build_prompt(fallback_labels, n_images)
    raise ValueError("this run has no task card and no label set was given")


def _with_images(prompt: list[dict], n_images: int) -> list[dict]:
    """The card's messages with the user turn's image slots set to `n_images` (placed first, as training did)."""
    out = []
    for m in prompt:
        content = m.get("content")
        if m.get("role") == "user" and isinstance(content, list):
            text = [p for p in content if not (isinstance(p, dict) and p.get("type") == "image")]
            content = [*({"type": "image"} for _ in range(n_images)), *text]
        out.append({"role": m.get("role"), "content": content})
    return out


def max_new_tokens(card: dict | None) -> int:
    return int((card or {}).get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
