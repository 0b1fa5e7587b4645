"""Atomic checkpoints and exact resume.

A checkpoint folder is written under a temporary name and renamed into place (`training.atomic`), so a crash never
leaves a half-written `step-N/`. It holds the trainable weights (a peft adapter folder, safetensors), the optimizer
and scheduler states (torch files loaded with `weights_only=True`), every RNG state and the trainer's own
state: step and data position as JSON, its tensors (sampling generator, reference adapter) as safetensors.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from training.atomic import atomic_dir
from training.errors import MedrlError
from training.run.rundir import CHECKPOINT_MARKER, RunDir

TRAINER_TENSORS = "trainer_state.safetensors"


# ---------------------------------------------------------------------------------------------- RNG
def capture_rng() -> dict[str, Any]:
    import numpy as np

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    np_state = np.random.get_state()
    state["numpy"] = [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(_tuplify(state["python"]))
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------------------------------------- weights
def save_trainable(model, out: Path) -> None:
    """The adapter (peft) or, for full fine-tuning, the whole model, as safetensors."""
    model.save_pretrained(str(out), safe_serialization=True)


def load_trainable(model, src: Path) -> None:
    """Load weights saved by `save_trainable` into an already-built model (same structure)."""
    from safetensors.torch import load_file

    adapter = src / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(str(adapter)))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise MedrlError(
                f"{adapter}: {len(unexpected)} unexpected keys (e.g. {unexpected[0]}): the "
                "checkpoint was written by a different LoRA setup"
            )
        return
    full = src / "model.safetensors"
    if not full.is_file():
        raise MedrlError(f"{src}: no adapter_model.safetensors or model.safetensors to resume from")
    missing, unexpected = model.load_state_dict(load_file(str(full)), strict=False)
    if unexpected:
        raise MedrlError(f"{full}: unexpected keys (e.g. {unexpected[0]})")


# ---------------------------------------------------------------------------------------------- folders
def save_checkpoint(
    run: RunDir,
    step: int,
    model,
    optimizer,
    scheduler,
    state: dict[str, Any],
    tensors: dict[str, torch.Tensor] | None = None,
    keep: int = 0,
) -> Path:
    """Everything a resume needs, in one atomically published folder: the trainer's own tensors (sampling
    generator, reference adapter, ...) go in with the weights, and `trainer_state.json` is written last, so a
    published `step-N/` is always complete. Older checkpoints are pruned only after it is published."""
    from safetensors.torch import save_file

    final = run.checkpoint_dir(step)
    with atomic_dir(final) as tmp:
        save_trainable(model, tmp / "adapter")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(capture_rng(), tmp / "rng.pt")
        if tensors:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / TRAINER_TENSORS)
            )
        (tmp / CHECKPOINT_MARKER).write_text(json.dumps({**state, "step": step}, indent=2))
    if keep > 0:
        for _, old in run.checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path, model, optimizer, scheduler
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore weights, optimizer, scheduler and RNG from `path`; returns (trainer state, trainer tensors)."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = json.loads((path / CHECKPOINT_MARKER).read_text())
        load_trainable(model, path / "adapter")
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
        if scheduler is not None and (path / "scheduler.pt").is_file():
            scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        restore_rng(torch.load(path / "rng.pt", weights_only=True))
        tensors = load_file(str(path / TRAINER_TENSORS)) if (path / TRAINER_TENSORS).is_file() else {}
    except (OSError, ValueError, RuntimeError) as e:
        raise MedrlError(
            f"{path}: cannot resume from this checkpoint ({str(e).splitlines()[0][:160]})"
        ) from None
    return state, tensors
