"""The reference policy (KL anchor, and GRPO++'s old policy) without a second copy of the base model.

Kinds:
- `none`: no reference.
- `base`: the base model, i.e. the adapter switched off.
- `start`: the adapter the run started from (`model.adapter`, or the fresh LoRA init), frozen.
- `lagged`: a copy of the adapter re-synced to the policy every `sync_every` steps (GRPO++).
`start` and `lagged` hold only the trainable (LoRA) tensors and swap them in for the reference forward. The
held tensors are part of a checkpoint (`state_dict`), so a resumed run has the same anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from training.config import check
from training.data.batch import RolloutBatch
from training.errors import MedrlError
from training.models.loading import trainable_parameters
from training.objectives.forward import frozen_logprobs

CHECKPOINT_PREFIX = "ref."  # the held tensors' keys among a checkpoint's trainer tensors


@dataclass
class ReferenceConfig:
    """The `reference:` section of the RL and DPO recipes.

    Fields:
        kind (one of none, base, start, lagged; default none, DPO's default start): the reference policy, see the
            module docstring (TRL `ref_model`; `lagged` is TRL's `sync_ref_model`, after TR-DPO, Gorbatovski et
            al. 2024, with a hard copy: mixup alpha 1).
        sync_every (int, default 10): lagged: re-sync the held adapter to the policy every K steps, >= 1 (TRL
            `ref_model_sync_steps`).
        as_old_policy (bool, default False): GRPO++: the lagged copy is also the ratio's denominator (the old
            policy), so the clip measures drift from it; needs kind lagged; RL only.
    """

    kind: Literal["none", "base", "start", "lagged"] = "none"
    sync_every: int = 10
    as_old_policy: bool = False

    def validate(self, key: str = "reference") -> None:
        check(self.sync_every >= 1, f"{key}.sync_every", "an integer >= 1", self.sync_every)
        if self.as_old_policy:
            # Only a recent copy of the policy can be the ratio's denominator: against the base or the start
            # adapter every ratio drifts far outside the clip range and the surrogate stops learning.
            check(
                self.kind == "lagged", f"{key}.kind", "lagged when reference.as_old_policy is true", self.kind
            )


class Reference:
    """Reference log-probs for a batch; `weights` are the held adapter tensors (`start`, `lagged`)."""

    def __init__(self, config: ReferenceConfig, model: torch.nn.Module):
        self.config = config
        self.kind = config.kind
        self.weights: dict[str, torch.Tensor] = {}
        if self.kind in ("start", "lagged"):
            self.sync(model)

    def sync(self, model: torch.nn.Module) -> None:
        """Hold a copy of the policy's current trainable tensors."""
        self.weights = {n: p.detach().clone() for n, p in trainable_parameters(model)}

    def maybe_sync(self, model: torch.nn.Module, step: int) -> None:
        if self.kind == "lagged" and step % self.config.sync_every == 0:
            self.sync(model)

    @torch.no_grad()
    def logprobs(
        self,
        model: torch.nn.Module,
        batch: RolloutBatch,
        *,
        method: str,
        head: str = "auto",
        temperature: float = 1.0,
    ) -> torch.Tensor | None:
        if self.kind == "none":
            return None
        kwargs = dict(method=method, head=head, temperature=temperature)
        if self.kind == "base":
            return frozen_logprobs(model, batch, adapter_off=True, **kwargs)
        params = dict(trainable_parameters(model))
        current = {n: p.detach().clone() for n, p in params.items()}
        for n, p in params.items():
            p.copy_(self.weights[n])
        try:
            return frozen_logprobs(model, batch, **kwargs)
        finally:
            for n, p in params.items():
                p.copy_(current[n])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.weights.items()}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """The held tensors under their checkpoint keys (see `training.run.checkpoint.save_checkpoint`)."""
        return {CHECKPOINT_PREFIX + k: v for k, v in self.state_dict().items()}

    def restore(self, tensors: dict[str, torch.Tensor], device: torch.device, where: object) -> None:
        """From a checkpoint's trainer tensors; a mismatch is a one-line error naming the checkpoint."""
        held = {k[len(CHECKPOINT_PREFIX) :]: v for k, v in tensors.items() if k.startswith(CHECKPOINT_PREFIX)}
        try:
            self.load_state_dict(held, device)
        except ValueError as e:
            raise MedrlError(f"{where}: {e}") from None

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        if self.kind not in ("start", "lagged"):
            return
        missing = sorted(set(self.weights) - set(state))
        if missing:
            raise ValueError(
                f"the checkpoint holds no reference tensor for {missing[0]} "
                f"({len(missing)} missing): it was written with another reference.kind"
            )
        self.weights = {k: state[k].to(device) for k in self.weights}
