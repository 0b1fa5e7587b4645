"""A multi-step case, one turn at a time: a run's model (or the clinician) asks, the case answers.

Below the UI and tested without a browser. The model sees exactly what Tree-GRPO trained it on: the record's prompt
with the case's first observation appended to the last user message, then one assistant turn holding its actions
and the case's `<observation>` blocks in order (`training.rollout.env.OBSERVATION`), each model turn ending at the
environment's stop strings (`</ask>`, `</answer>`). A clinician can type the next action instead, e.g. to show
what a good line of questioning reveals, or to try a model from a point of the case the clinician chose.

Only runs trained on the case task are offered as players (`case_trained`): any other model never learned the
action grammar, so its turns would be noise dressed up as a consultation. A turn is scored only when the whole of
it is one action of the case (`read_action`); anything else is shown as an unreadable turn and scored as nothing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from knowledge_graph.disclaimer import DISCLAIMER
from training.rollout.env import OBSERVATION, with_first_observation
from training.rollout.responses import ANSWER, BOXED_CHOICE, sole_tag

N_SAMPLES = 12
SAMPLE_SEED = 11
MAX_ACTION_CHARS = 300
CASE_ENV = "clinical_case"  # the environment `clinical.cases` registers, and the one this module plays
DEFAULT_TURN_TOKENS = 96  # a case run whose config names no per-turn budget
UNREADABLE = "unreadable turn (not scored)"
EXAMPLES = "<ask>history</ask>, <ask>exam</ask>, <ask>labs: CRP</ask> or <answer>B</answer>"
EMPTY_ACTION = f"type an action, e.g. {EXAMPLES}"
NO_CASE_RUNS = (
    "No run here was trained on multi-step cases, so no model is offered: a model can only play a case "
    "in the action grammar it was trained on (an RL run on the clinical_case environment, e.g. "
    "Tree-GRPO with `medrl train clinical_cases_tiny`; `medrl demo` writes one to runs/demo/cases). "
    "You can still step through the case yourself."
)
# An option letter alone: boxed, bare or in brackets (a turn is one action and nothing else: `sole_tag`).
_LETTER = re.compile(BOXED_CHOICE.pattern + r"|\(?([A-E])\)?")
_LETTER_LABEL = re.compile(r"\(?([A-E])\)\s*(.+)", re.S)


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


# ---------------------------------------------------------------------------------------------- who may play
def case_trained(cfg: dict) -> bool:
    """Whether a run's config trained it on the case task: RL whose rollouts played the `clinical_case`
    environment (Tree-GRPO trees or chains, as `clinical_cases_tiny` does). SFT, DPO and single-turn RL runs never
    saw an observation block, so they are not offered."""
    rollout = cfg.get("rollout") or {}
    return str(cfg.get("trainer", "sft")) == "rl" and rollout.get("env") == CASE_ENV


def case_runs(reader) -> list:
    """The runs under the reader's root trained for cases and holding an adapter (RunInfo, sorted by id)."""
    out = []
    for info in reader.runs():
        if info.stages and case_trained(reader.run(info.id).read_config()):
            out.append(info)
    return out


def case_run_choices(reader) -> list[tuple[str, str]]:
    """(label, 'run_id@stage') for every stage of every case-trained run: the model dropdown's choices."""
    return [
        (f"{r.id} · {r.method} · {s} · trained on cases", f"{r.id}@{s}")
        for r in case_runs(reader)
        for s in r.stages
    ]


def require_case_run(reader, run_id: str) -> dict:
    """The run's config if it was trained for cases; ValueError naming what it was trained as otherwise (the API
    takes any id, not only the dropdown's)."""
    from .runs import method_of

    cfg = reader.run(run_id).read_config()
    if not case_trained(cfg):
        raise ValueError(
            f"{run_id} was not trained on multi-step cases ({method_of(cfg)} without the "
            f"{CASE_ENV} environment); choose a case-trained run"
        )
    return cfg


def turn_tokens(cfg: dict) -> int:
    """New tokens per model turn: the run's own per-turn budget from training (`rollout.max_new_tokens`)."""
    n = (cfg.get("rollout") or {}).get("max_new_tokens")
    return int(n) if isinstance(n, int) and n > 0 else DEFAULT_TURN_TOKENS


# ---------------------------------------------------------------------------------------------- the episode
@dataclass
class CaseSession:
    """One episode: the environment's state, the model-visible text, and the turns as shown."""

    record: dict
    env: Any
    messages: list[dict]
    transcript: str = ""  # the assistant turn so far: actions, each followed by its observation block
    # {"who": "case" | "model" | "clinician", "text": ..., and for actions "scored": whether it read as one}
    turns: list[dict] = field(default_factory=list)
    done: bool = False
    info: dict = field(default_factory=dict)

    @property
    def options(self) -> list[tuple[str, str]]:
        """The case's answer options, (letter, label), in letter order: what an answer may name."""
        return sorted((self.record.get("meta") or {}).get("options", {}).items())

    @property
    def max_turns(self) -> int:
        return int(getattr(self.env, "max_turns", 0) or 0)

    @property
    def turns_used(self) -> int:
        return int(self.info.get("turns", 0))

    @property
    def unreadable(self) -> int:
        return sum(1 for t in self.turns if t.get("scored") is False)

    def is_derm(self) -> bool:
        return (self.record.get("meta") or {}).get("case", {}).get("dermoscopy") is not None


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


