"""In headless Chromium, on the quick demo's runs (DermIQ trained on 6 labels, Clinical-R1 arms), what a clinician
sees beside an answer: how the model was asked (its own labels and length), a visible flag when the answer is cut
off, the model's record (held-out measures, per-class recall with must-not-miss classes marked, what it was trained
on, 'no medical skill' for an embedded model), a KG check judged against the case (never the answer itself), and a
free-text clinical question answered and flagged. Screenshots go to the test's tmp folder."""

import pytest

pytestmark = pytest.mark.slow  # headless Chromium over the quick demo's runs

TIMEOUT = 90_000


@pytest.fixture(scope="module")
def demo_url(quick_demo, serve_app):
    return serve_app(quick_demo)


@pytest.fixture
def page(new_page, demo_url):
    pg = new_page(demo_url, height=1200, timeout=TIMEOUT)
    pg.get_by_text("medrl · model inspection").wait_for()
    return pg


def test_dermatology_answer_is_asked_as_trained_flagged_and_beside_its_record(page, choose, tmp_path):
    choose(page, "derm-sample", "melanoma · sample 1")
    page.locator("#derm-image img").wait_for()
    choose(page, "derm-adapter", "dermiq/dpo")
    page.locator("#derm-run").click()
    answer = page.locator("#derm-answer .medrl-answer-card")
    answer.wait_for()
    text = answer.inner_text()
    assert "the DermIQ prompt over its 6 labels, up to 8 new tokens" in text  # the quick demo's card
    assert (
        "Cut off: the answer used all 8 new tokens" in text
    )  # 8 tokens never reach </answer>: flagged, not hidden
    record = page.locator("#derm-record")
    record.get_by_text("This model's record").wait_for()
    rec = record.inner_text()
    assert "no medical skill" in rec and "balanced accuracy" in rec and "Recall per class" in rec
    assert (
        record.locator("tr", has_text="melanoma").locator(".medrl-mnm").count() == 1
    )  # must-not-miss marked
    assert "train.jsonl" in rec and "dpo_pairs.jsonl" in rec  # every stage's data, oldest first
    assert "Judged against the synthetic sample's true label" in page.locator("#derm-check").inner_text()
    page.screenshot(path=str(tmp_path / "1-derm-sample.png"), full_page=True)


def test_upload_without_a_reference_is_not_checked_against_itself(page, choose, tmp_path):
    from PIL import Image

    img = tmp_path / "lesion.png"
    Image.new("RGB", (200, 160), (150, 90, 70)).save(img)
    page.locator("#derm-image input[type=file]").set_input_files(str(img))
    page.locator("#derm-image img").wait_for()
    choose(page, "derm-adapter", "dermiq/sft")
    page.locator("#derm-run").click()
    check = page.locator("#derm-check .medrl-kgcheck")
    check.wait_for()
    assert "no reference label and no case findings" in check.inner_text()
    assert check.locator(".medrl-kgflag-not_checkable").count() == 1
    assert "supported" not in [
        b.inner_text() for b in check.locator("tr", has_text="diagnosis").locator(".medrl-badge").all()
    ]
    page.screenshot(path=str(tmp_path / "2-derm-upload.png"), full_page=True)
    # described, the same upload is judged against what the clinician saw
    page.locator("#derm-description textarea").fill("asymmetric plaque, irregular border, blue-white veil")
    page.locator("#derm-run").click()
    page.locator("#derm-check", has_text="the case's stated findings point to").wait_for()
    assert "Conditions the findings the case states fit best" in page.locator("#derm-ddx").inner_text()
    page.screenshot(path=str(tmp_path / "3-derm-described.png"), full_page=True)


def test_free_text_clinical_question(page, choose, tmp_path):
    page.get_by_role("tab", name="Clinical case").click()
    page.locator("#clin-case textarea").fill(
        "58M, crushing central chest pain for 1 h, sweating, ST elevation in II, III, aVF. Diagnosis and first steps?"
    )
    choose(page, "clin-adapter", "clinical/crpo_s0")
    page.locator("#clin-run").click()
    answer = page.locator("#clin-answer .medrl-answer-card")
    answer.wait_for()
    assert "never measured" in answer.inner_text()  # trained on options: said so
    check = page.locator("#clin-check").inner_text()
    assert "the case's stated findings point to" in check or "Not checkable" in check
    assert "Conditions the findings the case states fit best" in page.locator("#clin-ddx").inner_text()
    assert "This model's record" in page.locator("#clin-record").inner_text()
    page.screenshot(path=str(tmp_path / "4-clinical-free-text.png"), full_page=True)
