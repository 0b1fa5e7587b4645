"""Export a run's adapter for the ordinary Hugging Face tools, optionally merged onto a 16-bit base.

The adapter folder loads with `peft.PeftModel.from_pretrained(base, DIR)`. `--merge` loads a fresh 16-bit
(or fp32) copy of the base, never the 4-bit weights a QLoRA run trained against, and merges into that: merging
into nf4 weights would re-quantise the update away.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import yaml

from training.atomic import atomic_dir
from training.card_notice import card_notices
from training.config import ModelConfig, from_dict
from training.errors import MedrlError
from training.run.rundir import RunDir
from training.run.task_card import CARD_FILE, read_card, write_card

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def run_model_config(run: RunDir) -> tuple[ModelConfig, dict]:
    if not run.is_run():
        raise MedrlError(f"{run.path}: not a run folder (no config.yaml)")
    raw = run.read_config()
    return from_dict(ModelConfig, raw.get("model", {}), "model"), raw


def find_adapter(run: RunDir) -> Path:
    found = run.find_adapter()
    if found is None:
        raise MedrlError(f"{run.path}: no adapter to export (no adapter/ and no checkpoint with an adapter)")
    return found


def asking(card: dict | None) -> str:
    """The model card's "How to ask it" section from the run's task card: the prompt it was trained on (the system
    turn verbatim, the user turn as an example), the answer length and sampling. A model asked otherwise answers
    worse (a 6-label DermIQ model asked with 13 labels fell from 0.83 to 0.14 accuracy)."""
    if not card or not card.get("prompt"):
        return (
            "\n## How to ask it\nThis run has no task card (`task.json`): ask it the way its training data "
            "(`medrl_config.yaml`, data.train) asks.\n"
        )
    turns = []
    for m in card["prompt"]:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(
                "<image>" if p.get("type") == "image" else str(p.get("text", "")) for p in content
            )
        turns.append(f"[{m.get('role')}]\n{content}")
    body = "\n\n".join(turns).replace(FENCE, "` ` `")
    n = card.get("max_new_tokens")
    sampling = "greedy" if not card.get("temperature") else f"temperature {card['temperature']}"
    return (
        f"\n## How to ask it\nAsk it the way it was trained (`task.json` beside this card holds this; the medrl "
        f"app and evaluations read it): the system turn verbatim, then your question laid out like the example "
        f"user turn; answers up to {n or 'the length of its training answers in'} new tokens, {sampling}.\n"
        f"{FENCE}text\n{body}\n{FENCE}\n"
    )


FENCE = "`" * 3


def model_card(
    run: RunDir,
    raw_cfg: dict,
    adapter_src: Path,
    base_path: str,
    merged: dict | None,
    gguf: dict | None = None,
) -> str:
    task = read_card(run.path)
    rows = run.read_metrics()
    start = next((r for r in rows if r.get("event") == "start"), {})
    last = next((r for r in reversed(rows) if "loss" in r), {})
    model = raw_cfg.get("model", {})
    data = raw_cfg.get("data", {})
    metrics = (
        "\n".join(
            f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in last.items()
            if k not in ("time",)
        )
        or "| (none logged) | |"
    )
    merged_txt = ""
    if merged:
        merged_txt = (
            f"\n## Merged model\n`merged/` holds the adapter merged onto a {merged['dtype']} copy of the base "
            f"(max |logit difference| vs base+adapter on a probe: {merged['max_logit_diff']:.3g}).\n"
        )
    if gguf:
        from training.export_gguf import gguf_section

        merged_txt += gguf_section(gguf)
    notices = card_notices()
    tags = ", ".join(dict.fromkeys(["medrl", "lora", *(t for n in notices for t in n.tags)]))
    banner = "".join(f"\n> **{n.notice}**\n" for n in notices)
    limits = "\n".join(f"{n.intended_use}\n{n.notice}" if n.intended_use else n.notice for n in notices)
    return f"""---
library_name: peft
base_model: {model.get("name", "")}
tags: [{tags}]
---
# {run.name} (medrl LoRA adapter)
{banner}
## Base model
`{model.get("name", "")}` (loaded from `{base_path}`), quantization during training: `{model.get("quantization", "none")}`.
{"This is medrl's *embedded default*: a tiny model of the real architecture built by code (randomly initialised, then taught only to copy text and read simple images), for exercising the pipeline. It has no medical skill. Rebuild its base with `medrl` on the same version (`training.models.embedded.ensure_embedded`)." if str(model.get("name", "")).startswith("embedded:") else ""}

## Data
`{data.get("train", "")}`: {start.get("records", "?")} records used, {start.get("records_skipped", 0)} skipped.

## Recipe
Trainer `{raw_cfg.get("trainer", "?")}`; the full resolved config is `medrl_config.yaml` beside this card.
LoRA r={model.get("lora", {}).get("r")}, alpha={model.get("lora", {}).get("alpha")}, targets: language-model projections.
{f"Training started from the adapter `{model.get('adapter')}` (its LoRA settings apply)." if model.get("adapter") else ""}
Exported from `{adapter_src}`.

