"""How a Clinical-R1 run is asked, read from its task card (`training.run.task_card`): the system turn it trained with
(the format spec), the question laid out as its training records were, and the answer length.

The app and `medrl clinical eval` build their prompts here. The cold-start SFT run trains on the RL prompt, so the
app's old guess (SFT runs get the bare stem-and-options question) asked it in a way it never saw: 0 of 15 answers
well-formed, against 12 of 15 asked the trained way.

A question without options is asked too (a clinician's "Diagnosis and first steps?"): the same system turn, the
case, and a note to box the answer in words. The models were trained on lettered options, so the app says that
such an answer's accuracy was never measured.
"""

from __future__ import annotations

from .prompts import SYSTEM, user_text

DEFAULT_MAX_NEW_TOKENS = 512
FREE_NOTE = (
    "There are no options: give the most likely diagnosis and the first steps, and write the diagnosis "
    "in \\boxed{}."
)


def system(card: dict | None) -> str | None:
    """The card's system turn; Clinical-R1's when there is no card; None when the run trained without one."""
    if not card:
        return SYSTEM
    from training.run.task_card import system_text

    return system_text(card)


def free_text(case: str) -> str:
    return f"{case.strip()}\n\n{FREE_NOTE}"


def messages(
    card: dict | None, case: str, options: dict[str, str] | None, note: str | None = None
) -> list[dict]:
    """[system from the card,] the case with its options (or the free-text note) as the training records laid out."""
    sys_text = system(card)
    if options and sys_text is None and not _options_block(card):
        from .records import question  # a run trained on the bare stem-and-lines layout (`clinical.records`)

        user = question({"question": case, "options": options})
    else:
        user = user_text(case, options, note) if options else free_text(case)
    return ([{"role": "system", "content": sys_text}] if sys_text else []) + [
        {"role": "user", "content": user}
    ]


def record_messages(card: dict | None, record: dict) -> list[dict]:
    """A data record's prompt under the card's system turn (its own user turn kept): what evaluation asks."""
    users = [m for m in record.get("prompt") or [] if m.get("role") != "system"]
    sys_text = system(card)
    return ([{"role": "system", "content": sys_text}] if sys_text else []) + users


def _options_block(card: dict | None) -> bool:
    """Did the run's training question list its options under an 'Options:' heading (Clinical-R1's layout)?"""
    for m in (card or {}).get("prompt") or []:
        if m.get("role") == "user" and "\nOptions:\n" in str(m.get("content")):
            return True
    return False


def max_new_tokens(card: dict | None) -> int:
    return int((card or {}).get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
