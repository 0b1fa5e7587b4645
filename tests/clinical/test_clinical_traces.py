"""README path B with one's own questions: a MedMCQA import names no KG condition, so the cold start's boxed traces
come from the KG's vignettes instead of stopping (the README promises this fallback)."""

import json

from clinical.data import import_data
from clinical.pipeline import PipelineConfig, sft_traces
from training.data.records import read_jsonl

ROW = {
    "question": "Drug of choice for absence seizures?",
    "opa": "Ethosuximide",
    "opb": "Phenytoin",
    "opc": "Carbamazepine",
    "opd": "Gabapentin",
    "cop": 1,
    "choice_type": "single",
    "exp": "",
    "subject_name": "Pharmacology",
    "topic_name": "CNS",
}


def test_questions_without_kg_conditions_get_vignette_traces(tmp_path, capsys):
    src = tmp_path / "train.json"
    src.write_text(
        "\n".join(
            json.dumps({**ROW, "id": f"q{i}", "question": f"{ROW['question']} ({i})"}) for i in range(20)
        )
    )
    data = tmp_path / "medmcqa"
    import_data("medmcqa", src, data, val_frac=0.1, test_frac=0.1, seed=0)
    out = tmp_path / "run"
    path = sft_traces(PipelineConfig(vignettes=20, trace_style="lead"), data, out)
    rows = read_jsonl(path, "sft").records
    assert rows and all("\\boxed{" in r["messages"][-1]["content"] for r in rows)
    assert (out / "data" / "vignettes" / "train.jsonl").is_file()
    assert "no question names a KG condition" in capsys.readouterr().out
    assert sft_traces(PipelineConfig(vignettes=20), data, out) == path  # built once, reused on a re-run
