"""`medrl app`: the clinician-facing Gradio page. Thin: builds the Blocks from one module per tab and launches it
loopback-only, no public link, behind the queue (generation limited to `concurrency` at a time), uploads capped.
Only this module and the tab modules import gradio; `medrl app` registration lives in `app/cli.py`."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from training.errors import MedrlError

from . import answer_view, html, tab_adapters, tab_case, tab_clinical, tab_derm, tab_kg, tab_review, tab_runs
from .context import AppContext
from .safety import MAX_UPLOAD_BYTES, guard_pil

TITLE = "medrl · model inspection"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
QUEUE_MAX = 64  # waiting requests beyond this are turned away rather than piling up


def header(ctx: AppContext) -> str:
    n = len(ctx.reader.run_ids())
    runs = (
        f"{n} run{'s' if n != 1 else ''} under <code>{html.escape(str(ctx.runs_root))}</code>"
        if n
        else html.escape(ctx.no_runs_text())
    )
    return (
        f'<div class="medrl-card"><h3 style="margin:0">{TITLE}</h3>'
        '<div class="medrl-muted">DermIQ-VLM (dermatology) and Clinical-R1 (clinical text): query a trained '
        "adapter, check its claims against the knowledge graph, compare runs, export adapters.</div>"
        f'<div class="medrl-muted">{runs}</div></div>{html.disclaimer()}'
    )


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        head = gr.HTML(header(ctx), elem_id="medrl-header")
        with gr.Tabs():
            with gr.Tab("Dermatology", id="derm"):
                derm = tab_derm.build(ctx)
            with gr.Tab("Clinical case", id="clinical"):
                clin = tab_clinical.build(ctx)
            with gr.Tab("Interactive case", id="case"):
                case = tab_case.build(ctx)
            with gr.Tab("Training runs", id="runs"):
                runs = tab_runs.build(ctx)
            with gr.Tab("Review pairs", id="review"):
                review = tab_review.build(ctx)
            with gr.Tab("Adapters", id="adapters"):
                adapters = tab_adapters.build(ctx)
            with gr.Tab("Knowledge graph", id="kg"):
                kg = tab_kg.build(ctx)

        def on_load():
            """A reload sees runs trained since the app started."""
            return (
                header(ctx),
                gr.Dropdown(choices=ctx.adapter_choices(vlm=True)),
                gr.Dropdown(choices=ctx.adapter_choices(vlm=False)),
            )

        demo.load(on_load, None, [head, derm["adapter"], clin["adapter"]], api_name=False)
        # every run list as the runs folder is now, not as it was when the app started
        for fn, inputs, outputs in [
            runs["refresh"],
            *case["refresh"],
            *adapters["refresh"],
            *review["refresh"],
        ]:
            demo.load(fn, inputs, outputs, api_name=False)
        fn, inputs, outputs = kg["lookup"]
        demo.load(fn, inputs, outputs, api_name=False)
    demo.queue(max_size=QUEUE_MAX, default_concurrency_limit=4)
    return demo


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """'user:password' (from --auth or MEDRL_APP_AUTH) -> a tuple; None when neither is set."""
    value = value or os.environ.get("MEDRL_APP_AUTH") or None
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise MedrlError("--auth / MEDRL_APP_AUTH: expected user:password")
    return user, password


def launch(
    ctx: AppContext,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    share: bool = False,
    block: bool = True,
) -> gr.Blocks:
    """Serve the app; off loopback (or shared) only with a password."""
    if (host not in LOOPBACK or share) and auth is None:
        raise MedrlError(
            f"serving on {host}{' with a public link' if share else ''} needs --auth user:password "
            "(or MEDRL_APP_AUTH): the page answers medical questions with research models"
        )
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    guard_pil()
    demo = build_app(ctx)
    demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        share=share,
        max_file_size=MAX_UPLOAD_BYTES,
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
        ssr_mode=False,
        allowed_paths=[str(ctx.scratch)],
        css=html.CSS + answer_view.CSS,
        theme=gr.themes.Default(primary_hue="blue"),
        footer_links=["api"],
        pwa=False,
        mcp_server=False,
    )
    return demo


def run_cli(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = AppContext(
        Path(args.runs),
        max_new_tokens=args.max_new_tokens,
        max_loaded=args.max_loaded,
        concurrency=args.concurrency,
    )
    launch(ctx, args.host, args.port, parse_auth(args.auth), args.share)
    return 0
