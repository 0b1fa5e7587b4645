"""`clinical_case` evaluation: a run plays held-out multi-step cases greedily, scored by the case rules.

The model plays each case as Tree-GRPO trained it (the rollout sampler itself, `training.rollout.tree_sampler`, one
chain per case at temperature 0, the run's own environment settings: turns, per-turn tokens, stop strings), and
the transcript is scored by the parser the rewards use (`clinical.cases.score_transcript`). So the evaluation and
the training reward see the same actions, but the evaluation reads held-out cases and reports the task's own
measures, not the reward: accuracy (right answer), answer rate, questions asked, the share of valid actions, and
the tokens a case took. Registered as the `clinical_case` evaluator for `eval:` during training and for
`medrl clinical tree-ablate`.
"""

from __future__ import annotations

from dataclasses import replace

from training.trainers.evaluation import EVALUATORS, Evaluation

from .cases import score_transcript

FIELDS = ("accuracy", "answer_rate", "questions", "valid", "tokens")
CASE_ENV = "clinical_case"  # the environment clinical.cases registers
BATCH = 8  # cases decoded together; fixed, so a greedy answer does not move with the batch's padding


@EVALUATORS.register("clinical_case")
class CaseEvaluation(Evaluation):
    """Each held-out case played greedily to its end under the run's environment settings."""

    default_max_new_tokens = 16  # per turn, the shipped case recipe's

    def answer_length(self) -> int:
        """Per model turn: the run's `rollout.max_new_tokens` (a case run's task card does not hold it)."""
        rollout = self.run.read_config().get("rollout") or {}
        return int(rollout.get("max_new_tokens") or self.default_max_new_tokens)

    def rollout_config(self):
        """The run's rollout section as one greedy chain per case (strategy group, G = 1, temperature 0); a run
        trained without the environment (the cold start's SFT) plays under the case environment's defaults."""
        from training.config import from_dict
        from training.rollout.tree import RolloutConfig

        from .cases import DEFAULT_MAX_TURNS, STOP_STRINGS

        section = dict(self.run.read_config().get("rollout") or {})
        if not section.get("env"):
            section = {
                "env": CASE_ENV,
                "env_modules": ["clinical.cases"],
                "max_turns": DEFAULT_MAX_TURNS,
                "stop_strings": list(STOP_STRINGS),
            }
        cfg = from_dict(RolloutConfig, section, "rollout")
        return replace(
            cfg, strategy="group", num_generations=1, temperature=0.0, max_new_tokens=self.max_new_tokens
        )

    def respond(self, policy, asked: list[dict]) -> list[dict]:
        """Per case: its transcript (the model's turns and the observations) and the tokens the model wrote."""
        import torch

        from training.models.loading import autocast_context
        from training.rollout.tree_sampler import sample_trees

        cfg = self.rollout_config()
        precision = (self.run.read_config().get("run") or {}).get("precision", "auto")
        out = []
        for i in range(0, len(asked), BATCH):
            with torch.no_grad(), autocast_context(precision, policy.device):
                batch = sample_trees(
                    policy.model, policy.processor, asked[i : i + BATCH], cfg, None, policy.is_vlm
                )
            for row, text in enumerate(batch.texts):
                out.append({"text": text, "tokens": int(batch.completion_mask[row].sum())})
        return out

    def score(self, asked: list[dict], responses: list[dict]) -> tuple[list[dict], dict]:
        rows = []
        for i, (rec, resp) in enumerate(zip(self.records, responses, strict=True)):
            meta = rec.get("meta") or {}
            case = meta.get("case") or {}
            derm = case.get("dermoscopy") is not None
            s = score_transcript(resp["text"], str(rec.get("answer", "")), meta.get("options", {}), derm=derm)
            rows.append(
                {
                    "i": i,
                    "kind": "dermatology" if derm else "clinical",
                    "gold": rec.get("answer"),
                    "accuracy": float(s["correct"]),
                    "answer_rate": float(s["answered"]),
                    "questions": float(s["questions"]),
                    "valid": s["valid"],
                    "tokens": float(resp["tokens"]),
                    "transcript": resp["text"],
                }
            )
        n = len(rows)
        return rows, {"n": n, **{k: sum(r[k] for r in rows) / n for k in FIELDS}}
