"""Several processes, one replica each (`torchrun --nproc_per_node N`): data parallel for SFT, DPO and RL.

Accelerate sets the processes up (`PartialState`: the process group, gloo on CPU / NCCL on CUDA, one device per
process). The model is not wrapped in `DistributedDataParallel`: our forward paths (Prefix-Grouper packing, the
lean output head) call the inner model, which DDP's forward hooks would not see. Instead each rank's loss is
its share of the *global* loss (its normalizer is the step's total over all ranks), and the trainable gradients
are summed once per optimizer step in one flat all-reduce: the update of one process running the global batch,
with one collective per step however many micro-batches (DDP's `no_sync` accumulation). LoRA gradients are
small, so overlapping that collective with the backward would gain little.

With one process (no `WORLD_SIZE` > 1 in the environment) every helper is a no-op, so single-GPU code pays
nothing. Only rank 0 writes the run folder; every rank reads it (resume).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------------------------ data
    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of a global list (every rank holds the same list: same seed, same data order)."""
        return list(items[self.rank :: self.world])

    # ------------------------------------------------------------------------------------ collectives
    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64, one collective)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (so all ranks take the same branch)."""
        return bool(self.sum([1.0 if flag else 0.0])[0] > 0)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (picklable objects: rewards, stats)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def reduce_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """One step's logged numbers over ranks: `*max` the largest, `*min` the smallest, rates summed, the rest
        averaged (every rank holds an equal share of the step). Values already global stay as they are."""
        if not self.enabled:
            return metrics
        rows = self.gather(metrics)
        out = dict(metrics)
        for k, v in metrics.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            vals = [float(r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if k.endswith("max"):
                out[k] = max(vals)
            elif k.endswith("min"):
                out[k] = min(vals)
            elif k.endswith("_per_s"):
                out[k] = sum(vals)
            else:
                out[k] = sum(vals) / len(vals)
        return out

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients over ranks in place, in one flat all-reduce (a missing grad counts as zero)."""
        if not self.enabled or not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n

    def broadcast_params(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Rank 0's values everywhere (LoRA init is seeded alike on every rank; this makes it certain)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for p in params:
                torch.distributed.broadcast(p.data, src=0)

    def replica_divergence(self, params: Sequence[torch.nn.Parameter]) -> float:
        """Largest |difference| of any trainable value from rank 0's: 0.0 when the replicas are in step."""
        if not self.enabled or not params:
            return 0.0
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1).float() for p in params])
            ref = flat.clone()
            torch.distributed.broadcast(ref, src=0)
            diff = torch.tensor([float((flat - ref).abs().max())], dtype=torch.float64, device=flat.device)
            torch.distributed.all_reduce(diff, op=torch.distributed.ReduceOp.MAX)
        return float(diff)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def _comm_device(self) -> torch.device:
        if torch.distributed.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


_CURRENT = Dist()


def current() -> Dist:
    """The process's place in the job (rank 0 of 1 outside `torchrun`)."""
    return _CURRENT


def setup() -> Dist:
    """Join the job `torchrun` started (idempotent); one process: nothing to do."""
    global _CURRENT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or _CURRENT.enabled:
        return _CURRENT
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    local = int(os.environ.get("LOCAL_RANK", state.local_process_index))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    _CURRENT = Dist(rank=state.process_index, world=state.num_processes, local_rank=local)
    return _CURRENT
