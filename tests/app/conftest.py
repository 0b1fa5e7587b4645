"""App fixtures: a runs root with two tiny runs trained by the real CLI, the app context over it, and the app served
on a free loopback port (one server and one set of loaded models for the whole session)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"


def _lesion_sft(d: Path) -> Path:
    from PIL import Image

    rows = []
    for i in range(2):
        img = Image.new("RGB", (112, 112), (190 - 30 * i, 140, 110))
        img.paste((70, 45, 30), (36, 36, 76, 76))
        img.save(d / f"lesion{i}.png")
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]},
                    {
                        "role": "assistant",
                        "content": "Findings: asymmetric, irregular border. Most likely diagnosis: melanoma.",
                    },
                ],
                "images": [f"lesion{i}.png"],
            }
        )
    path = d / "derm_sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def app_runs(tmp_path_factory, text_sft_file) -> Path:
    """runs/demo/lm (text SFT, 3 steps, a step-2 checkpoint) and runs/demo/vlm (image+text SFT, 1 step), trained
    with `medrl train`; plus the evaluation and tree files later pipelines write, by hand."""
    import torch

    from app.cli import main

    torch.set_num_threads(1)  # tiny models on busy shared cores: more threads only wait on each other
    root = tmp_path_factory.mktemp("runs")
    data = tmp_path_factory.mktemp("app_data")
    common = [f"--run.output_dir={root / 'demo'}", "--run.tensorboard=false"]
    assert (
        main(
            [
                "train",
                "configs/sft_qwen2_tiny.yaml",
                f"--data.train={text_sft_file}",
                "--run.name=lm",
                "--run.max_steps=3",
                "--run.save_every=2",
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "configs/sft_qwen25vl_tiny.yaml",
                f"--data.train={_lesion_sft(data)}",
                "--run.name=vlm",
                "--run.max_steps=1",
                "--batch_size=1",
                "--grad_accum=1",
                *common,
            ]
        )
        == 0
    )
    lm = root / "demo" / "lm"
    (lm / "eval").mkdir()
    (lm / "eval" / "metrics.json").write_text(
        json.dumps({"accuracy": 0.4, "per_condition": {"pneumonia": 0.5}})
    )
    (lm / "trees").mkdir()
    (lm / "trees" / "step-1.json").write_text(
        json.dumps(
            {
                "nodes": [
                    {"id": 0, "parent": None, "text": "History: fever?", "reward": 0.5},
                    {"id": 1, "parent": 0, "text": "Ask about cough", "reward": 1.0, "advantage": 0.7},
                    {"id": 2, "parent": 0, "text": "Order troponin", "reward": 0.0, "advantage": -0.7},
                ]
            }
        )
    )
    return root


@pytest.fixture(scope="session")
def app_ctx(app_runs, tmp_path_factory):
    from app.context import AppContext

    return AppContext(
        app_runs,
        max_new_tokens=8,
        max_loaded=2,
        concurrency=2,
        scratch=tmp_path_factory.mktemp("app_scratch"),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(app_ctx):
    """The app served on a free loopback port for a test module (the loaded models stay in the session's context);
    closed after, and PIL's process-wide pixel limit the server sets is put back for the other packages' tests."""
    from PIL import Image

    from app.main import launch

    pixels = Image.MAX_IMAGE_PIXELS
    demo = launch(app_ctx, "127.0.0.1", free_port(), block=False)
    yield demo.local_url.rstrip("/")
    demo.close()
    Image.MAX_IMAGE_PIXELS = pixels


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium through Playwright; a missing Chromium fails (never skips) with the command."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing; the browser tests need it: {INSTALL}  (make test does this as root)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory) -> Path:
    """`medrl demo --quick` once per session: DermIQ runs trained on 6 labels with task cards, Clinical-R1 arms, a
    Tree-GRPO run, each evaluated; what a clinician opens after `make demo`, in small."""
    import torch

    from app.demo import run_demo

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("quick_demo") / "demo"
    run_demo(out, quick=True, parallel=False)  # the one-process path (test_demo runs the parallel one)
    return out


@pytest.fixture(scope="module")
def serve_app(tmp_path_factory):
    """Serve the app over another runs root on a free loopback port (closed after the module): `serve_app(root)`
    -> its URL. PIL's process-wide pixel limit the server sets is put back after."""
    from PIL import Image

    from app.context import AppContext
    from app.main import launch

    servers, pixels = [], Image.MAX_IMAGE_PIXELS

    def start(root: Path, **settings) -> str:
        ctx = AppContext(root, scratch=tmp_path_factory.mktemp("app_scratch"), **settings)
        servers.append(launch(ctx, "127.0.0.1", free_port(), block=False))
        return servers[-1].local_url.rstrip("/")

    yield start
    for s in servers:
        s.close()
    Image.MAX_IMAGE_PIXELS = pixels


@pytest.fixture
def new_page(browser):
    """`new_page(url, height)`: a fresh Chromium page 1400 px wide at `url`, with the browser tests' timeout; its
    context is closed after the test."""
    contexts = []

    def open_page(url: str | None = None, height: int = 1000, timeout: int = 60_000):
        ctx = browser.new_context(viewport={"width": 1400, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(timeout)
        if url:
            page.goto(url)
        return page

    yield open_page
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def choose():
    """`choose(page, elem_id, option)`: pick an option of a gradio Dropdown by (part of) its label."""

    def pick(page, elem_id: str, option: str) -> None:
        page.locator(f"#{elem_id} input").click()
        page.get_by_role("option", name=option, exact=False).first.click()

    return pick
