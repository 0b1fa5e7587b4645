"""DermIQ pipeline through the real CLI on the tiny VLM (one step per stage, a few tokens: the machinery, not the
learning); the conversational SFT targets; the stage chain by adapter; the ablation smoke."""

import json
from pathlib import Path

import pytest
import yaml

from dermiq.conversation import FOLLOW_UP, conversation_record
from dermiq.pipeline import FOLDERS, previous_adapter
from dermiq.rewards import accuracy_score, format_score
from dermiq.synthetic import make_record, make_sample
from knowledge_graph.disclaimer import DISCLAIMER
from knowledge_graph.io import load_builtin
from training.data.records import read_jsonl

pytestmark = pytest.mark.slow  # every stage of the pipeline, end to end


CONDS = "[melanoma,psoriasis,vitiligo]"
TINY = [
    "--pipeline.train_per_class=2",
    "--pipeline.test_per_class=1",
    "--pipeline.val_per_class=1",
    f"--pipeline.conditions={CONDS}",
    "--warmup.run.max_steps=1",
    "--grpo++.run.max_steps=1",
    "--sft.run.max_steps=1",
    "--dpo.run.max_steps=1",
    "--warmup.batch_size=2",
    "--sft.batch_size=2",
    "--grpo++.rollout.max_new_tokens=6",
    "--grpo++.prompts_per_step=1",
    "--pipeline.dpo_prompts=2",
    "--pipeline.dpo_max_new_tokens=6",
    "--pipeline.dpo_min_margin=0",
    "--pipeline.dpo_well_formed=false",
    "--pipeline.dpo_reference=true",
    "--pipeline.eval_max_new_tokens=6",
    "--dpo.batch_size=1",
    "--dpo.grad_accum=1",
    "--pipeline.warmup_per_class=1",
]


def test_conversation_record_is_built_from_label_and_kg():
    kg = load_builtin("derm")
    _, meta = make_sample(kg, "melanoma", seed=0, index=0)
    rec = make_record("x.png", kg, meta)
    msgs = conversation_record(rec, kg)["messages"]
    assert msgs[:2] == rec["prompt"] and [m["role"] for m in msgs[2:]] == ["assistant", "user", "assistant"]
    first, follow, talk = msgs[2]["content"], msgs[3]["content"], msgs[4]["content"]
    assert accuracy_score(first, "melanoma", meta) == 7.0 and format_score(
        first, rec["prompt"]
    ) == pytest.approx(1.0)
    assert follow == FOLLOW_UP
    assert (
        talk.startswith("Most likely diagnosis: melanoma.")
        and "Differential diagnosis: melanocytic nevus" in talk
    )
    assert "Supporting findings:" in talk and "Please see a dermatologist soon" in talk  # must-not-miss
    assert talk.endswith(DISCLAIMER)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    from app.cli import main

    out = tmp_path_factory.mktemp("dermiq") / "pipe"
    assert main(["dermiq", "train", "--out", str(out), "--eval", "none", *TINY]) == 0
    return out


def test_stages_chain_by_adapter(trained):
    cfg = {s: yaml.safe_load((trained / f / "config.yaml").read_text()) for s, f in FOLDERS.items()}
    assert cfg["warmup"]["model"]["adapter"] is None
    assert cfg["grpo++"]["model"]["adapter"] == str(trained / "warmup" / "adapter")
    assert cfg["sft"]["model"]["adapter"] == str(trained / "grpopp" / "adapter")
    assert cfg["dpo"]["model"]["adapter"] == str(trained / "sft" / "adapter")
    assert cfg["dpo"]["reference"]["kind"] == "start"  # the SFT adapter, frozen
    assert (
        cfg["grpo++"]["advantages"]["estimator"] == "grpo++"
        and cfg["grpo++"]["rollout"]["num_generations"] == 3
    )
    for f in FOLDERS.values():
        assert (trained / f / "adapter" / "adapter_model.safetensors").is_file()
    # any stage runs alone from the stage before it
    assert previous_adapter(trained, "dpo", None) == trained / "sft" / "adapter"
    assert previous_adapter(trained, "warmup", "x/adapter").as_posix() == "x/adapter"
    # the warm-up learns from the first train record of each condition (warmup_per_class=1), GRPO++ from all of them
    train = read_jsonl(trained / "data" / "train.jsonl", "rl").records
    warm = read_jsonl(trained / "data" / "warmup_sft.jsonl", "sft").records
    firsts = {}
    for r in train:
        firsts.setdefault(r["meta"]["condition_id"], r)
    assert len(train) == 6 and len(warm) == 3
    assert [Path(w["images"][0]).resolve() for w in warm] == [
        Path(r["images"][0]).resolve() for r in firsts.values()
    ]
    assert cfg["grpo++"]["data"]["train"] == str(trained / "data" / "train.jsonl")
    # the SFT stage's data: two-turn conversations, plus the recipe's sft_replay (3) x as many single-turn references
    # (the diagnosis turn alone, word for word); DPO pairs: KG-scored samples of the SFT policy
    sft = read_jsonl(trained / "data" / "sft_sft.jsonl", "sft").records
    talks = [r["messages"] for r in sft if len(r["messages"]) == 5]
    single = [r["messages"] for r in sft if len(r["messages"]) == 3]
    assert len(talks) == 6 and len(single) == 18 and len(sft) == 24
    assert {m[2]["content"] for m in single} == {m[2]["content"] for m in talks}
    pairs = [json.loads(x) for x in (trained / "data" / "dpo_pairs.jsonl").read_text().splitlines()]
    assert pairs and all(
        p["meta"]["chosen_score"]["total"] >= p["meta"]["rejected_score"]["total"] for p in pairs
    )
    assert all(p["chosen"][0]["role"] == "assistant" and len(p["images"]) == 1 for p in pairs)


