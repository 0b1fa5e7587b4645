"""`medrl bench grpo-step --vlm`: both sides really train on the image, and ours encodes it once per pass."""

import pytest

from bench import grpo_step


@pytest.mark.slow
def test_the_vlm_row_encodes_each_image_once_per_pass():
    """Ours: the rollout and the loss forward each run the vision tower once per prompt (no reference at beta=0);
    TRL, given the same records through its `image` column, runs it per completion row."""
    r = grpo_step.run(
        p=64, g=2, s=4, steps=2, warmup=1, threads=1, model="embedded:qwen25vl", images=True, with_trl=True
    )
    assert r["config"]["images"] is True
    assert r["ours"]["images_encoded_per_step"] == 2.0
    assert (
        r["trl"]["images_encoded_per_step"] >= 2 * 2
    )  # a copy of the image per completion, at least in the loss
    assert r["speedup_vs_trl"] > 0 and len(r["ours"]["step_times"]) == 2
    assert "+ one 448x448 image" in grpo_step.table(r)
