"""GGUF export checked in llama.cpp itself (llama-cpp-python, installed by `make gguf`, which `make test` runs)."""

import json
from pathlib import Path

import pytest

from training.errors import MedrlError
from training.export_gguf import modelfile, verdict
from training.gguf import QWEN2_SPLIT, find_converter, stated_pre_tokenizer
from training.models.embedded import resolve_model_path


def test_the_embedded_tokenizer_is_stated_as_qwen2_and_another_split_is_not(tmp_path):
    """The converter identifies a BPE pre-tokenizer by hashing its output on a test string, which only real
    checkpoints' vocabularies match: the embedded tokenizer's split is Qwen2's exactly, so it is stated; any change
    of the split leaves the choice to the converter."""
    folder = resolve_model_path("embedded:qwen2")
    assert stated_pre_tokenizer(folder) == "qwen2"
    tok = json.loads((Path(folder) / "tokenizer.json").read_text())
    tok["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = QWEN2_SPLIT.replace(
        r"\p{N}", r"\p{N}{1,3}", 1
    )
    (tmp_path / "tokenizer.json").write_text(json.dumps(tok))
    assert stated_pre_tokenizer(tmp_path) == ""
    assert stated_pre_tokenizer(tmp_path / "none") == ""


def test_modelfile_asks_the_way_the_run_was_trained():
    card = {
        "prompt": [
            {"role": "system", "content": 'Answer with """one""" label.'},
            {"role": "user", "content": "x"},
        ],
        "temperature": 0.0,
        "max_new_tokens": 96,
    }
    text = modelfile("run-f16.gguf", card, "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}")
    lines = text.splitlines()
    assert lines[0] == "FROM ./run-f16.gguf"
    assert (
        "SYSTEM \"\"\"Answer with '''one''' label.\"\"\"" in text
    )  # the card's system turn, quotes kept apart
    assert 'PARAMETER stop "<|im_end|>"' in lines and "PARAMETER num_predict 96" in lines
    assert "PARAMETER temperature 0.0" in lines
    with pytest.raises(MedrlError, match="ChatML"):
        modelfile("m.gguf", card, "{{ bos_token }}[INST]")
    no_system = {
        **card,
        "prompt": card["prompt"][1:],
    }  # trained without one: the template's default is stated
    assert 'SYSTEM """You are a helpful assistant."""' in modelfile(
        "m.gguf", no_system, "<|im_start|>", None, "You are a helpful assistant."
    )
    assert "SYSTEM" not in modelfile("m.gguf", no_system, "<|im_start|>")


@pytest.mark.parametrize(
    "check, exact, why",
    [
        ({"llama_cpp_equals_merged": 5, "closer_to_merged": 3, "closer_to_base": 0}, True, None),
        ({"llama_cpp_equals_merged": 2, "closer_to_merged": 0, "closer_to_base": 3}, True, "like the base"),
        ({"llama_cpp_equals_merged": 4, "closer_to_merged": 3, "closer_to_base": 0}, True, "differ from"),
        (
            {"llama_cpp_equals_merged": 1, "closer_to_merged": 2, "closer_to_base": 1},
            False,
            None,
        ),  # a k-quant drifts
        ({"llama_cpp_equals_merged": 1, "closer_to_merged": 1, "closer_to_base": 2}, False, "like the base"),
        (
            {"llama_cpp_equals_merged": 5, "closer_to_merged": 3, "closer_to_base": 0, "tokenizer_agrees": 4},
            True,
            "tokenizes 1 of 5",
        ),
    ],
)
def test_verdict(check, exact, why):
    got = verdict({"prompts": 5, "tokenizer_agrees": 5, "informative": 3, **check}, exact)
    assert (got is None) if why is None else (why in got), got


