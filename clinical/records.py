"""Synthetic MedQA-style vignettes (`clinical.synthetic`) -> the common JSONL records (README "Data formats").

Both records ask the same question (stem, then one option per line); the SFT target reasons over the vignette's
findings before naming the option, as `<think>...</think><answer>X) label</answer>` (the KG claim checker reads the
diagnosis inside `<answer>`). Torch-free.
"""

from __future__ import annotations


def question(vignette: dict) -> str:
    """The stem followed by `A) ...` to `E) ...`, one per line."""
    opts = "\n".join(f"{k}) {t}" for k, t in sorted(vignette["options"].items()))
    return f"{vignette['question']}\n{opts}"


def reference_answer(vignette: dict) -> str:
    """Key findings (history, exam, labs), then the correct option as `<answer>X) label</answer>`."""
    findings = [f for part in ("history", "exam", "labs") for f in vignette["findings"].get(part, [])]
    return (f"<think>Key findings: {', '.join(findings)}. These fit {vignette['answer']} best.</think>\n"
            f"<answer>{vignette['answer_idx']}) {vignette['answer']}</answer>")


def sft_record(vignette: dict) -> dict:
    return {"messages": [{"role": "user", "content": question(vignette)},
                         {"role": "assistant", "content": reference_answer(vignette)}], "images": []}


def rl_record(vignette: dict) -> dict:
    """The question as an RL prompt; `answer` is the option letter, the rest of the ground truth goes to `meta`
    (reward functions receive record fields as keyword arguments)."""
    meta = {k: vignette[k] for k in ("options", "condition_id", "findings", "finding_ids", "seed") if k in vignette}
    return {"prompt": [{"role": "user", "content": question(vignette)}], "images": [],
            "answer": vignette["answer_idx"], "meta": {**meta, "answer_text": vignette["answer"],
                                                       "source": "synthetic"}}


def sft_records(vignettes: list[dict]) -> list[dict]:
    return [sft_record(v) for v in vignettes]


def rl_records(vignettes: list[dict]) -> list[dict]:
    return [rl_record(v) for v in vignettes]
