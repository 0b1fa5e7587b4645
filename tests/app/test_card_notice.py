"""The medical notice reaches the domain-free core's model cards through registration by the app package."""

import app  # noqa: F401  (importing it registers the notice, as `medrl` does when it starts)
from knowledge_graph.disclaimer import DISCLAIMER
from training.card_notice import card_notices, register_card_notice


def test_the_app_registers_the_research_use_notice_once():
    mine = [n for n in card_notices() if n.notice == DISCLAIMER]
    assert len(mine) == 1 and {"medical", "research-only"} <= set(mine[0].tags) and mine[0].intended_use
    register_card_notice(mine[0])
    assert card_notices().count(mine[0]) == 1
