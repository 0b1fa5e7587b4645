"""A multi-step case, one turn at a time: a run's model (or the clinician) asks, the case answers.

Below the UI and tested without a browser. The model sees exactly what Tree-GRPO trained it on: the record's prompt
with the case's first observation appended to the last user message, then one assistant turn holding its actions
and the case's `<observation>` blocks in order (`training.env.OBSERVATION`), each model turn ending at the
environment's stop strings (`</ask>`, `</answer>`). A clinician can type the next action instead, e.g. to show
what a good line of questioning reveals, or to try a model from a point of the case the clinician chose.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from training.env import OBSERVATION, with_first_observation
from training.run import DISCLAIMER

N_SAMPLES = 12
SAMPLE_SEED = 11
MAX_ACTION_CHARS = 300


@functools.lru_cache(maxsize=1)
def samples() -> list[dict]:
    """Case records (clinical KG vignettes and dermatology KG cases), seeded, the same on every start."""
    from clinical.cases import make_case_records

    return make_case_records(N_SAMPLES, seed=SAMPLE_SEED)


def sample_choices() -> list[tuple[str, str]]:
    out = []
    for i, rec in enumerate(samples()):
        case = rec["meta"]["case"]
        kind = "dermatology" if case.get("dermoscopy") is not None else "clinical"
        out.append((f"{i + 1} · {kind} · {case['complaint'][:70]}", str(i + 1)))
    return out


@dataclass
class CaseSession:
    """One episode: the environment's state, the model-visible text, and the turns as shown."""

    record: dict
    env: Any
    messages: list[dict]
    transcript: str = ""  # the assistant turn so far: actions, each followed by its observation block
    turns: list[dict] = field(default_factory=list)  # {"who": "case" | "model" | "clinician", "text": ...}
    done: bool = False
    info: dict = field(default_factory=dict)


def start(key: str) -> CaseSession:
    from clinical.cases import make_case_env

    recs = samples()
    if key not in {str(i + 1) for i in range(len(recs))}:
        raise ValueError(f"choose a case 1-{len(recs)}, got {key!r}")
    record = recs[int(key) - 1]
    env = make_case_env()
    first = env.reset(record)
    session = CaseSession(record=record, env=env, messages=with_first_observation(record["prompt"], first))
    session.turns.append({"who": "case", "text": first})
    return session


def act(session: CaseSession, action: str, who: str) -> CaseSession:
    """Send one action to the case; its observation (if any) follows it in the transcript."""
    if session.done:
        raise ValueError("the case is over: start another")
    action = action.strip()
    if not action:
        raise ValueError("type an action, e.g. <ask>history</ask>, <ask>exam</ask>, <ask>labs: CRP</ask> or "
                         "<answer>B</answer>")
    if len(action) > MAX_ACTION_CHARS:
        raise ValueError(f"an action is at most {MAX_ACTION_CHARS} characters")
    obs, done, info = session.env.step(action)
    session.transcript += action + (OBSERVATION.format(obs) if obs else "")
    session.turns.append({"who": who, "text": action})
    if obs:
        session.turns.append({"who": "case", "text": obs})
    session.done, session.info = bool(done), dict(info)
    return session


def model_turn(session: CaseSession, service, run_id: str, stage: str, max_new_tokens: int = 96) -> CaseSession:
    """The run's model writes the next turn (greedy, stopped at the environment's stop strings)."""
    gen = service.generate(run_id, stage, session.messages, continuation=session.transcript,
                           stop_strings=list(getattr(session.env, "stop_strings", [])),
                           max_new_tokens=max_new_tokens)
    return act(session, gen.text or "(no output)", "model")


def outcome(session: CaseSession) -> str:
    """Markdown: how the case ended (the key is shown only once it is over), with the disclaimer."""
    info = session.info
    asked = info.get("questions", 0)
    if not session.done:
        return f"Turn {info.get('turns', 0)}: {asked} question(s) asked so far.\n\n{DISCLAIMER}"
    opts = session.record["meta"].get("options", {})
    key = session.record.get("answer", "")
    gold = f"{key}) {opts.get(key, '')}".strip()
    if info.get("answered"):
        verdict = "**Correct.**" if info.get("correct") else "**Not correct.**"
    else:
        verdict = "**No answer** before the turn limit."
    return (f"{verdict} The case's answer: {gold}. {asked} question(s) asked, {info.get('invalid', 0)} invalid "
            f"action(s), reward {info.get('reward', 0.0):+.2f}.\n\n{DISCLAIMER}")
