"""`medrl clinical harness --data DIR --out TASKS`: lm-evaluation-harness tasks over imported clinical records.

The medical RL papers report MedQA / MedMCQA / PubMedQA through lm-evaluation-harness; this writes its task files
over the local files `medrl clinical import` made (no hub access needed), one task per data source
(`medrl_clinical_<source>`) and a group `medrl_clinical` over them, so a run's numbers can be put beside theirs:

    lm_eval --model hf --model_args pretrained=BASE,peft=ADAPTER,dtype=float32 --include_path TASKS \\
        --tasks medrl_clinical --apply_chat_template --batch_size 1

The tasks ask as `medrl clinical eval` does: the run's system turn (its task card's; Clinical-R1's without a run)
over each record's question, greedy, up to the same number of new tokens, and score as it does: right when the answer
holds exactly one ``\\boxed{}`` and that box holds the gold letter (utils.py beside the YAMLs, self-contained, so the
folder works without medrl installed).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from training.errors import MedrlError

from . import task

GROUP = "medrl_clinical"
# Stop strings of the ChatML family (Qwen2/Qwen2.5), beside the model's own end-of-text token lm-eval adds itself.
UNTIL = ["<|im_end|>", "<|endoftext|>"]
UTILS = '''"""Scoring for the medrl_clinical tasks, written by `medrl clinical harness` (the rule of `medrl clinical eval`,
clinical.rewards.accuracy_score == 1): right when the answer holds exactly one \\\\boxed{} and it holds the gold letter."""

import re

BOX = "\\\\boxed"
BOX_RE = re.compile(r"\\\\boxed\\{(.*?)\\}", re.S)


def correct(text, gold):
    if text.count(BOX) != 1:
        return 0.0
    found = BOX_RE.findall(text)
    inside = found[0].strip() if found else ""
    return float(len(inside) == 1 and inside.isupper() and inside == str(gold).strip().upper())


def process_results(doc, results):
    return {"acc": correct(results[0], doc["answer"])}
'''


def task_name(source: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in source.lower()).strip("_") or "unknown"
    return f"{GROUP}_{safe}"


def harness_rows(records: list[dict], card: dict | None) -> dict[str, list[dict]]:
    """Records grouped by source as the tasks' documents: the system turn and the question as evaluation asks them."""
    by: dict[str, list[dict]] = defaultdict(list)
    for i, rec in enumerate(records):
        msgs = task.record_messages(card, rec)
        system = "".join(str(m["content"]) for m in msgs if m.get("role") == "system")
        users = [m for m in msgs if m.get("role") != "system"]
        if len(users) != 1 or not isinstance(users[0].get("content"), str) or not rec.get("answer"):
            raise MedrlError(f"record {i + 1}: expected one text user turn and an 'answer' letter")
        meta = rec.get("meta") or {}
        by[str(meta.get("source", "unknown"))].append(
            {
                "id": str(meta.get("id", i)),
                "system": system,
                "question": users[0]["content"],
                "answer": rec["answer"],
            }
        )
    return dict(by)


def task_yaml(name: str, data_file: Path, max_new_tokens: int) -> str:
    """One lm-eval task. Written by hand, not by a YAML library: `!function` is lm-eval's own tag. JSON strings are
    YAML double-quoted scalars."""
    q = json.dumps
    return "\n".join(
        [
            f"task: {name}",
            "dataset_path: json",
            "dataset_kwargs:",
            f"  data_files: {{test: {q(str(data_file.resolve()))}}}",
            "test_split: test",
            "output_type: generate_until",
            'description: "{{system}}"',
            'doc_to_text: "{{question}}"',
            'doc_to_target: "{{answer}}"',
            'target_delimiter: ""',
            "generation_kwargs:",
            f"  until: {q(UNTIL)}",
            "  do_sample: false",
            f"  max_gen_toks: {int(max_new_tokens)}",
            "process_results: !function utils.process_results",
            "metric_list:",
            "  - {metric: acc, aggregation: mean, higher_is_better: true}",
            "metadata: {version: 1.0}",
            "",
        ]
    )


def group_yaml(names: list[str]) -> str:
    return "\n".join(
        [
            f"group: {GROUP}",
            "task:",
            *[f"  - {n}" for n in names],
            "aggregate_metric_list:",
            "  - {metric: acc, aggregation: mean, weight_by_size: true}",
            "metadata: {version: 1.0}",
            "",
        ]
    )


def write_tasks(
    data: str | Path,
    out: str | Path,
    run: str | Path | None = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
) -> dict:
    """Write TASKS/: per source a document file and a task YAML, the group YAML and utils.py. `data`: an import
    folder (its test.jsonl) or a records file; `run`: the run whose task card sets the system turn and answer length."""
    from training.data.records import read_jsonl
    from training.run.task_card import read_card

    path = Path(data)
    dataset = read_jsonl(
        path / "test.jsonl" if path.is_dir() else path, "rl", limit=limit
    )  # as evaluation reads it
    records = dataset.records
    card = read_card(run) if run else None
    if run and card is None:
        raise MedrlError(f"{run}: no task card (task.json) to ask as the run was trained")
    n_tokens = max_new_tokens or task.max_new_tokens(card)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for source, rows in sorted(harness_rows(records, card).items()):
        name = task_name(source)
        doc_file = out / f"{name}.jsonl"
        doc_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        (out / f"{name}.yaml").write_text(task_yaml(name, doc_file, n_tokens))
        names.append(name)
    (out / f"{GROUP}.yaml").write_text(group_yaml(names))
    (out / "utils.py").write_text(UTILS)
    return {
        "tasks": names,
        "group": GROUP,
        "questions": len(records),
        "skipped": len(dataset.skipped),
        "max_gen_toks": n_tokens,
        "out": str(out),
    }
