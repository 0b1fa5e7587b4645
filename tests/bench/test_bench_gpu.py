"""`medrl bench gpu`: the 3B shapes are the published ones, no CUDA is a clean exit, and the measuring path runs
(on the embedded sizes, on the CPU) wherever the tests run."""

import json

import pytest
import torch

from bench import gpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA message; a GPU machine runs the benchmark")
def test_without_cuda_it_says_so_and_exits_zero(cli, capsys):
    assert cli("bench", "gpu", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cuda"] is False and "no CUDA device" in out["message"]


@pytest.mark.slow
def test_the_3b_shapes_have_the_published_parameter_counts():
    """Built on the meta device (no memory): Qwen2.5-3B 3.09B parameters, Qwen2.5-VL-3B 3.75B, Qwen's vocabulary."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from training.models.embedded import ensure_embedded

    counts = {}
    for kind, auto in (("qwen2", AutoModelForCausalLM), ("qwen25vl", AutoModelForImageTextToText)):
        config = AutoConfig.from_pretrained(ensure_embedded(kind))
        gpu.resize_config(config, kind)
        with torch.device("meta"):
            model = auto.from_config(config)
        counts[kind] = sum(p.numel() for p in model.parameters())
        assert model.get_output_embeddings().weight.shape == (151936, 2048)
    assert round(counts["qwen2"] / 1e9, 2) == 3.09 and round(counts["qwen25vl"] / 1e9, 2) == 3.75


@pytest.mark.slow
def test_the_measuring_path_runs_on_the_embedded_sizes(tmp_path):
    r = gpu.run(
        shape="tiny",
        device="cpu",
        steps=2,
        warmup=1,
        g=2,
        p=48,
        s=3,
        quantization="none",
        with_trl=False,
        cache=tmp_path,
    )
    for key in ("vlm_grpopp", "text_crpo"):
        assert r[key]["median_step_s"] > 0 and r[key]["tokens_per_s"] > 0, key
        assert r[key]["planned_mb"] > 0, key  # medrl plan beside the measured peak (a GPU gives both)
    assert (tmp_path / "qwen25vl-tiny" / "config.json").is_file()
    assert "VLM GRPO++ (ours)" in gpu.table(r)
