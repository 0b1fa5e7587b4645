"""Interactive case tab: step through a multi-step case (a run's model or the clinician asks, the case answers;
`app.interactive`), and draw the Tree-GRPO trees a run wrote to `trees/`, nodes coloured by reward or advantage,
text on hover."""

from __future__ import annotations

import gradio as gr

from . import html, interactive
from .context import AppContext, user_errors
from .draw import tree_nodes, tree_svg

INTRO = ("**Step through a case.** The case reveals what is asked: `<ask>history</ask>`, `<ask>exam</ask>`, "
         "`<ask>labs: NAME</ask>` (and `<ask>dermoscopy</ask>` for skin cases), until `<answer>LETTER</answer>`. "
         "Let a run's model take the next turn, or type it yourself.")


def runs_with_trees(ctx: AppContext) -> list[tuple[str, str]]:
    return [(r.label, r.id) for r in ctx.reader.runs() if ctx.reader.tree_files(r.id)]


def show_tree(ctx: AppContext, run_id: str | None, name: str | None, colour_by: str) -> tuple[str, dict]:
    if not run_id or not name:
        return html.notice("Choose a run with trees and a tree file."), {}
    if colour_by not in ("reward", "advantage"):
        colour_by = "reward"
    nodes = tree_nodes(ctx.reader.read_tree(run_id, name))
    return tree_svg(nodes, colour_by), {"run": run_id, "file": name, "nodes": len(nodes)}


def _view(session: interactive.CaseSession | None) -> tuple[str, str]:
    if session is None:
        return html.notice("Choose a case and press Start."), html.disclaimer()
    return html.transcript(session.turns), interactive.outcome(session)


def build_stepper(ctx: AppContext) -> None:
    gr.Markdown(INTRO)
    state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2):
            pick = gr.Dropdown(interactive.sample_choices(), value="1", label="Case (from the KGs)",
                               elem_id="case-pick")
            begin = gr.Button("Start", elem_id="case-start")
            with gr.Row():
                adapter = gr.Dropdown(ctx.adapter_choices(vlm=False), label="Model (run · method · stage)",
                                      allow_custom_value=True, scale=5, elem_id="case-adapter")
                refresh = gr.Button("↻", scale=0, min_width=40)
            model_go = gr.Button("Model's turn", variant="primary", elem_id="case-model")
            action = gr.Textbox(label="Or your action", placeholder="<ask>history</ask>", max_length=300,
                                elem_id="case-action")
            send = gr.Button("Send", elem_id="case-send")
        with gr.Column(scale=3):
            shown = gr.HTML(html.notice("Choose a case and press Start."), elem_id="case-transcript")
            result = gr.Markdown(html.DISCLAIMER, elem_id="case-outcome")

    @user_errors
    def on_start(key: str | None):
        session = interactive.start(str(key or ""))
        return (session, *_view(session))

    @user_errors
    def on_send(session, text: str):
        if session is None:
            raise ValueError("press Start first")
        session = interactive.act(session, text, "clinician")
        return (session, *_view(session), "")

    @user_errors
    def on_model(session, adapter_value: str | None):
        if session is None:
            raise ValueError("press Start first")
        run_id, stage = ctx.parse_adapter(adapter_value)
        session = interactive.model_turn(session, ctx.service, run_id, stage)
        return (session, *_view(session))

    begin.click(on_start, pick, [state, shown, result], api_name="case_start")
    send.click(on_send, [state, action], [state, shown, result, action], api_name="case_send")
    action.submit(on_send, [state, action], [state, shown, result, action], api_name=False)
    model_go.click(on_model, [state, adapter], [state, shown, result], api_name="case_model_turn",
                   concurrency_id="model", concurrency_limit=ctx.concurrency)
    refresh.click(lambda: gr.Dropdown(choices=ctx.adapter_choices(vlm=False)), None, adapter, api_name=False)


def build(ctx: AppContext) -> dict:
    build_stepper(ctx)
    gr.Markdown("**Tree-GRPO trees** that runs wrote to `trees/`, drawn.")
    runs = runs_with_trees(ctx)
    with gr.Row():
        run = gr.Dropdown(runs, value=None, label="Run with trees", allow_custom_value=True, scale=3)
        name = gr.Dropdown([], label="Tree file", allow_custom_value=True, scale=3)
        colour = gr.Radio(["reward", "advantage"], value="reward", label="Colour by", scale=2)
        refresh = gr.Button("↻", scale=0, min_width=40)
    if not runs:
        gr.Markdown("No run has written trees yet (Tree-GRPO runs will).")
    svg = gr.HTML()
    info = gr.JSON(visible=False)

    @user_errors
    def on_run(run_id: str | None):
        files = ctx.reader.tree_files(run_id) if run_id else []
        return gr.Dropdown(choices=files, value=files[0] if files else None)

    @user_errors
    def on_tree(run_id: str | None, name: str | None, colour_by: str):
        return show_tree(ctx, run_id, name, colour_by)

    run.change(on_run, run, name, api_name=False)
    gr.on([name.change, colour.change], on_tree, [run, name, colour], [svg, info], api_name="tree_view")
    refresh.click(lambda: gr.Dropdown(choices=runs_with_trees(ctx)), None, run, api_name=False)
    return {}