def test_eval_writes_isic_csv_and_metrics(trained, cli):
    import csv

    from sklearn.metrics import balanced_accuracy_score

    test = trained / "data" / "test.jsonl"
    assert cli("dermiq", "eval", trained / "dpo", "--data", test, "--max-new-tokens", "6", "--vote", "2") == 0
    ev = trained / "dpo" / "eval"
    m = json.loads((ev / "metrics.json").read_text())
    labels = ["melanoma", "psoriasis", "vitiligo"]
    assert m["n"] == 3 and m["labels"] == labels and m["vote"] == 2 and "vote_balanced_accuracy" in m
    with open(ev / "metrics_probabilities.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", *labels] and len(rows) == 4
    for r in rows[1:]:
        assert sum(float(x) for x in r[1:]) == pytest.approx(1.0, abs=1e-4)
    import numpy as np
    from sklearn.metrics import roc_auc_score

    gold = [labels.index(p) for p in (json.loads(line)["answer"] for line in test.read_text().splitlines())]
    probs = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    probs /= probs.sum(1, keepdims=True)  # as the evaluation normalises over the labels present
    if m["auc_macro_ovr"] is not None:  # the figure recomputes exactly from the CSV written beside it
        assert roc_auc_score(gold, probs, multi_class="ovr", average="macro") == m["auc_macro_ovr"]
    with open(ev / "metrics_predictions.csv") as f:
        preds = list(csv.DictReader(f))
    assert [p["image"] for p in preds] == [r[0] for r in rows[1:]]
    assert m["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score([p["gold"] for p in preds], [p["pred"] for p in preds])
    )
    assert (ev / "metrics_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sum(map(sum, m["confusion"])) == 3


def test_eval_during_training_keeps_the_best_adapter_and_the_next_stage_starts_from_it(
    trained, cli, tmp_path
):
    """`--grpo++.eval.every` evaluates the live policy on the validation split with the DermIQ evaluator; its
    metrics sit in the same metrics.jsonl row as the step's reward, the app lists them right after the reward, and
    `run.keep_best` keeps the best evaluation's adapter, which `pipeline.chain_from=best` hands to the next stage."""
    from app.runs import RunsReader

    out = tmp_path / "evalrun"
    args = [
        *("dermiq", "train", "--out", out, "--eval", "none", "--stages", "grpo++,sft"),
        *("--start-adapter", trained / "warmup" / "adapter", *TINY),
        *("--grpo++.run.max_steps=2", "--grpo++.eval.every=1", "--grpo++.eval.limit=3"),
        *(
            "--grpo++.eval.max_new_tokens=6",
            "--grpo++.run.keep_best=balanced_accuracy",
            "--pipeline.chain_from=best",
        ),
    ]
    assert cli(*args) == 0
    rl = out / "grpopp"
    rows = [r for r in map(json.loads, (rl / "metrics.jsonl").read_text().splitlines()) if "reward/mean" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:  # held-out metrics beside the training reward, in the same row
        assert 0.0 <= r["eval/balanced_accuracy"] <= 1.0 and "eval/format_valid" in r
        assert (rl / "eval" / f"step{r['step']:05d}.json").is_file()  # recomputable from the files beside it
    best = json.loads((rl / "best" / "best.json").read_text())
    assert best["metric"] == "balanced_accuracy" and best["mode"] == "max"
    assert best["value"] == max(r["eval/balanced_accuracy"] for r in rows)  # the first step reaching the max
    assert best["step"] == next(r["step"] for r in rows if r["eval/balanced_accuracy"] == best["value"])
    assert (rl / "best" / "adapter_model.safetensors").is_file()
    sft = yaml.safe_load((out / "sft" / "config.yaml").read_text())
    assert sft["model"]["adapter"] == str(rl / "best")  # chained from the best adapter, not the last
    reader = RunsReader(out)
    assert reader.metric_names("grpopp")[:2] == ["reward/mean", "eval/balanced_accuracy"]
    assert "best" in reader.info("grpopp").stages and reader.adapter_dir("grpopp", "best") == rl / "best"


def test_a_seeded_pipeline_repeats_bit_for_bit(trained, tmp_path, one_thread):
    """Runs that repeat: the same recipe and seed, run again in another folder on the same machine, gives every
    stage's adapter byte for byte (the base model is the shipped one, whatever built the model cache)."""
    import hashlib

    from app.cli import main

    again = tmp_path / "again"
    assert main(["dermiq", "train", "--out", str(again), "--eval", "none", *TINY]) == 0
    for folder in FOLDERS.values():
        a, b = (
            hashlib.sha256((root / folder / "adapter" / "adapter_model.safetensors").read_bytes()).hexdigest()
            for root in (trained, again)
        )
        assert a == b, folder


def test_the_dpo_stage_trains_on_a_given_pair_file(trained, cli, tmp_path, capsys):
    """`--pairs FILE` (e.g. from `medrl feedback export`): the DPO stage trains on it instead of building KG pairs."""
    pairs = tmp_path / "reviewed.jsonl"
    pairs.write_text((trained / "data" / "dpo_pairs.jsonl").read_text())
    out = tmp_path / "dpo_only"
    args = [
        "dermiq",
        "train",
        "--out",
        out,
        "--stages",
        "dpo",
        "--start-adapter",
        trained / "sft" / "adapter",
    ]
    assert cli(*args, "--pairs", pairs, "--eval", "none", *TINY) == 0
    assert f"the DPO stage trains on {pairs}" in capsys.readouterr().out
    cfg = yaml.safe_load((out / "dpo" / "config.yaml").read_text())
    assert cfg["data"]["train"] == str(pairs.resolve()) and not (out / "data" / "dpo_pairs.jsonl").exists()
    assert cli(*args, "--pairs", tmp_path / "none.jsonl", "--out", tmp_path / "x", *TINY) == 2


def test_ablate_smoke(trained, cli):
    out = trained  # reuses the warm-up adapter as the common start
    assert (
        cli(
            "dermiq",
            "ablate",
            "--out",
            out,
            "--arms",
            "grpo,binary",
            "--seeds",
            "0",
            "--steps",
            "1",
            "--limit",
            "2",
            *TINY,
        )
        == 0
    )
    res = json.loads((out / "ablation.json").read_text())
    assert [r["arm"] for r in res["runs"]] == ["start", "grpo", "binary"] and res["group_size"] == 3
    grpo, binary = res["runs"][1], res["runs"][2]
    assert 0.0 <= grpo["signal"] <= 1.0 and binary["signal"] == 1.0 and grpo["spread"] == grpo["signal"]
    for r in res["runs"]:
        assert 0.0 <= r["balanced_accuracy"] <= 1.0
    assert "| binary | 1 |" in (out / "ablation.md").read_text()


@pytest.mark.parametrize("recipe", ["tiny", "3b"])
def test_pipeline_recipes_load_every_stage(recipe, tmp_path):
    from dermiq.pipeline import load_recipe, pipeline_config, stage_config

    raw = load_recipe(recipe)
    pc = pipeline_config(raw)
    data = {"data": {"train": "x.jsonl"}}  # the pipeline fills it in
    for stage in ("warmup", "grpo++", "sft", "dpo"):
        cfg = stage_config(raw, stage, tmp_path, pc.seed, data)
        assert cfg.run.dir == tmp_path / FOLDERS[stage]
    rl = stage_config(raw, "grpo++", tmp_path, 0, data)
    # the seed's 0.7 on the 3B; from the tiny warm-up 15% of samples are well-formed at 0.7 (86% at 0.5)
    assert rl.rollout.temperature == {"3b": 0.7, "tiny": 0.5}[recipe]
    assert rl.rollout.num_generations == 3 and rl.advantages.estimator == "grpo++"
    assert rl.reference.kind == "lagged" and rl.reference.sync_every == 10 and rl.loss.kl_estimator == "k1"
    assert stage_config(raw, "dpo", tmp_path, 0, data).reference.kind == "start"
    with pytest.raises(Exception, match="warmup_per_class"):
        pipeline_config({**raw, "pipeline": {**raw["pipeline"], "warmup_per_class": 0}})
    with pytest.raises(Exception, match="unknown stage 'ppo'"):
        from dermiq.pipeline import stage_name

        stage_name("ppo")


def test_pairs_written_for_review_then_audited(trained, cli, tmp_path, capsys):
    """`medrl dermiq pairs` writes the judged pairs from the SFT stage; `medrl kg audit` reviews them."""
    import shutil

    out = tmp_path / "pipe"
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns("dpo", "dpo_pairs*"))
    assert cli("dermiq", "pairs", "--out", out, *TINY) == 0
    summary = json.loads((out / "data" / "dpo_pairs.summary.json").read_text())
    rows = [json.loads(x) for x in (out / "data" / "dpo_pairs.jsonl").read_text().splitlines()]
    assert summary["pairs"] == len(rows) > 0 and 0 <= summary["abstention_rate"] <= 1
    assert all(r["meta"]["decided_by"] for r in rows)
    assert {r["meta"]["judge"]["abstention_rate"] for r in rows} == {summary["abstention_rate"]}
    assert cli("kg", "audit", out, "--html", tmp_path / "audit.html") == 0
    assert "decided by:" in capsys.readouterr().out and (tmp_path / "audit.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("dermiq", "pairs", "--out", empty, *TINY) == 2  # no SFT adapter there: one line, exit 2
