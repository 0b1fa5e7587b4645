"""Shared fixtures: small record files on disk and a way to run the real CLI in-process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Always off in tests, whatever the shell says (`make test` exports MEDRL_PROGRESS=1 for the demo's bars): the CLI
# tests read the last stderr line, and a bar's closing refresh would land after the error it should follow.
os.environ["MEDRL_PROGRESS"] = "0"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tests' child processes keep OpenMP's own wait policy (what `medrl` would set is tested in test_threads.py):
# alone on the machine it is the fastest (docs/training.md), and `make test` runs one test at a time.
os.environ.setdefault("MEDRL_OMP", "default")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def text_sft_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("text_sft")
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"A patient has fever and cough, case {i}. Diagnosis?"},
                {
                    "role": "assistant",
                    "content": f"<think>fever with cough</think><answer>pneumonia {i % 3}</answer>",
                },
            ]
        }
        for i in range(8)
    ]
    return write_jsonl(d / "sft.jsonl", rows)


@pytest.fixture(scope="session")
def vlm_sft_file(tmp_path_factory) -> Path:
    from PIL import Image

    d = tmp_path_factory.mktemp("vlm_sft")
    rows = []
    for i in range(4):
        img = Image.new("RGB", (112, 112), (180 - 20 * i, 120, 90))
        img.paste((60 + 10 * i, 40, 30), (40, 40, 72, 72))
        img.save(d / f"lesion{i}.png")
        rows.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": "Describe the lesion."}],
                    },
                    {"role": "assistant", "content": f"A dark brown macule, case {i}."},
                ],
                "images": [f"lesion{i}.png"],
            }
        )
    return write_jsonl(d / "sft.jsonl", rows)


@pytest.fixture(scope="session")
def sft_adapter(tmp_path_factory, text_sft_file) -> Path:
    """A short SFT run's adapter (no LoRA dropout, so train- and eval-mode forwards agree): the start of RL and DPO
    runs that chain from an adapter."""
    from app.cli import main

    out = tmp_path_factory.mktemp("sft")
    assert (
        main(
            [
                "train",
                "configs/sft_qwen2_tiny.yaml",
                f"--data.train={text_sft_file}",
                f"--run.output_dir={out}",
                "--run.name=sft",
                "--run.max_steps=3",
                "--run.save_every=0",
                "--model.lora.dropout=0.0",
                "--optim.lr=2e-2",
            ]
        )
        == 0
    )
    return out / "sft" / "adapter"


@pytest.fixture
def arm_inputs(tmp_path) -> dict:
    """What every ablation arm shares (`training.trainers.ablation.run_arms`' ``extra``): a start adapter folder (the
    config only checks it holds adapter_config.json) and a train file, for resolving arms' configs without training."""
    start = tmp_path / "start" / "adapter"
    start.mkdir(parents=True)
    (start / "adapter_config.json").write_text("{}")
    return {"data": {"train": "x.jsonl"}, "model": {"adapter": str(start)}}


@pytest.fixture
def cli():
    """Run `medrl ARGS...` through the real entry point; returns the exit code."""
    from app.cli import main

    return lambda *args: main([str(a) for a in args])


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: intra-op threads only add barrier waits, which explode when other jobs share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_png_header(path: Path, width: int, height: int) -> Path:
    """A valid PNG whose header declares width x height pixels: a decompression bomb's header, without the pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def png_header():
    """`png_header(path, width, height)` writes a bomb-like PNG header (see `_write_png_header`)."""
    return _write_png_header


# Fixtures that train real runs before their tests start (the app's runs root, a short SFT run's adapter): every test
# that uses one, directly or through another fixture, is an end-to-end test and marked slow (`make test-fast` skips it).
SLOW_FIXTURES = {"app_runs", "sft_adapter"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# The embedded models' rebuild (tests/training/test_embedded.py) is about six minutes of two cores, a third of the
# suite, and needs no other test: it starts in the background when the session starts, in a session of its own, and
# its test runs last and waits for it. Linux's autogroup scheduler gives each session an equal share of the CPU, so
# the rebuild takes about half of it while tests run and all of it while they wait on subprocesses, the browser or
# single-threaded Python (measured: `make test` from a fresh clone 933 s -> 697 s). Inside the tests' own session a
# nice-19 job got almost nothing: their OpenMP threads spin while they wait and look busy. The scheduling changes when
# a thread runs, never what it computes: the build keeps its pinned kernels and thread count, so its bits are the same.
REBUILD_TEST = "test_build_reproduces_the_shipped_weights_bit_for_bit"
REBUILD_KEY = pytest.StashKey[dict]()
REBUILD_CHILD = """
import sys
from pathlib import Path
from training.models import embedded
embedded.SHIPPED = Path(sys.argv[1])
for kind in embedded.KINDS:
    embedded.ensure_embedded(kind)
