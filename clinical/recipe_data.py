"""`medrl recipes --data`: the clinical files the single-stage tiny recipes read (`training.recipes.write_data`).

- `clinical_sft.jsonl` (`sft_qwen2_tiny`): 24 KG vignettes answered with their reference reasoning.
- `clinical_dpo.jsonl` (`dpo_qwen2_tiny`): the same vignettes, the reference answer chosen over the same reasoning
  ending in a wrong option (the KG-preference shape: a right diagnosis outranks a wrong one).
- `cases.jsonl`, `cases-sft.jsonl` (`clinical_cases_tiny`): 64 multi-step cases and their opening-action
  demonstrations (what `python -m clinical.cases` writes).
"""

from __future__ import annotations

from pathlib import Path

from training.data.records import write_jsonl

from . import records


def _wrong_answer(vignette: dict) -> str:
    wrong = next(k for k in sorted(vignette["options"]) if k != vignette["answer_idx"])
    right = records.reference_answer(vignette)
    return right.rsplit("<answer>", 1)[0] + f"<answer>{wrong}) {vignette['options'][wrong]}</answer>"


def dpo_pair(vignette: dict) -> dict:
    return {
        "prompt": [{"role": "user", "content": records.question(vignette)}],
        "chosen": [{"role": "assistant", "content": records.reference_answer(vignette)}],
        "rejected": [{"role": "assistant", "content": _wrong_answer(vignette)}],
        "images": [],
    }


def write(out: str | Path, seed: int = 0) -> dict[str, Path]:
    from training.rollout.env import OBSERVATION

    from .cases import make_case_records, sft_records
    from .synthetic import generate_vignettes

    out = Path(out)
    vignettes = generate_vignettes(24, seed=seed)
    cases = make_case_records(64, seed)
    paths = {
        "clinical_sft.jsonl": out / "clinical_sft.jsonl",
        "clinical_dpo.jsonl": out / "clinical_dpo.jsonl",
        "cases.jsonl": out / "cases.jsonl",
        "cases-sft.jsonl": out / "cases-sft.jsonl",
    }
    write_jsonl(paths["clinical_sft.jsonl"], records.sft_records(vignettes))
    write_jsonl(paths["clinical_dpo.jsonl"], [dpo_pair(v) for v in vignettes])
    write_jsonl(paths["cases.jsonl"], cases)
    write_jsonl(paths["cases-sft.jsonl"], sft_records(cases, OBSERVATION))
    return paths
