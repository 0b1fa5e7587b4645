"""Every run list in the app is re-read when the page loads (and on its ↻): a run trained, or deleted, after the app
started shows up, or goes, on reload. Without a browser: the tabs hand their refreshers to the page's load event."""

import gradio as gr

from app import tab_adapters, tab_case
from app.context import AppContext


def fake_run(root, name: str, env: str | None = None):
    run = root / name
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    (run / "adapter" / "adapter_config.json").write_text("{}")
    rollout = f"rollout: {{env: {env}}}\n" if env else ""
    (run / "config.yaml").write_text(
        f"trainer: {'rl' if env else 'sft'}\nmodel: {{name: 'embedded:qwen2'}}\n{rollout}"
    )
    (run / "trees").mkdir()
    (run / "trees" / "step-1.jsonl").write_text('{"nodes": []}\n')
    return run


def choices(update) -> list[str]:
    return [c[1] if isinstance(c, (list, tuple)) else c for c in update.choices]


def test_adapters_cases_and_trees_lists_are_reread(tmp_path):
    root = tmp_path / "runs"
    ctx = AppContext(root, scratch=tmp_path / "scratch")
    with gr.Blocks():
        adapters = tab_adapters.build(ctx)
        case = tab_case.build(ctx)
    (adapter_list,) = adapters["refresh"]
    stepper, trees = case["refresh"]
    assert choices(adapter_list[0]()) == [] and choices(trees[0]()) == []
    fake_run(root, "late")
    fake_run(root, "cases", env="clinical_case")
    assert set(choices(adapter_list[0]())) == {"late", "cases"}
    assert set(choices(trees[0]())) == {"late", "cases"}
    found, note = stepper[0]()
    assert [c for c in choices(found)] == [
        "cases@final"
    ] and not note.visible  # only the case-trained run plays
