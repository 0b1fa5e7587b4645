"""Interactive case tab: step through a multi-step case (a run's model or the clinician asks, the case answers;
`app.interactive`), and draw the Tree-GRPO trees a run wrote to `trees/`, nodes coloured by reward or advantage,
text on hover.

The case's options and its turn limit head the transcript, because a clinician judging a model's line of questioning
needs to know what it may answer and how many turns it has. Only case-trained runs are offered as players."""

from __future__ import annotations

from html import escape

import gradio as gr

from . import html, interactive
from .context import AppContext, user_errors
from .draw import tree_nodes, tree_svg

INTRO = (
    "**Step through a case.** The case reveals what is asked: `<ask>history</ask>`, `<ask>exam</ask>`, "
    "`<ask>labs: NAME</ask>` (and `<ask>dermoscopy</ask>` for skin cases), until `<answer>LETTER</answer>` "
    "names one of the case's options. A turn is scored only when it is exactly one such action; anything "
    "else is shown as an unreadable turn (not scored) and still uses a turn. Let a case-trained run's model "
    "take the next turn, or type it yourself."
)
UNREADABLE_BADGE = (
    '<span class="medrl-badge medrl-unverifiable medrl-unreadable" title="not one action of the '
    f'case: the case did not score it">{escape(interactive.UNREADABLE)}</span>'
)


def runs_with_trees(ctx: AppContext) -> list[tuple[str, str]]:
    return [(r.label, r.id) for r in ctx.reader.runs() if ctx.reader.tree_files(r.id)]


def show_tree(ctx: AppContext, run_id: str | None, name: str | None, colour_by: str) -> tuple[str, dict]:
    if not run_id or not name:
        return html.notice("Choose a run with trees and a tree file."), {}
    if colour_by not in ("reward", "advantage"):
        colour_by = "reward"
    nodes = tree_nodes(ctx.reader.read_tree(run_id, name))
    return tree_svg(nodes, colour_by), {"run": run_id, "file": name, "nodes": len(nodes)}


def brief_html(session: interactive.CaseSession) -> str:
    """The case's options and its turn limit with the turns used: what the player may answer and for how long."""
    options = "".join(f"<li><b>{escape(k)})</b> {escape(v)}</li>" for k, v in session.options)
    return (
        f'<div class="medrl-card medrl-case-brief"><div class="medrl-muted">Options (an answer names one)</div>'
        f'<ul class="medrl-case-options" style="list-style: none; padding-left: 0; margin: 4px 0">{options}</ul>'
        f'<div class="medrl-case-turns"><b>Turn limit: {session.max_turns}</b> (each question, answer or '
        f"unreadable turn uses one) · {escape(interactive.turn_line(session))}</div></div>"
    )


def transcript_html(session: interactive.CaseSession) -> str:
    """The brief, then who said what in order; a turn the case could not read carries a 'not scored' badge."""
    rows = []
    for t in session.turns:
        who = t["who"]
        badge = f" {UNREADABLE_BADGE}" if t.get("scored") is False else ""
        rows.append(
            f'<div class="medrl-turn medrl-turn-{escape(who)}"><b>{escape(html.TURN_LABELS.get(who, who))}'
            f":</b> {escape(t['text'])}{badge}</div>"
        )
    return brief_html(session) + f'<div class="medrl-card medrl-transcript">{"".join(rows)}</div>'


def _view(session: interactive.CaseSession | None) -> tuple[str, str]:
    if session is None:
        return html.notice("Choose a case and press Start."), html.disclaimer()
    return transcript_html(session), interactive.outcome(session)


def model_choices(ctx: AppContext) -> tuple[list[tuple[str, str]], str]:
    """The case-trained runs' stages, and the note shown when there is none (why nothing is offered)."""
    choices = interactive.case_run_choices(ctx.reader)
    return choices, ("" if choices else interactive.NO_CASE_RUNS)


def turn_budget(ctx: AppContext, cfg: dict) -> int:
    """The run's per-turn budget from training, capped by the app's limit when one is set."""
    n = interactive.turn_tokens(cfg)
    cap = getattr(ctx, "max_new_tokens", None)
    return min(n, int(cap)) if cap else n


def play_model_turn(ctx: AppContext, session, adapter_value: str | None):
    """One model turn from a case-trained run (refused for any other, whatever the browser sends)."""
    if session is None:
        raise ValueError("press Start first")
    run_id, stage = ctx.parse_adapter(adapter_value)
    cfg = interactive.require_case_run(ctx.reader, run_id)
    return interactive.model_turn(session, ctx.service, run_id, stage, max_new_tokens=turn_budget(ctx, cfg))


def build_stepper(ctx: AppContext) -> None:
    gr.Markdown(INTRO)
    state = gr.State(None)
    choices, note = model_choices(ctx)
    with gr.Row():
        with gr.Column(scale=2):
            pick = gr.Dropdown(
                interactive.sample_choices(), value="1", label="Case (from the KGs)", elem_id="case-pick"
            )
            begin = gr.Button("Start", elem_id="case-start")
            with gr.Row():
                adapter = gr.Dropdown(
                    choices,
                    label="Model trained on cases (run · method · stage)",
                    allow_custom_value=True,
                    scale=5,
                    elem_id="case-adapter",
                )
                refresh = gr.Button("↻", scale=0, min_width=40)
            no_runs = gr.Markdown(note, visible=bool(note), elem_id="case-no-runs")
            model_go = gr.Button("Model's turn", variant="primary", elem_id="case-model")
            action = gr.Textbox(
                label="Or your action",
                placeholder="<ask>history</ask>",
                max_length=300,
                elem_id="case-action",
            )
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
        session = play_model_turn(ctx, session, adapter_value)
        return (session, *_view(session))

    def on_refresh():
        found, why = model_choices(ctx)
        return gr.Dropdown(choices=found), gr.Markdown(why, visible=bool(why))

    begin.click(on_start, pick, [state, shown, result], api_name="case_start")
    send.click(on_send, [state, action], [state, shown, result, action], api_name="case_send")
    action.submit(on_send, [state, action], [state, shown, result, action], api_name=False)
    model_go.click(
        on_model,
        [state, adapter],
        [state, shown, result],
        api_name="case_model_turn",
        concurrency_id="model",
        concurrency_limit=ctx.concurrency,
    )
    refresh.click(on_refresh, None, [adapter, no_runs], api_name=False)
    return on_refresh, None, [adapter, no_runs]


def build(ctx: AppContext) -> dict:
    """The stepper and the tree viewer; returns their list refreshers for the page's load event."""
    stepper_refresh = build_stepper(ctx)
    gr.Markdown("**Tree-GRPO trees** that runs wrote to `trees/`, drawn.")
    runs = runs_with_trees(ctx)
    with gr.Row():
        run = gr.Dropdown(
            runs, value=None, label="Run with trees", allow_custom_value=True, scale=3, elem_id="tree-run"
        )
        name = gr.Dropdown([], label="Tree file", allow_custom_value=True, scale=3, elem_id="tree-file")
        colour = gr.Radio(["reward", "advantage"], value="reward", label="Colour by", scale=2)
        refresh = gr.Button("↻", scale=0, min_width=40)
    if not runs:
        gr.Markdown("No run has written trees yet (Tree-GRPO runs will; `medrl demo` writes one).")
    svg = gr.HTML(elem_id="tree-svg")
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

    def on_refresh():
        return gr.Dropdown(choices=runs_with_trees(ctx))

    refresh.click(on_refresh, None, run, api_name=False)
    return {"refresh": [stepper_refresh, (on_refresh, None, run)]}
