"""`medrl clinical ablate`'s arms change one thing each from the arm they are compared with: resolved through the same
code that trains them (`training.trainers.ablation.arm_config`), two arms' configs differ only in the rewards' weights
or the aggregation the arm names (run folder and name aside)."""

import pytest

from clinical.ablate import ARM_SPECS, OBJECTIVES
from clinical.pipeline import PIPELINE, load_recipe
from training.trainers.ablation import arm_config, config_diff


@pytest.mark.parametrize("recipe", ["tiny", "3b"])
def test_each_arm_changes_one_thing_from_the_arm_it_is_compared_with(recipe, tmp_path, arm_inputs):
    raw = load_recipe(recipe)
    cfgs = {a.name: arm_config(PIPELINE, raw, "crpo", tmp_path, 0, a, arm_inputs) for a in ARM_SPECS}
    grpo, crpo = cfgs["grpo"], cfgs["crpo"]
    # GRPO vs CRPO: the reward table only, under the same aggregation
    assert set(config_diff(grpo, crpo)) == {"rewards"}
    assert grpo.advantages.aggregation == crpo.advantages.aggregation == "normalize_then_sum"
    assert set(grpo.rewards) == set(OBJECTIVES[:3]) and set(crpo.rewards) == set(OBJECTIVES)
    for arm in ARM_SPECS[2:]:
        diff = config_diff(cfgs[arm.name], cfgs[arm.versus])
        if arm.name.startswith("crpo:"):
            assert diff == {"advantages.aggregation": (arm.name.split(":")[1], "normalize_then_sum")}
        else:  # crpo-<objective>: that objective's weight 0, every other weight the recipe's
            mine, theirs = diff.pop("rewards")
            assert not diff and set(mine) == set(theirs)
            assert {k for k in mine if mine[k] != theirs[k]} == {"clinical_" + arm.name.split("-", 1)[1]}
            assert mine["clinical_" + arm.name.split("-", 1)[1]] == 0.0
