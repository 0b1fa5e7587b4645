"""`medrl recipes --data`: the dermatology files the single-stage tiny recipes read (`training.recipes.write_data`).

- `lesions/` (`images/`, `records.jsonl`; `dermiq_tiny`): 2 synthetic lesions per default condition, drawn from the KG.
- `derm_sft.jsonl` (`sft_qwen25vl_tiny`): those lesions answered with the reference DermIQ response.
- `derm_dpo.jsonl` (`dpo_qwen25vl_tiny`): the reference response chosen over the same analysis naming another
  condition of the label set.
Image paths are relative to the JSONL file that names them.
"""

from __future__ import annotations

from pathlib import Path

from training.data.records import write_jsonl

from .prompts import reference_response
from .records import sft_records
from .synthetic import generate_dataset


def write(out: str | Path, seed: int = 0) -> dict[str, Path]:
    from knowledge_graph.io import load_builtin

    out = Path(out)
    kg = load_builtin("derm")
    lesions = generate_dataset(out / "lesions", n_per_class=2, seed=seed, kg=kg, progress=False)
    moved = [{**r, "images": [f"lesions/{p}" for p in r["images"]]} for r in lesions]  # relative to `out`
    labels = sorted({r["answer"] for r in lesions})
    pairs = []
    for r in moved:
        findings = r["meta"].get("findings", {})
        name = lambda i: kg.label(i) if i in kg else str(i)  # noqa: E731
        wrong = labels[(labels.index(r["answer"]) + 1) % len(labels)]
        pairs.append(
            {
                "prompt": r["prompt"],
                "images": r["images"],
                "chosen": [{"role": "assistant", "content": reference_response(findings, r["answer"], name)}],
                "rejected": [{"role": "assistant", "content": reference_response(findings, wrong, name)}],
            }
        )
    paths = {
        "lesions/records.jsonl": out / "lesions" / "records.jsonl",
        "derm_sft.jsonl": out / "derm_sft.jsonl",
        "derm_dpo.jsonl": out / "derm_dpo.jsonl",
    }
    write_jsonl(paths["derm_sft.jsonl"], sft_records(moved, kg))
    write_jsonl(paths["derm_dpo.jsonl"], pairs)
    return paths
