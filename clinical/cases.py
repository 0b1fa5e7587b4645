"""The multi-step case environment: the model sees a presenting complaint, asks for findings, then answers.

Actions (one per model turn): ``<ask>history</ask>``, ``<ask>exam</ask>``, ``<ask>labs: NAME</ask>``, for
dermatology cases ``<ask>dermoscopy</ask>``, and ``<answer>X</answer>`` (an option letter, ``X) label`` or the
label), which ends the episode. Observations reveal the case's structured findings, drawn from the clinical KG
vignettes (`clinical.synthetic`) and from the dermatology KG. Anything else gets one fixed error observation; a
turn limit ends an episode without an answer. Reward: 1 for a correct answer, minus ``question_cost`` per question.

The environment follows `training.rollout.env`'s protocol (``reset``/``step``). The RL rewards registered here score the
decoded transcript (model turns and observations, `training.rollout.env.split_turns`) with the same parser, so a recipe
weighs correctness, questions asked and action validity as separate named rewards:
``{case_correct: 1.0, case_questions: -0.05, case_valid: 0.2}``. Torch-free.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from training.objectives.rewards import reward
from training.rollout.env import environment, split_turns
from training.rollout.responses import boxed_choice, tag_pattern

LETTERS = "ABCDE"
ASK = tag_pattern("ask", ignore_case=False)
ANSWER = tag_pattern("answer", ignore_case=False)
INVALID = (
    "Invalid action. Ask with <ask>history</ask>, <ask>exam</ask>, <ask>labs: NAME</ask> (dermatology: "
    "<ask>dermoscopy</ask>) or answer with <answer>LETTER</answer>."
)
INSTRUCTIONS = (
    "You are assessing a patient step by step. Each turn, write exactly one action: <ask>history</ask>, "
    "<ask>exam</ask>, <ask>labs: NAME</ask>{derm}, or <answer>LETTER</answer> to give the diagnosis. "
    "Each question has a small cost.\nOptions:\n{options}"
)
DEFAULT_MAX_TURNS = 4
STOP_STRINGS = ["</ask>", "</answer>"]


@dataclass
class Action:
    kind: str  # history | exam | labs | dermoscopy | answer | invalid
    arg: str = ""


def parse_action(text: str, derm: bool = False) -> Action:
    """The first action tag of one model turn (what the environment and the rewards both read)."""
    ask, ans = ASK.search(text), ANSWER.search(text)
    if ans and (not ask or ans.start() < ask.start()):
        return Action("answer", ans.group(1).strip())
    if not ask:
        return Action("invalid")
    body = ask.group(1).strip()
    head, _, arg = body.partition(":")
    head = head.strip().lower()
    if head in ("history", "exam") and not arg.strip():
        return Action(head)
    if head == "dermoscopy" and derm and not arg.strip():
        return Action(head)
    if head == "labs" and arg.strip():
        return Action("labs", arg.strip())
    return Action("invalid")


def answer_letter(answer: str, options: dict[str, str]) -> str | None:
    """An option letter from 'B', 'B) label', '\\boxed{B}' or the label itself; None if none fits."""
    text = answer.strip()
    boxed = boxed_choice(text)
    if boxed:
        return boxed
    m = re.match(r"^\(?([A-E])\b", text)
    if m:
        return m.group(1)
    low = text.lower().rstrip(".")
    for k, label in options.items():
        if label.lower() == low:
            return k
    return None


def _match_labs(name: str, labs: list[tuple[str, str]]) -> list[str]:
    """Lab/imaging results whose text or KG id shares a word (3+ letters) with the requested test name."""
    words = {w for w in re.findall(r"[a-z0-9]+", name.lower()) if len(w) >= 3}
    out = []
    for nid, text in labs:
        have = set(re.findall(r"[a-z0-9]+", f"{text} {nid}".lower()))
        if words & have:
            out.append(text)
    return out


@dataclass
class CaseEnv:
    """One case per episode (`reset` reads the record's ``meta.case``); deep-copyable, as branching needs."""

    max_turns: int = DEFAULT_MAX_TURNS
    question_cost: float = 0.0
    stop_strings: list[str] = field(default_factory=lambda: list(STOP_STRINGS))
    case: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    answer: str = ""
    turns: int = 0
    questions: int = 0
    invalid: int = 0

    def reset(self, record: dict) -> str:
        meta = record.get("meta") or {}
        if "case" not in meta:
            raise ValueError(
                "case environment: the record has no meta.case (write records with clinical.cases)"
            )
        self.case, self.options, self.answer = (
            meta["case"],
            meta.get("options", {}),
            str(record.get("answer", "")),
        )
        self.turns = self.questions = self.invalid = 0
        return f"Presenting complaint: {self.case['complaint']}"

    def _info(self, answered: bool, correct: bool) -> dict:
        return {
            "turns": self.turns,
            "questions": self.questions,
            "invalid": self.invalid,
            "answered": answered,
            "correct": correct,
            "reward": float(correct) - self.question_cost * self.questions,
        }

    def step(self, action: str) -> tuple[str, bool, dict]:
        self.turns += 1
        act = parse_action(action, derm=bool(self.case.get("dermoscopy") is not None))
        if act.kind == "answer":
            correct = answer_letter(act.arg, self.options) == self.answer
            return "", True, self._info(True, correct)
        if act.kind == "invalid":
            self.invalid += 1
            obs = INVALID
        else:
            self.questions += 1
            obs = self._reveal(act)
        return obs, self.turns >= self.max_turns, self._info(False, False)

    def _reveal(self, act: Action) -> str:
        c = self.case
        if act.kind == "labs":
            found = _match_labs(act.arg, [tuple(x) for x in c.get("labs", [])])
            return f"{act.arg}: {'; '.join(found)}." if found else f"{act.arg}: no abnormality reported."
        items = c.get(act.kind) or []
        title = {"history": "History", "exam": "Examination", "dermoscopy": "Dermoscopy"}[act.kind]
        return f"{title}: {', '.join(items)}." if items else f"{title}: nothing remarkable."


@environment("clinical_case")
def make_case_env(max_turns: int = DEFAULT_MAX_TURNS, question_cost: float = 0.0) -> CaseEnv:
    return CaseEnv(max_turns=max_turns, question_cost=question_cost)


# ---------------------------------------------------------------------------------------------- cases
def clinical_case(vignette: dict) -> dict:
    """A KG vignette (`clinical.synthetic.make_vignette`) as a case: complaint = age, sex and the first symptom."""
    f, ids = vignette["findings"], vignette.get("finding_ids", {})
    who = {"female": "woman", "male": "man"}.get(vignette.get("sex", ""), "patient")
    first = f["history"][0] if f.get("history") else "nonspecific symptoms"
    age = vignette.get("age", 50)
    return {
        "kind": "clinical",
        "complaint": f"{_article(age)} {age}-year-old {who} presents with {first}.",
        "history": list(f.get("history", [])),
        "exam": list(f.get("exam", [])),
        "labs": [[nid, text] for nid, text in zip(ids.get("labs", []), f.get("labs", []), strict=False)],
    }


def _article(age: int) -> str:
    return "An" if str(age).startswith("8") or age in (11, 18) else "A"


_DERM_EXAM = ("morphology", "colour", "border", "shape", "surface", "size", "distribution", "body_site")
_TYPICAL = {"typical": 0.85, "possible": 0.3, "atypical": 0.05}


def derm_case(kg, condition: str, rng: random.Random) -> dict:
    """A dermatology case from the dermatology KG: history (symptoms, risk factors), exam (the lesion), dermoscopy."""

    def pick(types: tuple[str, ...], k: int) -> list[str]:
        feats = kg.features(condition, types=list(types))
        kept = [ft.label for ft in feats if rng.random() < _TYPICAL.get(ft.typicality, 0.2)]
        return (kept or [ft.label for ft in feats[:1]])[:k]

    age = rng.randint(20, 80)
    who = rng.choice(["woman", "man"])
    exam = pick(_DERM_EXAM, 4)
    site = next((x for x in exam if x in {kg.label(n) for n in kg.nodes("body_site")}), "skin")
    options = [condition, *_derm_distractors(kg, condition, rng)]
    rng.shuffle(options)
    return {
        "case": {
            "kind": "dermatology",
            "complaint": f"{_article(age)} {age}-year-old {who} presents with a lesion on the {site}.",
            "history": pick(("symptom", "risk_factor"), 4),
            "exam": exam,
            "labs": [],
            "dermoscopy": pick(("dermoscopic_feature",), 3),
        },
        "options": {LETTERS[i]: kg.label(c) for i, c in enumerate(options)},
        "answer_idx": LETTERS[options.index(condition)],
        "condition_id": condition,
    }


def _derm_distractors(kg, cid: str, rng: random.Random, n: int = 4) -> list[str]:
    ddx = [c for c in kg.differential(cid) if c != cid]
    rng.shuffle(ddx)
    rest = [c for c in kg.conditions() if c != cid and c not in ddx]
    rng.shuffle(rest)
    return (ddx + rest)[:n]


def case_record(case: dict, options: dict[str, str], answer_idx: str, condition_id: str = "") -> dict:
    """An RL record: the instructions and options as the prompt (the complaint arrives from `reset`)."""
    derm = case.get("dermoscopy") is not None
    opts = "\n".join(f"{k}) {v}" for k, v in sorted(options.items()))
    text = INSTRUCTIONS.format(derm=", <ask>dermoscopy</ask>" if derm else "", options=opts)
    return {
        "prompt": [{"role": "user", "content": text}],
        "images": [],
        "answer": answer_idx,
        "meta": {"case": case, "options": options, "condition_id": condition_id, "source": "case"},
    }


def make_case_records(n: int, seed: int = 0, derm_fraction: float = 0.25) -> list[dict]:
    """``n`` case records, clinical KG vignettes and (a ``derm_fraction`` share) dermatology KG cases, seeded."""
    from clinical.synthetic import generate_vignettes
    from knowledge_graph.io import load_builtin

    n_derm = int(round(n * derm_fraction))
    out = [
        case_record(clinical_case(v), v["options"], v["answer_idx"], v["condition_id"])
        for v in generate_vignettes(n - n_derm, seed)
    ]
    if n_derm:
        kg = load_builtin("dermatology")
        conds = [c for c in kg.conditions() if kg.features(c, types=["dermoscopic_feature"])]
        rng = random.Random(f"derm/{seed}")
        for i in range(n_derm):
            d = derm_case(kg, conds[rng.randrange(len(conds))], random.Random(f"derm/{seed}/{i}"))
            out.append(case_record(d["case"], d["options"], d["answer_idx"], d["condition_id"]))
    random.Random(seed).shuffle(out)
    return out


def demonstration(record: dict, observation_template: str) -> str:
    """A cold-start SFT target: ask history, ask exam, then answer, with the observations the environment gives."""
    env = CaseEnv(max_turns=8)
    env.reset(record)
    parts = []
    for action in ("<ask>history</ask>", "<ask>exam</ask>"):
        obs, _, _ = env.step(action)
        parts.append(action + observation_template.format(obs))
    parts.append(f"<answer>{record['answer']}</answer>")
    return "".join(parts)


def sft_records(records: list[dict], observation_template: str, cuts: int = 1) -> list[dict]:
    """Cold-start SFT records: the prompt as the sampler shows it (complaint appended), then the demonstration cut
    after its first action (``cuts=1``: the tiny model learns the opening action's format fastest), or also after
    its second and third (``cuts=3``: three records a case)."""
    out = []
    for r in records:
        env = CaseEnv()
        user = f"{r['prompt'][-1]['content']}\n\n{env.reset(r)}"
        demo = demonstration(r, observation_template)
        cuts_at = [demo.index("</ask>") + 6, demo.index("</ask>", demo.index("</ask>") + 6) + 6, len(demo)]
        for cut in cuts_at[:cuts]:
            out.append(
                {
                    "messages": [
                        *r["prompt"][:-1],
                        {"role": "user", "content": user},
                        {"role": "assistant", "content": demo[:cut]},
                    ],
                    "images": [],
                }
            )
    return out


# ---------------------------------------------------------------------------------------------- rewards
_SHAPES = ("<ask>history</ask>", "<ask>exam</ask>", "<ask>labs: ", "<answer>")


def format_credit(turn: str) -> float:
    """For an invalid turn: half the longest start of an action (``<ask>history</ask>``, ...) written anywhere in
    it, as a share of that action: a dense, monotone path to the format for a model that has never written one
    (the parser, too, reads an action anywhere in the turn)."""
    best = 0.0
    for i, ch in enumerate(turn):
        if ch != "<":
            continue
        for shape in _SHAPES:
            n = 0
            while n < len(shape) and i + n < len(turn) and turn[i + n] == shape[n]:
                n += 1
            best = max(best, n / len(shape))
    return 0.5 * best


def score_transcript(text: str, answer: str, options: dict[str, str], derm: bool = False) -> dict:
    """Replay a decoded transcript's model turns through the parser: answered, correct, questions, and the mean
    format credit per turn (`format_credit`; 1 per valid action)."""
    turns = split_turns(text)
    questions = 0
    valid = 0.0
    answered = correct = False
    for t in turns:
        act = parse_action(t, derm)
        if act.kind == "answer":
            answered, correct = True, answer_letter(act.arg, options) == answer
            valid += 1
            break
        if act.kind != "invalid":
            questions += 1
            valid += 1
        else:
            valid += format_credit(t)
    return {
        "answered": answered,
        "correct": correct,
        "questions": questions,
        "valid": valid / max(len(turns), 1),
    }


def _scores(completions, answer, meta) -> list[dict]:
    out = []
    for text, ans, m in zip(completions, answer, meta):
        m = m or {}
        out.append(
            score_transcript(
                text, str(ans), m.get("options", {}), derm=(m.get("case") or {}).get("dermoscopy") is not None
            )
        )
    return out


@reward("case_correct")
def case_correct(prompts, completions, answer, meta, **_) -> list[float]:
    """1 when the episode's answer names the right option."""
    return [float(s["correct"]) for s in _scores(completions, answer, meta)]


@reward("case_questions")
def case_questions(prompts, completions, answer, meta, **_) -> list[float]:
    """Questions asked before answering (give it a small negative weight: the per-question cost)."""
    return [float(s["questions"]) for s in _scores(completions, answer, meta)]


@reward("case_valid")
def case_valid(prompts, completions, answer, meta, **_) -> list[float]:
    """Mean per-turn format credit: 1 per valid action, partial credit for a started tag (dense, for small models)."""
    return [s["valid"] for s in _scores(completions, answer, meta)]


if (
    __name__ == "__main__"
):  # python -m clinical.cases OUT.jsonl [N] [SEED]: RL records and OUT-sft.jsonl demos
    import sys

    from training.data.records import write_jsonl
    from training.rollout.env import OBSERVATION

    out_path = sys.argv[1] if len(sys.argv) > 1 else "runs/demo_data/cases.jsonl"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    recs = make_case_records(count, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    write_jsonl(out_path, recs)
    write_jsonl(out_path.replace(".jsonl", "-sft.jsonl"), sft_records(recs, OBSERVATION))
    print(f"wrote {count} case records to {out_path} and their demonstrations next to it")
