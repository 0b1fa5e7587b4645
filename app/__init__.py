"""medrl app: the clinician web app and the `medrl` command, where the domain-free core meets the medical packages.
Importing it registers what the core asks for and must not name itself: the research-use notice every exported model
card carries (`training.card_notice`) and the writers of the medical tiny recipes' data (`medrl recipes --data`)."""

from knowledge_graph.disclaimer import DISCLAIMER, INTENDED_USE
from training.card_notice import CardNotice, register_card_notice
from training.recipes import register_data_writer

register_card_notice(CardNotice(DISCLAIMER, INTENDED_USE, tags=("medical", "research-only")))
for _writer in ("clinical.recipe_data:write", "dermiq.recipe_data:write"):
    register_data_writer(_writer)
