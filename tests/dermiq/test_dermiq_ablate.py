"""`medrl dermiq ablate`'s arms change one setting each from the arm they are compared with: resolved through the
same code that trains them (`training.trainers.ablation.arm_config`), two arms' configs differ in exactly the one
recipe key the arm names, and nowhere else (run folder and name aside)."""

import pytest

from dermiq.ablate import ARM_SPECS, ARMS
from dermiq.pipeline import PIPELINE, load_recipe
from training.trainers.ablation import arm_config, config_diff

ONE_CHANGE = {  # arm -> the settings it changes from its `versus` arm
    "grpo+lag": {"reference.kind", "reference.as_old_policy"},  # lagged, re-synced every 10 steps
    "grpo+lag+k1": {"loss.beta"},
    "grpo++": {"advantages.estimator"},
    "binary": {"advantages.estimator"},
    "grpo++k3": {"loss.kl_estimator"},
}


@pytest.mark.parametrize("recipe", ["tiny", "3b"])
def test_each_arm_changes_one_setting_from_the_arm_it_is_compared_with(recipe, tmp_path, arm_inputs):
    raw = load_recipe(recipe)
    cfgs = {a.name: arm_config(PIPELINE, raw, "grpo++", tmp_path, 0, a, arm_inputs) for a in ARM_SPECS}
    assert list(cfgs) == list(ARMS) and ARM_SPECS[0].versus is None
    for arm in ARM_SPECS[1:]:
        assert set(config_diff(cfgs[arm.name], cfgs[arm.versus])) == ONE_CHANGE[arm.name], arm.name
    plain = cfgs["grpo"]
    assert plain.reference.kind == "none" and plain.loss.beta == 0 and plain.advantages.estimator == "grpo"
    assert cfgs["grpo++"].loss.kl_estimator == "k1" and cfgs["grpo++"].reference.kind == "lagged"
