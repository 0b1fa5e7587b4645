"""`medrl export RUN --out DIR --format gguf`: the run merged, converted by llama.cpp, checked in llama.cpp, and an
Ollama Modelfile beside it.

The check is what a user would do by hand after a conversion, done every time: the same prompts (the run's own task
card and training prompts, so the adapter's effect shows) are answered greedily by the GGUF in llama.cpp, by the
merged Hugging Face model and by the base model. The export stands when llama.cpp agrees with the merged model and
the base answers differently; a GGUF that answers like the base (the adapter lost in conversion) or unlike the merged
model is an error, with the file left for inspection.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from training.config import ModelConfig
from training.errors import MedrlError
from training.gguf import QUANTIZED, bindings, convert, find_converter, quantize
from training.run.rundir import RunDir
from training.run.task_card import prompt_of, read_card

PROBE_TOKENS = 24  # greedy tokens compared per prompt
PROBES = 4  # prompts from the run's training file, beside the task card's


def probe_messages(run: RunDir, raw_cfg: dict) -> list[list[dict]]:
    """Text prompts the run was trained on: the task card's, then the first records' of its training file. A VLM's
    prompts lose their images: the check runs the language model, which llama.cpp holds in the main file."""
    card = read_card(run.path)
    found = [card["prompt"]] if card and card.get("prompt") else []
    train = (raw_cfg.get("data") or {}).get("train")
    if train and Path(train).is_file():
        with open(train, encoding="utf-8") as f:
            for line in f:
                if len(found) > PROBES:
                    break
                try:
                    found.append(prompt_of(json.loads(line)))
                except (ValueError, AttributeError):
                    continue
    text_only = [
        [{"role": m.get("role"), "content": _text(m.get("content"))} for m in msgs] for msgs in found if msgs
    ]
    unique = list({json.dumps(m): m for m in text_only}.values())
    return unique or [[{"role": "user", "content": "Summarise what you were trained to do."}]]


def _text(content) -> str:
    if isinstance(content, list):
        return " ".join(str(p["text"]) for p in content if isinstance(p, dict) and p.get("text"))
    return str(content or "")


def reference(merged_dir: Path, base_cfg: ModelConfig, messages: list[list[dict]], vlm: bool = False) -> dict:
    """The probe prompts as token ids and the greedy answers of the merged model and of the base (Hugging Face, fp32
    compute): what every GGUF of this export is held against."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    from training.gguf import hf_greedy
    from training.models.loading import load_base

    tok = AutoTokenizer.from_pretrained(merged_dir)
    texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    ids = [tok(t, add_special_tokens=False).input_ids for t in texts]
    stop = {i for i in (tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")) if isinstance(i, int)}
    auto = AutoModelForImageTextToText if vlm else AutoModelForCausalLM
    merged = auto.from_pretrained(merged_dir, dtype=torch.float32).eval()
    want = hf_greedy(merged, ids, PROBE_TOKENS, stop)
    del merged
    cfg = ModelConfig(**{**base_cfg.__dict__, "quantization": "none", "dtype": "float32", "device": "cpu"})
    base = hf_greedy(load_base(cfg)[0].eval(), ids, PROBE_TOKENS, stop)
    bare = tok.apply_chat_template([{"role": "user", "content": "?"}], tokenize=False)
    head = "<|im_start|>system\n"  # the system turn the template adds to a conversation without one
    default_system = bare[len(head) : bare.index("<|im_end|>")] if bare.startswith(head) else ""
    return {
        "texts": texts,
        "ids": ids,
        "stop": stop,
        "merged": want,
        "base": base,
        "decode": tok.decode,
        "default_system": default_system,
    }


def check(gguf: Path, ref: dict) -> dict:
    """The GGUF's greedy answers in llama.cpp against the reference. A probe is informative when the merged model
    and the base answer it differently; on those, the GGUF is closer to one of them (the longer common start)."""
    from training.gguf import llama_greedy

    tokenized, got = llama_greedy(gguf, ref["texts"], ref["ids"], PROBE_TOKENS, ref["stop"])
    want, base = ref["merged"], ref["base"]
    informative = [i for i in range(len(want)) if want[i] != base[i]]
    to_merged = [_common(got[i], want[i]) for i in informative]
    to_base = [_common(got[i], base[i]) for i in informative]
    return {
        "prompts": len(want),
        "tokenizer_agrees": sum(a == b for a, b in zip(tokenized, ref["ids"])),
        "llama_cpp_equals_merged": sum(a == b for a, b in zip(got, want)),
        "llama_cpp_equals_base": sum(a == b for a, b in zip(got, base)),
        "informative": len(informative),
        "closer_to_merged": sum(m > b for m, b in zip(to_merged, to_base)),
        "closer_to_base": sum(b > m for m, b in zip(to_merged, to_base)),
        "first_answer": {
            k: ref["decode"](v[0]) for k, v in (("llama_cpp", got), ("merged", want), ("base", base))
        },
    }


def projector_check(proj: Path, merged_dir: Path) -> dict:
    """What is verified of a VLM's projector file without llama.cpp's multimodal library (not built by gguf-setup):
    it reads as a GGUF of type mmproj, and its tensors hold exactly as many numbers as the merged model's vision tower
    and merger (the converter renames, splits or fuses tensors, so counts are compared, not names)."""
    import sys

    from safetensors import safe_open

    from training.gguf import find_converter

    sys.path.insert(0, str(find_converter() / "gguf-py"))
    try:
        from gguf import GGUFReader
    finally:
        sys.path.pop(0)
    reader = GGUFReader(str(proj))
    gguf_numbers = sum(int(t.n_elements) for t in reader.tensors)
    hf_numbers = 0
    for f in sorted(merged_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                if ".visual." in k or k.startswith("visual."):
                    hf_numbers += _numel(st.get_slice(k).get_shape())
    kind = reader.fields.get("general.type")
    return {
        "type": bytes(kind.parts[-1]).decode() if kind else None,
        "tensors": len(reader.tensors),
        "numbers": gguf_numbers,
        "vision_numbers_in_merged": hf_numbers,
    }


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def verdict(c: dict, exact: bool) -> str | None:
    """None when the GGUF stands; else why not, in one line. On the probes where the adapter shows (informative), the
    GGUF must be closer to the merged model than to the base; a 16-bit or 8-bit file must moreover answer every probe
    exactly as the merged model does (a k-quant may drift)."""
    n = c["prompts"]
    if c["tokenizer_agrees"] < n:
        return f"llama.cpp tokenizes {n - c['tokenizer_agrees']} of {n} probe prompts differently from the tokenizer"
    if c["closer_to_base"] > c["closer_to_merged"]:
        return (
            f"the GGUF answers like the base model: on the {c['informative']} probes the adapter changes, it is closer "
            f"to the base on {c['closer_to_base']} and to the merged model on {c['closer_to_merged']}; the adapter "
            "did not reach it"
        )
    if exact and c["llama_cpp_equals_merged"] < n:
        return (
            f"llama.cpp's greedy answers differ from the merged model's on {n - c['llama_cpp_equals_merged']} of "
            f"{n} probes"
        )
    return None


def summary(c: dict) -> str:
    n = c["prompts"]
    line = (
        f"llama.cpp check on {n} probe prompts ({PROBE_TOKENS} greedy tokens each): equal to the merged model on "
        f"{c['llama_cpp_equals_merged']}/{n}, to the base on {c['llama_cpp_equals_base']}/{n}; on the "
        f"{c['informative']} the adapter changes, closer to the merged model on {c['closer_to_merged']} and to the "
        f"base on {c['closer_to_base']}; tokenizer agrees on {c['tokenizer_agrees']}/{n}"
    )
    if not c["informative"]:
        line += " (the adapter changes none of these answers, so they cannot show it reached the GGUF)"
    return line


def gguf_section(found: dict) -> str:
    """The model card's GGUF section: the file, its check in llama.cpp, and how to run it."""
    name = Path(found["gguf"]).name
    verdict_txt = (
        "The check passed." if not found.get("verdict") else f"**The check failed: {found['verdict']}.**"
    )
    proj = ""
    if found.get("mmproj"):
        p = found["mmproj_check"]
        proj = (
            f" `{Path(found['mmproj']).name}` holds the vision tower and merger (llama.cpp's projector file: "
            f"{p['tensors']} tensors, {p['numbers']:,} numbers, as many as the merged model's vision side; not run "
            "here, the bindings are built without llama.cpp's multimodal library)."
        )
    run_line = (
        f"llama-mtmd-cli -m {name} --mmproj {Path(found['mmproj']).name}"
        if proj
        else f"llama-cli -m {name} -cnv"
    )
    return f"""
## GGUF (llama.cpp, Ollama, LM Studio)
`{name}`: the merged (language) model converted by llama.cpp's own converter.{proj} {summary(found["check"])}.
{verdict_txt}
```bash
{run_line}    # llama.cpp
ollama create {Path(name).stem} -f Modelfile && ollama run {Path(name).stem}   # Ollama: the Modelfile asks as trained
```
"""


CHATML = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def modelfile(
    gguf_name: str,
    card: dict | None,
    chat_template: str,
    projector: str | None = None,
    default_system: str = "",
) -> str:
    """An Ollama Modelfile: the file (and a VLM's projector, as a second FROM), the chat template (ChatML, the Qwen
    family's), the stop tokens, and the task card's system turn and sampling, so `ollama run` asks the model the way
    it was trained. A run trained without a system turn saw the one its chat template adds (`default_system`), and
    Ollama's template adds none, so the Modelfile states it."""
    from training.run.task_card import system_text

    if "<|im_start|>" not in chat_template:
        raise MedrlError("GGUF export: the Modelfile knows the ChatML template only (Qwen2/Qwen2.5 models)")
    system = system_text(card) or default_system
    lines = (
        [f"FROM ./{gguf_name}"]
        + ([f"FROM ./{projector}"] if projector else [])
        + [f'TEMPLATE """{CHATML}"""']
    )
    if system:
        lines.append(f'SYSTEM """{system.replace(chr(34) * 3, chr(39) * 3)}"""')
    lines += ['PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|endoftext|>"']
    lines.append(f"PARAMETER temperature {float((card or {}).get('temperature') or 0.0)}")
    if (card or {}).get("max_new_tokens"):
        lines.append(f"PARAMETER num_predict {int(card['max_new_tokens'])}")
    return "\n".join(lines) + "\n"


def export_gguf(
    run: RunDir,
    raw_cfg: dict,
    model_cfg: ModelConfig,
    adapter: Path,
    out: Path,
    quant: str,
    dtype: str,
    llama_dir: str | None,
    merged_dir: Path | None,
) -> dict:
    """Write OUT/<run>-<quant>.gguf (+ Modelfile) from the adapter merged onto a 16-bit base (into `merged_dir` when
    the merged folder is kept, else a temp folder); returns the check."""
    from training.export import merge_adapter
    from training.models.loading import _load_config, is_vlm_config, resolve_model_path

    tools = find_converter(llama_dir)
    bindings()  # the check needs them: fail before minutes of merging, not after
    vlm = is_vlm_config(_load_config(resolve_model_path(model_cfg.name)))
    with tempfile.TemporaryDirectory(prefix="medrl-gguf-") as tmp:
        merged = merged_dir or Path(tmp) / "merged"
        merge_info = merge_adapter(model_cfg, adapter, merged, dtype)
        written = "f16" if quant in QUANTIZED else quant
        f16 = out / f"{run.name}-{written}.gguf"
        seconds = {"convert_s": convert(merged, f16, written, tools, run.name)}
        result: dict = {"gguf": str(f16), **merge_info}
        if vlm:  # the vision tower and merger, in llama.cpp's multimodal projector file
            proj = out / f"mmproj-{run.name}-f16.gguf"
            seconds["mmproj_s"] = convert(merged, proj, "f16", tools, run.name, mmproj=True)
            result["mmproj"] = str(proj)
            result["mmproj_check"] = projector_check(proj, merged)
        ref = reference(merged, model_cfg, probe_messages(run, raw_cfg), vlm)
        exact = check(f16, ref)
        result.update(check=exact, verdict=verdict(exact, exact=True))
        final = f16
        if quant in QUANTIZED:
            final = out / f"{run.name}-{quant}.gguf"
            seconds["quantize_s"] = quantize(f16, final, quant)
            f16.unlink()
            q = check(final, ref)
            result.update(
                gguf=str(final), check=q, check_f16=exact, verdict=result["verdict"] or verdict(q, False)
            )
        tok_cfg = json.loads((merged / "tokenizer_config.json").read_text())
        template = tok_cfg.get("chat_template") or ""
        if not template and (merged / "chat_template.jinja").is_file():
            template = (merged / "chat_template.jinja").read_text()
    proj_name = Path(result["mmproj"]).name if vlm else None
    text = modelfile(final.name, read_card(run.path), template, proj_name, ref["default_system"])
    (out / "Modelfile").write_text(text)
    result["modelfile"] = str(out / "Modelfile")
    result.update({k: round(v, 1) for k, v in seconds.items()})
    return result
