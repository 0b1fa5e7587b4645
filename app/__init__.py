"""medrl app: the clinician web app and the `medrl` command. Importing it registers the medical research-use notice
that every exported model card carries (the domain-free core asks for it: `training.card_notice`)."""

from knowledge_graph.disclaimer import DISCLAIMER, INTENDED_USE
from training.card_notice import CardNotice, register_card_notice

register_card_notice(CardNotice(DISCLAIMER, INTENDED_USE, tags=("medical", "research-only")))
