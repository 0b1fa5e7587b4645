"""What every exported model card must say about its use, given by the product that exports it.

The core knows nothing about the domain it trains for, so it cannot know which warning a model card needs; the
package that assembles the command line registers it (medrl's `app` registers the medical research-use notice). No
torch here: registering happens when `medrl` starts, before any command's heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CardNotice:
    """notice: one line shown at the top of the card and again under its use; intended_use: the card's "Intended use
    and limits" text; tags: extra Hugging Face card tags."""

    notice: str
    intended_use: str = ""
    tags: tuple[str, ...] = ()


_NOTICES: list[CardNotice] = []


def register_card_notice(notice: CardNotice) -> None:
    """Add a notice every model card carries (registering the same one twice keeps one)."""
    if notice not in _NOTICES:
        _NOTICES.append(notice)


def card_notices() -> tuple[CardNotice, ...]:
    return tuple(_NOTICES)