"""
REPO = Path(__file__).resolve().parents[1]


def start_rebuild(root: Path) -> dict:
    """Start building both embedded models from the shipped manifest alone (no weights) into `root`/cache."""
    import shutil
    import subprocess
    import sys

    from training.models.embedded import SHIPPED

    (root / "manifest-only").mkdir(parents=True)
    shutil.copy(SHIPPED / "MANIFEST.json", root / "manifest-only")  # it names the VLM's plug-in
    env = {
        **os.environ,
        "MEDRL_CACHE": str(root / "cache"),
        "PYTHONPATH": str(REPO),
        "MEDRL_PROGRESS": "0",
        # the build child keeps a wait policy set here (training.run.threads.without_medrl_policy): sleeping, not
        # spinning, when the other tests take its core
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    env.pop("MEDRL_OMP", None)
    log = open(root / "job.log", "wb")  # noqa: SIM115 - the child writes it until the test reads it
    proc = subprocess.Popen(
        [sys.executable, "-c", REBUILD_CHILD, str(root / "manifest-only")],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own autogroup (above), and killed as one group
    )
    return {"proc": proc, "root": root, "log": log}


def pytest_collection_finish(session):
    """After -k/-m deselection (a deselected rebuild starts nothing): move the rebuild test last and start it."""
    import tempfile

    config, items = session.config, session.items
    rebuild = [i for i in items if i.name == REBUILD_TEST]
    if not rebuild or config.option.collectonly:
        return
    items[:] = [i for i in items if i.name != REBUILD_TEST] + rebuild
    if not any(m.args and m.args[0] for m in rebuild[0].iter_markers("skipif")):
        config.stash[REBUILD_KEY] = start_rebuild(Path(tempfile.mkdtemp(prefix="medrl-rebuild-")))


def pytest_unconfigure(config):
    """A run stopped early (-x, Ctrl-C) leaves no build running and no folder behind."""
    import shutil
    import signal

    job = config.stash.get(REBUILD_KEY, None)
    if job is None:
        return
    if job["proc"].poll() is None:
        os.killpg(job["proc"].pid, signal.SIGKILL)
        job["proc"].wait()
    job["log"].close()
    shutil.rmtree(job["root"], ignore_errors=True)


@pytest.fixture
def background_rebuild(request, tmp_path) -> Path:
    """The folder the rebuild started with the session has finished building into (started now when the session
    did not: a run of this test alone)."""
    job = request.config.stash.get(REBUILD_KEY, None) or start_rebuild(tmp_path / "rebuild")
    rc = job["proc"].wait(timeout=3600)
    assert rc == 0, (job["root"] / "job.log").read_text(errors="replace")[-3000:]
    return job["root"]


@pytest.fixture(scope="session")
def gguf_tools() -> None:
    """The GGUF tools (llama.cpp's converter and llama-cpp-python), which `make test-gguf` installs first
    (`make gguf`): without them the tests that need them fail with the command to run, never skip."""
    from training.gguf import bindings, find_converter

    find_converter()
    bindings()
