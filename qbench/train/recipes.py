"""Training recipes: which parts of the VLM each stage trains, and its share of the step budget."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from qbench.registry import Registry


@dataclass(frozen=True)
class Stage:
    name: str
    trains: tuple[str, ...]  # VLM submodules updated in this stage; the rest stay frozen
    share: float  # fraction of the total steps


RECIPES: Registry[tuple[Stage, ...]] = Registry("training recipe")
# LLaVA-1.5: align the projector with vision and LLM frozen, then fine-tune projector + LLM.
RECIPES.register("llava")((Stage("align", ("projector",), 0.25), Stage("finetune", ("projector", "backbone"), 0.75)))
# Cobra: one stage, projector + LLM from the start.
RECIPES.register("cobra")((Stage("finetune", ("projector", "backbone"), 1.0),))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that must be equal for two runs to be comparable (the ablation keeps it fixed)."""

    steps: int = 1000  # optimizer steps over all stages
    batch_size: int = 32  # global: split over the processes
    lr: float = 1e-3
    warmup: float = 0.05  # fraction of each stage's steps
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 0
    recipe: str = "llava"
    save_every: int = 200  # steps between resumable checkpoints

    def __post_init__(self) -> None:
        """Refuse what cannot train, naming the option (a field is the `qbench train` option of its name)."""
        stages = len(RECIPES[self.recipe])  # an unknown recipe fails here, naming the known ones
        if self.steps < stages:
            raise ValueError(f"--steps {self.steps}: recipe {self.recipe!r} has {stages} stage(s) and needs at least "
                             "one step each")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr takes a finite number above 0, e.g. --lr 1e-3; got {self.lr}")
        for name in ("batch_size", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return RECIPES[self.recipe]

    def stage_steps(self) -> list[int]:
        """Steps of each stage: shares rounded, at least one each, the last taking what is left."""
        counts = [max(1, math.floor(stage.share * self.steps)) for stage in self.stages[:-1]]
        return counts + [self.steps - sum(counts)]


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up, then cosine decay to zero over the stage."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