def _option_letter(body: str, options: dict[str, str]) -> str | None:
    """The option an answer names when it is only that: 'B', '(B)', 'B.', '\\boxed{B}', 'B) its label' or the
    label; None for anything more or less ('B or C', 'B because ...', a letter that is not an option)."""
    text = body.strip().rstrip(".").strip()
    m = _LETTER.fullmatch(text)
    if m:
        letter = m.group(1) or m.group(2)
    else:
        m = _LETTER_LABEL.fullmatch(text)
        if m and options.get(m.group(1), "").lower() == m.group(2).strip().lower():
            letter = m.group(1)
        else:
            letter = next((k for k, v in options.items() if v.lower() == text.lower()), None)
    return letter if letter in options else None


def read_action(text: str, session: CaseSession) -> str | None:
    """The action a turn is scored as, or None when the turn is not exactly one action of this case.

    The case's own parser (`clinical.cases.parse_action`, lenient so RL gets a gradient) takes the first tag found
    anywhere, so 'Which number <answer>B</answer>' or '<answer>B, or maybe C</answer>' would end the case as a
    correct answer. Shown to a clinician, a verdict must mean the turn said that, so here the whole turn must be
    the action; an answer is passed on as its bare letter."""
    from clinical.cases import parse_action

    text = text.strip()
    if sole_tag(text, "ask") is not None:
        return text if parse_action(text, derm=session.is_derm()).kind != "invalid" else None
    body = sole_tag(text, ANSWER)
    if body is not None:
        letter = _option_letter(body, dict(session.options))
        return f"<answer>{letter}</answer>" if letter else None
    return None


def act(session: CaseSession, action: str, who: str) -> CaseSession:
    """Send one action to the case; its observation (if any) follows it in the transcript. An unreadable turn
    still uses a turn and gets the case's invalid-action reply (as in training), but never answers."""
    if session.done:
        raise ValueError("the case is over: start another")
    action = action.strip()
    if not action:
        raise ValueError(EMPTY_ACTION)
    if len(action) > MAX_ACTION_CHARS:
        raise ValueError(f"an action is at most {MAX_ACTION_CHARS} characters")
    scored = read_action(action, session)
    obs, done, info = session.env.step(scored if scored is not None else "")
    session.transcript += action + (OBSERVATION.format(obs) if obs else "")
    session.turns.append({"who": who, "text": action, "scored": scored is not None})
    if obs:
        session.turns.append({"who": "case", "text": obs})
    session.done, session.info = bool(done), dict(info)
    return session


def model_turn(
    session: CaseSession, service, run_id: str, stage: str, max_new_tokens: int = DEFAULT_TURN_TOKENS
) -> CaseSession:
    """The run's model writes the next turn (greedy, stopped at the environment's stop strings)."""
    if session.done:
        raise ValueError("the case is over: start another")
    gen = service.generate(
        run_id,
        stage,
        session.messages,
        continuation=session.transcript,
        stop_strings=list(getattr(session.env, "stop_strings", [])),
        max_new_tokens=max_new_tokens,
    )
    return act(session, gen.text or "(no output)", "model")


# ---------------------------------------------------------------------------------------------- what is shown
def turn_line(session: CaseSession) -> str:
    """'Turns used: 1 of 4' (the limit that ends the case without an answer)."""
    return f"Turns used: {session.turns_used} of {session.max_turns}"


def _last_unreadable(session: CaseSession) -> bool:
    acted = [t for t in session.turns if "scored" in t]
    return bool(acted) and acted[-1]["scored"] is False


def outcome(session: CaseSession) -> str:
    """Markdown: the turns used against the limit, how the case ended (the key is shown only once it is over), and
    whether the last turn went unscored, with the disclaimer."""
    info = session.info
    asked = info.get("questions", 0)
    last = f"Last turn: {UNREADABLE}. " if _last_unreadable(session) else ""
    counts = f"{asked} question(s) asked, {session.unreadable} unreadable turn(s) (not scored)"
    if not session.done:
        return f"{last}{turn_line(session)}. {counts.replace('asked', 'asked so far', 1)}.\n\n{DISCLAIMER}"
    opts = dict(session.options)
    key = session.record.get("answer", "")
    gold = f"{key}) {opts.get(key, '')}".strip()
    if info.get("answered"):
        verdict = "**Correct.**" if info.get("correct") else "**Not correct.**"
    else:
        verdict = f"**No answer** before the turn limit ({session.max_turns} turns)."
    return (
        f"{verdict} {last}The case's answer: {gold}. {turn_line(session)}; {counts}, "
        f"reward {info.get('reward', 0.0):+.2f}.\n\n{DISCLAIMER}"
    )