## Final metrics
| metric | value |
|---|---|
{metrics}
{merged_txt}{asking(task)}
## Use
```python
from peft import PeftModel
from transformers import AutoModelForCausalLM  # AutoModelForImageTextToText for a VLM base
base = AutoModelForCausalLM.from_pretrained("<base model>")
model = PeftModel.from_pretrained(base, "<this folder>")
```

## Intended use and limits
{limits or "Not stated by the exporter."}
"""


def _probe_inputs(tokenizer) -> dict:
    text = "The lesion is an asymmetric macule with irregular border. Most likely diagnosis:"
    return tokenizer(text, return_tensors="pt")


def merge_adapter(base_cfg: ModelConfig, adapter_dir: Path, out: Path, dtype: str) -> dict:
    """Merge onto a fresh unquantised base in `dtype`; returns the probe's max logit difference."""
    from peft import PeftModel

    from training.models.loading import load_base

    cfg = ModelConfig(**{**base_cfg.__dict__, "quantization": "none", "dtype": dtype, "device": "cpu"})
    base, processor, tokenizer, _, _, _, _ = load_base(cfg)
    if _touches_tied_embeddings(adapter_dir):
        _untie_output_embeddings(base)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    probe = _probe_inputs(tokenizer)
    with torch.no_grad():
        before = model(**probe).logits.float()
        merged = model.merge_and_unload()
        after = merged(**probe).logits.float()
    diff = float((before - after).abs().max())
    if diff > MERGE_TOLERANCE:
        raise MedrlError(
            f"{adapter_dir}: the merged model's logits differ from the adapter's by {diff:.3g} (more than "
            f"{MERGE_TOLERANCE}); nothing was written. Export the adapter alone (without --merge)."
        )
    merged.save_pretrained(str(out), safe_serialization=True)
    processor.save_pretrained(str(out))
    return {"dtype": dtype, "max_logit_diff": diff}


# max logit difference of a correct merge: rounding only (bf16 reaches ~0.1 on a 3B model)
MERGE_TOLERANCE = 1.0
TIED = ("lm_head", "embed_tokens")


def _touches_tied_embeddings(adapter_dir: Path) -> bool:
    """Whether the adapter changes the output head or the input embeddings (LoRA on them, or saved whole)."""
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        return any(t in k for k in f.keys() for t in TIED)


def _untie_output_embeddings(base: torch.nn.Module) -> None:
    """Give the head its own copy of a tied embedding matrix: merging a LoRA on `lm_head` (or `embed_tokens`) into
    the one shared matrix would change the other as well (a 38-logit error, measured on the tiny Qwen2)."""
    head, emb = base.get_output_embeddings(), base.get_input_embeddings()
    if head is None or emb is None or head.weight is not emb.weight:
        return
    head.weight = torch.nn.Parameter(emb.weight.detach().clone(), requires_grad=False)
    for cfg in {id(c): c for c in (base.config, base.config.get_text_config())}.values():
        cfg.tie_word_embeddings = False


def export_run(
    run_dir: str | Path,
    out: str | Path,
    merge: bool = False,
    dtype: str = "bfloat16",
    gguf: str | None = None,
    llama_cpp: str | None = None,
) -> dict:
    """Write the adapter and its model card into `out` (atomically); `merge`: also merged/; `gguf` (a type from
    training.gguf.TYPES): also a llama.cpp file checked in llama.cpp, and an Ollama Modelfile (training.export_gguf).
    A GGUF whose check fails is still written (for inspection); the result's `verdict` says why it does not stand."""
    run, out = RunDir(run_dir), Path(out)
    if not run.path.is_dir():
        raise MedrlError(f"{run.path}: run folder not found")
    model_cfg, raw = run_model_config(run)
    src = find_adapter(run)
    adapter_cfg = json.loads((src / "adapter_config.json").read_text())
    base_path = adapter_cfg.get("base_model_name_or_path", model_cfg.name)
    result: dict = {"adapter": str(out), "source": str(src)}
    with atomic_dir(out) as tmp:
        for f in src.iterdir():
            if f.is_file() and f.name != "README.md":
                shutil.copy2(f, tmp / f.name)
        (tmp / "medrl_config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        task = read_card(run.path)
        if task is not None:
            write_card(tmp, task)  # how to ask it travels with the adapter
            result["task_card"] = str(out / CARD_FILE)
        merged = found = None
        if gguf:
            from training.export_gguf import export_gguf

            found = export_gguf(
                run, raw, model_cfg, src, tmp, gguf, dtype, llama_cpp, tmp / "merged" if merge else None
            )
            found = json.loads(json.dumps(found).replace(str(tmp), str(out)))
            result.update(found)
            merged = {k: found[k] for k in ("dtype", "max_logit_diff")} if merge else None
        elif merge:
            merged = merge_adapter(model_cfg, src, tmp / "merged", dtype)
        if merge:
            result["merged"] = str(out / "merged")
            result.update(merged)
        card = model_card(run, raw, src, base_path, merged, found)
        (tmp / "README.md").write_text(card)
        if merge:
            (tmp / "merged" / "README.md").write_text(card)
    return result
