"""The interactive case in headless Chromium, on a runs root holding a case-trained run (the demo's quick Tree-GRPO
stage) and a run that was not: the case shows its options and turn limit, only the case-trained model is offered,
it plays a turn, a garbled turn is marked unreadable and never scored as correct, an error keeps its action
examples, and the run's trees draw. Screenshots go to the test's tmp folder."""

from __future__ import annotations

import shutil

import pytest
import yaml

from app import interactive

pytestmark = pytest.mark.slow  # trains a one-step Tree-GRPO run and drives Chromium (about a minute)

TIMEOUT = 60_000  # ms; generous for a busy 2-core machine
GARBLED = "Which number is larger <answer>{gold}</answer>"


def _not_for_cases(case_run, dest) -> None:
    """A copy of the case run whose config says SFT: same adapter, but not trained on cases, so never offered."""
    shutil.copytree(case_run, dest, ignore=shutil.ignore_patterns("trees"))
    cfg = yaml.safe_load((dest / "config.yaml").read_text())
    cfg["trainer"] = "sft"
    cfg.pop("rollout", None)
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def case_url(tmp_path_factory, one_thread, serve_app):
    """The app on a root with demo/cases (Tree-GRPO on cases, one quick step) and demo/sft (not for cases)."""
    from app.demo import run_cases

    root = tmp_path_factory.mktemp("case_runs")
    run_cases(root / "demo", seed=0, quick=True)
    _not_for_cases(root / "demo" / "cases", root / "demo" / "sft")
    return serve_app(root, max_new_tokens=8, max_loaded=1, concurrency=1)


@pytest.fixture
def page(new_page, case_url):
    pg = new_page(case_url, height=1100, timeout=TIMEOUT)
    pg.get_by_role("tab", name="Interactive case").click()
    return pg


def _choose(page, elem_id: str, option: str) -> list[str]:
    """Pick an option of a gradio Dropdown by its label; returns every label it offered."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option").first.wait_for()
    labels = [t.replace("✓", "").strip() for t in page.get_by_role("option").all_inner_texts()]  # ✓: selected
    page.get_by_role("option", name=option, exact=False).first.click()
    return labels


def test_play_a_case_with_a_case_trained_model(page, tmp_path):
    session = interactive.start("1")  # the case Start opens, for its options and key
    gold = session.record["answer"]
    assert not page.locator("#case-no-runs").is_visible()  # a case-trained run exists: no "why none" note
    page.locator("#case-start").click()
    brief = page.locator("#case-transcript .medrl-case-brief")
    brief.get_by_text("Turns used: 0 of 4").wait_for()
    shown = brief.inner_text()
    assert "Turn limit: 4" in shown
    for letter, label in session.options:
        assert f"{letter}) {label}" in shown, letter
    page.screenshot(path=str(tmp_path / "1-case-options.png"), full_page=True)

    offered = _choose(page, "case-adapter", "demo/cases · Tree-GRPO · final")
    assert offered and all(o.startswith("demo/cases · Tree-GRPO") for o in offered), (
        offered
    )  # demo/sft is not
    page.locator("#case-model").click()
    model = page.locator("#case-transcript .medrl-turn-model")
    model.wait_for()
    brief.get_by_text("Turns used: 1 of 4").wait_for()
    said = model.inner_text().removeprefix("Model:").replace(interactive.UNREADABLE, "").strip()
    unreadable = model.locator(".medrl-unreadable").count() == 1
    assert unreadable == (interactive.read_action(said, session) is None), said
    page.screenshot(path=str(tmp_path / "2-model-turn.png"), full_page=True)

    page.locator("#case-action textarea").fill(GARBLED.format(gold=gold))
    page.locator("#case-send").click()
    page.locator("#case-transcript .medrl-turn-clinician .medrl-unreadable").wait_for()
    brief.get_by_text("Turns used: 2 of 4").wait_for()
    outcome = page.locator("#case-outcome").inner_text()
    assert outcome.startswith(f"Last turn: {interactive.UNREADABLE}.") and "Correct" not in outcome, outcome
    page.screenshot(path=str(tmp_path / "3-garbled-turn.png"), full_page=True)

    page.locator("#case-action textarea").fill("")
    page.locator("#case-send").click()
    toast = page.get_by_text("type an action, e.g.")
    toast.wait_for()
    assert (
        "<ask>history</ask>, <ask>exam</ask>, <ask>labs: CRP</ask> or <answer>B</answer>"
        in toast.inner_text()
    )
    page.screenshot(path=str(tmp_path / "4-error-examples.png"))  # the viewport: the toast is pinned to it

    _choose(page, "tree-run", "demo/cases")
    tree = page.locator("#tree-svg svg.medrl-tree-svg")
    tree.wait_for()
    assert tree.locator("circle").count() > 1  # the prompt and its turns
    page.screenshot(path=str(tmp_path / "5-trees.png"), full_page=True)
    print(f"\nscreenshots: {tmp_path}")
