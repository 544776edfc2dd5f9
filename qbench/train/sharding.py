"""How the trained modules are spread over processes.

`ddp`: every process holds the whole model; accelerate's DistributedDataParallel averages the gradients.
`fsdp`: every weight, gradient and AdamW state is sharded over the processes (PyTorch's FSDP2, `fully_shard`): one
unit per LLM layer, one for the projector, one for the rest (embeddings, final norm, head). Each unit's weights are
gathered only while it runs, so a 3B/7B preset whose replica plus AdamW state does not fit one GPU trains over
several. It runs on gloo (CPU) as on NCCL (GPU). Both average gradients over processes, so both train the same
model as one process does.

The checkpoint and optimizer state always travel whole (`full_model_state`, `full_optimizer_state`), so a run
resumes under either strategy and any number of processes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from qbench.registry import Registry

Wrap = Callable[[nn.Module, Accelerator], nn.Module]
SHARDINGS: Registry[Wrap] = Registry("sharding strategy")
WHOLE = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on the main process's CPU


@SHARDINGS.register("ddp")
def replicate(objective: nn.Module, accelerator: Accelerator) -> nn.Module:
    """A full replica per process (none on a single process); wrapped again each stage, as freezing changes."""
    return accelerator.prepare_model(objective)


@SHARDINGS.register("fsdp")
def shard(objective: nn.Module, accelerator: Accelerator) -> nn.Module:
    """Shard once; later stages only change which sharded weights require a gradient."""
    if accelerator.num_processes < 2:
        raise ValueError("--sharding fsdp splits the model over processes: launch them with "
                         "`accelerate launch --num_processes N -m qbench.cli train ...`")
    if isinstance(objective, FSDPModule):
        return objective
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    for unit in [*objective.backbone.blocks(), objective.projector]:
        fully_shard(unit, mesh=mesh)
    return fully_shard(objective, mesh=mesh)


def full_model_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight of `module`, whole, on the main process (others get {}). Collective: every process calls it."""
    return get_model_state_dict(module, options=WHOLE)


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state keyed by parameter name, whole, on the main process. Collective."""
    return get_optimizer_state_dict(model, optimizer, options=WHOLE)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Give each process its share of a whole optimizer state (every process passes the same `state`)."""
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def local(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor for a DTensor result (the gradient norm under fsdp), the tensor itself otherwise."""
    return value.full_tensor() if isinstance(value, DTensor) else value