def test_export_gguf_names_its_setup_when_tools_are_missing(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDRL_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    with pytest.raises(MedrlError, match="make gguf"):
        find_converter()
    with pytest.raises(MedrlError, match="no convert_hf_to_gguf.py there"):
        find_converter(tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("model: {name: embedded:qwen2}\n")
    assert cli("export", tmp_path / "r", "--out", tmp_path / "o", "--quant", "q8_0") == 2
    assert "--quant: only with --format gguf" in capsys.readouterr().err


@pytest.fixture(scope="module")
def gguf_export(gguf_tools, sft_adapter, tmp_path_factory):
    """The session's short SFT run exported as an f16 GGUF, through the CLI."""
    from app.cli import main

    find_converter()  # `make test` installs the tools (`make gguf`); without them this fails and says how
    out = tmp_path_factory.mktemp("gguf") / "exported"
    run = sft_adapter.parent
    assert main(["export", str(run), "--out", str(out), "--format", "gguf", "--merge"]) == 0
    return run, out


@pytest.fixture(scope="module")
def reference_answers(gguf_export):
    """The probe prompts and the merged and base models' greedy answers to them (Hugging Face, fp32)."""
    from training.export import run_model_config
    from training.export_gguf import probe_messages, reference
    from training.run.rundir import RunDir

    run, out = gguf_export
    model_cfg, raw = run_model_config(RunDir(run))
    return reference(out / "merged", model_cfg, probe_messages(RunDir(run), raw))


@pytest.mark.slow
@pytest.mark.gguf
def test_gguf_round_trip_answers_like_the_merged_model_and_not_like_the_base(gguf_export, reference_answers):
    """In llama.cpp the GGUF's greedy answers to the probe prompts equal the merged Hugging Face model's on every
    prompt, and the base model answers at least one differently: the adapter is in the file."""
    from training.export_gguf import check

    run, out = gguf_export
    files = {p.name for p in out.iterdir()}
    assert {f"{run.name}-f16.gguf", "Modelfile", "README.md", "merged"} <= files
    c = check(out / f"{run.name}-f16.gguf", reference_answers)
    assert c["prompts"] >= 3 and c["tokenizer_agrees"] == c["prompts"]
    assert c["llama_cpp_equals_merged"] == c["prompts"], c
    assert c["informative"] >= 1 and c["closer_to_merged"] == c["informative"], c
    assert c["llama_cpp_equals_base"] < c["prompts"], c
    assert verdict(c, exact=True) is None
    assert f"FROM ./{run.name}-f16.gguf" in (out / "Modelfile").read_text()
    assert (
        'SYSTEM """You are a helpful assistant."""' in (out / "Modelfile").read_text()
    )  # the template's default
    assert "The check passed" in (out / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.gguf
def test_a_gguf_without_the_adapter_is_refused(reference_answers, tmp_path):
    """The failure users meet most: a file that answers like the base. The base converted in place of the merged
    model must get the verdict that the adapter did not reach it."""
    from training.export_gguf import check
    from training.gguf import convert, find_converter

    base = tmp_path / "base.gguf"
    convert(Path(resolve_model_path("embedded:qwen2")), base, "f16", find_converter())
    c = check(base, reference_answers)
    assert c["informative"] >= 1 and c["closer_to_base"] == c["informative"], c
    assert "did not reach it" in verdict(c, exact=True)


@pytest.mark.gguf
def test_tools_are_the_pinned_ones(gguf_tools):
    """`make gguf` installs the converter and the bindings from one source package."""
    from training.gguf import LLAMA_CPP_PYTHON, bindings

    llama_cpp = bindings()

    assert llama_cpp.__version__ == LLAMA_CPP_PYTHON


@pytest.mark.slow
@pytest.mark.gguf
def test_vlm_gguf_language_model_checked_and_projector_written(gguf_tools, cli, tmp_path, vlm_sft_file):
    """A DermIQ-shaped run (the tiny Qwen2.5-VL, LoRA on the language model and the vision tower): the language model's
    GGUF answers the run's prompts (their images dropped) as the merged model does in llama.cpp, and the projector
    file holds every number of the merged vision tower and merger. The projector is not run: llama.cpp's multimodal
    library is not part of `make gguf` (docs/export.md)."""
    assert (
        cli(
            "train",
            "configs/sft_qwen25vl_tiny.yaml",
            f"--data.train={vlm_sft_file}",
            f"--run.output_dir={tmp_path}",
            "--run.name=v",
            "--run.max_steps=4",
            "--optim.lr=2e-2",
            "--model.lora.vision=all",
        )
        == 0
    )
    assert cli("export", tmp_path / "v", "--out", tmp_path / "e", "--format", "gguf", "--merge") == 0
    found = {p.name for p in (tmp_path / "e").iterdir()}
    assert {"v-f16.gguf", "mmproj-v-f16.gguf", "Modelfile"} <= found
    modelfile_lines = (tmp_path / "e" / "Modelfile").read_text().splitlines()
    assert modelfile_lines[:2] == ["FROM ./v-f16.gguf", "FROM ./mmproj-v-f16.gguf"]
    from training.export import run_model_config
    from training.export_gguf import check, probe_messages, projector_check, reference
    from training.run.rundir import RunDir

    run, merged = RunDir(tmp_path / "v"), tmp_path / "e" / "merged"
    model_cfg, raw = run_model_config(run)
    c = check(tmp_path / "e" / "v-f16.gguf", reference(merged, model_cfg, probe_messages(run, raw), vlm=True))
    assert c["tokenizer_agrees"] == c["prompts"] and c["llama_cpp_equals_merged"] == c["prompts"], c
    proj = projector_check(tmp_path / "e" / "mmproj-v-f16.gguf", merged)
    assert proj["type"] == "mmproj" and proj["numbers"] == proj["vision_numbers_in_merged"] > 0, proj
