"""Side-by-side benchmarks compare code, not machines: one device per child, and both sides must match."""

import pytest
import torch

from bench.common import pin_device_env, resolve_device
from bench.grpo_step import _check_same_machine
from training.errors import ConfigError


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "cuda:x"):
        with pytest.raises(ConfigError, match="--device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda:1")


def test_children_see_exactly_the_benchmark_device(monkeypatch):
    assert pin_device_env("cpu") == {"CUDA_VISIBLE_DEVICES": ""}  # no GPU for either side on a CPU run
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pin_device_env("cuda:1") == {"CUDA_VISIBLE_DEVICES": "1"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # cuda:N counts within what this process sees
    assert pin_device_env("cuda:1") == {"CUDA_VISIBLE_DEVICES": "6"}


def test_a_mismatched_side_is_an_error():
    side = {"device": "cuda:0", "dtype": "bfloat16", "precision": "bf16", "threads": 2}
    _check_same_machine(side, dict(side))
    for key, other in (("device", "cpu"), ("dtype", "float32"), ("precision", "fp32"), ("threads", 16)):
        with pytest.raises(RuntimeError, match=f"different {key}"):
            _check_same_machine(side, {**side, key: other})
