"""The training loop: answer-token loss in each system's template, stages of a recipe, resumable checkpoints,
one process or several through accelerate, replicated (DDP) or sharded (FSDP): see sharding.py."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from torch import nn

from qbench.checkpoints import save_native
from qbench.checkpoints.base import load_torch_file, open_safetensors
from qbench.checkpoints.native import WEIGHTS_FILE, is_native, load_native
from qbench.fingerprint import examples_fingerprint
from qbench.inputs import UnreadableFile, UserError, read_json
from qbench.folder import FolderBusy, FolderLock, naming_full_disk, write_atomic
from qbench.spec import VLMSpec
from qbench.speed.environment import environment
from qbench.train.data import Example, batch_indices, shard
from qbench.train.recipes import Stage, TrainConfig, lr_factor
from qbench.train.sharding import (
    SHARDINGS,
    full_model_state,
    full_optimizer_state,
    load_optimizer_state,
    local,
)
from qbench.train.start import Start
from qbench.vlm import VLM, build_vlm

RESUME_DIR = "resume"  # the newest complete checkpoint
NEW_DIR, OLD_DIR = "resume.new", "resume.old"  # a save being written; the checkpoint it replaces, during the swap
COMPLETE_FILE = "complete.json"  # written last into a checkpoint folder, once every other file is on disk
TRAINER_FILE = "trainer.pt"
LOG_FILE = "train.json"
SCHEMA = "qbench.train/1"


class OutOfMemory(RuntimeError, UserError):
    """A training step did not fit the GPU; the message says what to change."""


class Objective(nn.Module):
    """Summed cross-entropy over answer tokens (and their EOS) for visual features + questions + answers.

    Its modules are the parts that can train (projector, LLM); the frozen vision tower stays outside, so that
    wrapping (DDP, FSDP) never touches it and its features can be cached.
    """

    def __init__(self, vlm: VLM):
        super().__init__()
        self.projector, self.backbone = vlm.projector, vlm.backbone
        self.build_inputs = vlm.build_inputs

    def forward(self, features: torch.Tensor, questions: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        visual = self.projector(features)
        embeds, mask, labels = self.build_inputs(visual, questions, answers)
        logits = self.backbone.logits(embeds, mask)
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
                               reduction="sum")


class FeatureCache:
    """Vision features per example. The tower is frozen and deterministic, so each image is encoded once."""

    def __init__(self, vlm: VLM, examples: Sequence[Example], batch: int = 64):
        self.vlm, self.examples, self.batch = vlm, examples, batch
        self.features: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, indices: Sequence[int]) -> torch.Tensor:
        missing = sorted(set(indices) - set(self.features))
        for start in range(0, len(missing), self.batch):
            chunk = missing[start : start + self.batch]
            pixels = self.vlm.preprocess([self.examples[i].image for i in chunk])
            encoded = self.vlm.vision(pixels.to(self.vlm.device, self.vlm.vision_dtype))
            self.features.update(zip(chunk, encoded))
        return torch.stack([self.features[i] for i in indices])


def freeze_for(vlm: VLM, stage: Stage) -> None:
    """Make only the stage's submodules trainable (the vision tower never is)."""
    vlm.requires_grad_(False)
    vlm.vision.eval()
    for name in stage.trains:
        getattr(vlm, name).requires_grad_(True)


class Trainer:
    """One run: a spec trained on examples under a config, writing to `out` (resumable).

    `start`: the model whose shared parts the run begins from (random weights without one).
    `sharding`: how several processes hold the model (SHARDINGS). `save_dtype`: the dtype of the final checkpoint.
    """

    def __init__(self, spec: VLMSpec, examples: Sequence[Example], out: str | Path, config: TrainConfig,
                 device: str | None = None, show_progress: bool = True, start: Start | None = None,
                 sharding: str = "ddp", save_dtype: torch.dtype | None = None):
        self.sharding, self.wrap = sharding, SHARDINGS[sharding]
        cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=cpu, mixed_precision="no" if cpu else "bf16")
        self.spec, self.examples, self.out, self.config = spec, list(examples), Path(out), config
        self.start, self.save_dtype = start, save_dtype
        self.show_progress = show_progress and self.accelerator.is_main_process
        self.environment = environment(self.accelerator.device)  # the machine, for train.json
        # what the run trains: a resume must train the same (the data by its fingerprint, as qbench run's data is)
        self.identity = {"spec": spec.to_dict(), "config": config.to_dict(), "examples": len(self.examples),
                         "data": examples_fingerprint(self.examples)}
        if start is not None:
            self.identity["start"] = start.to_dict(spec)
        self.log: list[list[float]] = []  # [global step, loss]
        self.stage_index, self.step, self.skipped = 0, 0, 0  # skipped: steps with a non-finite gradient
        self.step_seconds: list[float] = []  # wall time of each optimizer step, checkpoints excluded
        self.lock = self.claim()
        try:
            if self.accelerator.is_main_process:
                for line in recover(self.out):
                    print(f"{self.out}: {line}", file=sys.stderr)
            self.accelerator.wait_for_everyone()
            self.vlm = self.restore() if (self.out / RESUME_DIR).is_dir() else self.fresh()
        except BaseException:
            self.release()
            raise
        self.objective = Objective(self.vlm)
        self.features = FeatureCache(self.vlm, self.examples)

    # --- state ---------------------------------------------------------------------------------------------------
    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def claim(self) -> FolderLock | None:
        """The lock of the output folder, taken by the main process (None on the others); FolderBusy on every
        process if another run writes there."""
        lock, refusal = None, None
        if self.accelerator.is_main_process:
            try:
                lock = FolderLock(self.out)
            except FolderBusy as busy:
                refusal = str(busy)
        shared = broadcast_object_list([refusal])[0]
        if shared is not None:
            raise FolderBusy(f"{shared}; wait for it to finish, or train into another --out")
        return lock

    def fresh(self) -> VLM:
        torch.manual_seed(self.config.seed)
        vlm = build_vlm(self.spec, device=self.accelerator.device)
        if self.start is not None:
            self.start.copy_into(vlm, self.identity["start"]["parts"])
        return vlm

    def restore(self) -> VLM:
        directory = self.out / RESUME_DIR
        restart = f"delete {directory} to start this training afresh, or train into another --out"
        self.trainer_state = load_torch_file(directory / TRAINER_FILE, restart)  # tensors and plain data only
        self.check_identity(self.trainer_state["identity"], str(directory))
        self.check_position(directory, self.trainer_state.get("stage"), self.trainer_state.get("step"), restart)
        self.stage_index, self.step = self.trainer_state["stage"], self.trainer_state["step"]
        self.log, self.step_seconds = self.trainer_state["log"], self.trainer_state["step_seconds"]
        self.skipped = self.trainer_state["skipped"]
        torch.set_rng_state(self.trainer_state["rng"])
        return load_native(None, str(directory), self.accelerator.device)

    def check_identity(self, saved: dict, where: str) -> None:
        differing = sorted(key if key in saved else f"{key} (not recorded then)" for key in self.identity
                           if saved.get(key) != self.identity[key])
        if differing:
            raise ValueError(f"{where} was written by a run with a different {', '.join(differing)}; resume it with "
                             f"the same settings and data, or train into another --out")

    def check_position(self, directory: Path, stage: object, step: object, restart: str) -> None:
        """A resume state's stage and step within this run's (a state claiming step 10**6 would loop forever)."""
        counts = self.config.stage_steps()
        valid = all(isinstance(v, int) and not isinstance(v, bool) for v in (stage, step))
        if not (valid and 0 <= stage < len(counts) and 0 <= step <= counts[stage]):
            raise UserError(f"{directory / TRAINER_FILE} claims step {step!r} of stage {stage!r}, which this run "
                            f"({', '.join(map(str, counts))} steps per stage) does not have; {restart}")

    def finished(self) -> bool:
        log = self.out / LOG_FILE
        if not (log.is_file() and is_native(self.out)):
            return False
        summary = read_json(log, f"delete it (and {RESUME_DIR}/) to train again, or train into another --out")
        self.check_identity(summary["identity"], str(self.out))
        if summary["finished"] and self.accelerator.is_main_process:
            discard_checkpoints(self.out)  # a run killed right after it finished left them
        return summary["finished"]

    def save_resume(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.accelerator.wait_for_everyone()
        weights, optimizer_state = full_model_state(self.vlm), full_optimizer_state(model, optimizer)
        if self.accelerator.is_main_process:
            new = self.out / NEW_DIR
            discard(new)  # an unfinished save of an earlier run (recover() kept it if it was complete)
            save_native(self.vlm, new, state=weights)
            with naming_full_disk(new / TRAINER_FILE):
                torch.save({"identity": self.identity, "stage": self.stage_index, "step": self.step, "log": self.log,
                            "step_seconds": self.step_seconds, "skipped": self.skipped, "rng": torch.get_rng_state(),
                            "optimizer": optimizer_state, "scheduler": scheduler.state_dict()}, new / TRAINER_FILE)
            seal(new, self.global_step)
            swap_in(self.out)
            self.write_log(finished=False)
        self.accelerator.wait_for_everyone()

    def write_log(self, finished: bool, error: str | None = None) -> None:
        summary = {"schema": SCHEMA, "identity": self.identity, "finished": finished, "error": error,
                   "steps_done": self.global_step,
                   "seconds": round(sum(self.step_seconds), 2), "median_step_seconds": self.median_step_seconds(),
                   "answer_tokens": self.answer_tokens_seen(),
                   "final_loss": self.log[-1][1] if self.log else None,
                   "skipped_steps": self.skipped, "peak_gpu_memory_gib": self.peak_gpu_memory(),
                   "processes": self.accelerator.num_processes, "sharding": self.sharding,
                   "environment": self.environment, "log": self.log}
        write_atomic(self.out / LOG_FILE, json.dumps(summary, indent=1))

    def median_step_seconds(self) -> float | None:
        """Seconds per step once warm: the median, so that the first steps' compilation and caching do not count."""
        return round(statistics.median(self.step_seconds), 4) if self.step_seconds else None

    def peak_gpu_memory(self) -> float | None:
        """GiB this process's GPU held at most so far (every process of a sharded run holds about the same)."""
        device = self.accelerator.device
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None

    @property
    def global_step(self) -> int:
        return sum(self.config.stage_steps()[: self.stage_index]) + self.step

    def answer_tokens_seen(self) -> int:
        """Answer tokens (with EOS) trained on so far: the same for every combination of one tokenizer family."""
        counts = [len(self.vlm.answer_ids(example.answer)) for example in self.examples]
        return sum(sum(counts[i] for i in batch_indices(len(counts), self.config.batch_size, step, self.config.seed))
                   for step in range(self.global_step))

    # --- training ------------------------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> Path:
        """Train to the end (or `stop_after` more steps, then checkpoint and return); the output directory."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.finished():
            return self.out
        budget = stop_after if stop_after is not None else self.config.steps
        stages, counts = self.config.stages, self.config.stage_steps()
        while self.stage_index < len(stages) and budget > 0:
            try:
                budget -= self.run_stage(stages[self.stage_index], counts[self.stage_index], budget)
            except torch.OutOfMemoryError:
                raise self.out_of_memory() from None
            if self.step == counts[self.stage_index]:
                self.stage_index, self.step = self.stage_index + 1, 0
        if self.stage_index == len(stages):
            self.finish()
        return self.out

    def out_of_memory(self) -> OutOfMemory:
        """Record the failed step in train.json (the last checkpoint stays resumable) and say what would fit."""
        per_process = self.config.batch_size // self.accelerator.num_processes
        error = (f"CUDA out of memory at step {self.global_step + 1} ({per_process} examples per process, "
                 f"{self.accelerator.num_processes} processes, {self.sharding}; peak {self.peak_gpu_memory()} GiB)")
        if self.accelerator.is_main_process:
            self.write_log(finished=False, error=error)
        hint = "shard the model with --sharding fsdp, " if self.sharding != "fsdp" else ""
        return OutOfMemory(f"{self.spec.name}: {error}. To fit, {hint}launch more processes or lower --batch-size; "
                           f"{self.out / LOG_FILE} records it")

    def run_stage(self, stage: Stage, total: int, budget: int) -> int:
        freeze_for(self.vlm, stage)
        model = self.wrap(self.objective, self.accelerator)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, self.config.warmup))
        if self.step and self.step < total:
            load_optimizer_state(model, optimizer, self.trainer_state["optimizer"])
            scheduler.load_state_dict(self.trainer_state["scheduler"])
        done = 0
        with self.progress(stage) as progress:
            task = progress.add_task(stage.name, total=total, completed=self.step, loss=float("nan"))
            while self.step < total and done < budget:
                started = time.perf_counter()
                loss = self.train_step(model, params, optimizer)  # .item() inside waits for the GPU
                scheduler.step()
                self.step, done = self.step + 1, done + 1
                self.step_seconds.append(time.perf_counter() - started)
                self.log.append([self.global_step, round(loss, 5)])
                progress.update(task, advance=1, loss=loss)
                if self.step % self.config.save_every == 0 or self.step == total or done == budget:
                    if self.global_step < self.config.steps:  # after the last step, finish() saves
                        self.save_resume(model, optimizer, scheduler)
                    if self.accelerator.is_main_process:
                        progress.console.log(f"{escape(self.spec.name)} {stage.name} step {self.step}/{total} "
                                             f"loss {loss:.4f} ({self.median_step_seconds():.3f} s/step)",
                                             highlight=False)
        return done

    def train_step(self, model: nn.Module, params: list[nn.Parameter], optimizer: torch.optim.Optimizer) -> float:
        """One optimizer step on the global batch; this process computes its share. The loss is the sum over the
        global batch's answer tokens divided by their count, so gradients averaged over processes equal the
        one-process gradient."""
        accelerator = self.accelerator
        indices = batch_indices(len(self.examples), self.config.batch_size, self.global_step, self.config.seed)
        tokens = sum(len(self.vlm.answer_ids(self.examples[i].answer)) for i in indices)
        mine = [self.examples[i] for i in shard(indices, accelerator.process_index, accelerator.num_processes)]
        features = self.features(shard(indices, accelerator.process_index, accelerator.num_processes))
        with accelerator.autocast():  # DDP's forward autocasts already; FSDP's is not wrapped by accelerate
            loss_sum = model(features.to(self.vlm.dtype), [e.question for e in mine], [e.answer for e in mine])
        accelerator.backward(loss_sum * (accelerator.num_processes / tokens))
        norm = local(accelerator.clip_grad_norm_(params, self.config.clip))
        if torch.isfinite(norm):
            optimizer.step()
        else:  # one overflowing step must not poison the weights: skip it, as AMP's gradient scaler does
            self.skipped += 1
        optimizer.zero_grad(set_to_none=True)
        return accelerator.reduce(loss_sum.detach(), reduction="sum").item() / tokens

    def progress(self, stage: Stage) -> Progress:
        return Progress(TextColumn(f"[bold]{escape(self.spec.name)}[/] {stage.name}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                        disable=not self.show_progress)

    def finish(self) -> None:
        self.accelerator.wait_for_everyone()
        weights = full_model_state(self.vlm)
        if self.accelerator.is_main_process:
            self.vlm.eval()
            if self.save_dtype is not None:
                weights = {key: value.to(self.save_dtype) for key, value in weights.items()}
            save_native(self.vlm, self.out, state=weights)
            self.write_log(finished=True)
            discard_checkpoints(self.out)
        self.accelerator.wait_for_everyone()


# --- checkpoints that a kill cannot break -------------------------------------------------------------------------------
# A save writes resume.new/ and seals it (complete.json, last), then swaps it in: resume/ -> resume.old/,
# resume.new/ -> resume/, resume.old/ removed. A kill between any two of these leaves at least one sealed checkpoint,
# and recover() makes the newest sealed one resume/ before the run goes on. A seal is verified before it is believed
# (its files' sizes, a readable safetensors and torch file): a checkpoint claiming a step it cannot back is treated as
# unfinished, and only then is anything else removed.
CHECKPOINT_DIRS = (RESUME_DIR, NEW_DIR, OLD_DIR)


def seal(directory: Path, global_step: int) -> None:
    """Mark a checkpoint folder complete, once every file in it is on disk, with each file's size."""
    sizes = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != COMPLETE_FILE:
            with path.open("rb+") as handle:
                os.fsync(handle.fileno())
            sizes[path.relative_to(directory).as_posix()] = path.stat().st_size
    write_atomic(directory / COMPLETE_FILE, json.dumps({"global_step": global_step, "sizes": sizes}) + "\n")


def intact(directory: Path, sizes: object) -> bool:
    """Whether a sealed checkpoint folder's files are whole: the sizes its seal recorded (seals from before sizes
    have none), a safetensors file whose header fits its length, a torch file that is a whole zip archive."""
    if isinstance(sizes, dict):
        for name, size in sizes.items():
            path = directory / name
            if not path.is_file() or path.stat().st_size != size:
                return False
    if not zipfile.is_zipfile(directory / TRAINER_FILE):
        return False
    try:
        with open_safetensors(directory / WEIGHTS_FILE):
            return True
    except UnreadableFile:  # missing, cut short, or not safetensors
        return False


def sealed_step(directory: Path) -> int | None:
    """The global step of a complete checkpoint folder, verified (intact); None if it is absent, unfinished or its
    seal cannot be backed. A resume/ from before checkpoints were sealed counts as complete (it was only ever
    renamed into place whole), older than any sealed."""
    try:
        seal_record = json.loads((directory / COMPLETE_FILE).read_text())
        step = seal_record["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return -1 if directory.name == RESUME_DIR and (directory / TRAINER_FILE).is_file() else None
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        return None
    return step if intact(directory, seal_record.get("sizes")) else None


def refuse_links(out: Path) -> None:
    """qbench removes and renames its checkpoint folders: one that is a symbolic link (which may lead out of
    --out) is refused before anything is touched."""
    for name in CHECKPOINT_DIRS:
        if (out / name).is_symlink():
            raise UserError(f"{out / name} is a symbolic link (to {os.readlink(out / name)}); qbench keeps its "
                            f"checkpoints inside --out and does not follow links it would delete through: remove "
                            "the link, or train into another --out")


def discard(directory: Path) -> None:
    """Remove a checkpoint folder, unsealing it first: a kill halfway leaves it unfinished, never complete."""
    if directory.is_symlink():
        raise UserError(f"{directory} is a symbolic link; qbench does not delete through it: remove the link")
    (directory / COMPLETE_FILE).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)


def discard_checkpoints(out: Path) -> None:
    for name in (OLD_DIR, NEW_DIR, RESUME_DIR):
        discard(out / name)


def swap_in(out: Path) -> None:
    """Make the sealed resume.new/ the checkpoint: resume/ -> resume.old/, resume.new/ -> resume/, then drop the old."""
    final, old = out / RESUME_DIR, out / OLD_DIR
    if final.is_dir():
        discard(old)
        final.rename(old)
    (out / NEW_DIR).rename(final)
    discard(old)


def newest_checkpoint(out: Path) -> tuple[Path, int] | None:
    """The complete (verified) checkpoint folder with the highest step, and that step."""
    found = [(step, out / name) for name in CHECKPOINT_DIRS if (step := sealed_step(out / name)) is not None]
    return (max(found)[1], max(found)[0]) if found else None


def recover(out: Path) -> list[str]:
    """Put the newest complete checkpoint at resume/, whatever state a kill left the folders in, and remove what is
    unfinished or older, once the one kept is verified; returns what was done, in words (nothing when the folders
    were in order). Symbolic links among them are refused first."""
    refuse_links(out)
    newest = newest_checkpoint(out)
    done = [f"removed the unfinished checkpoint {name}/ (a save was interrupted, or its files do not match its seal)"
            for name in CHECKPOINT_DIRS if (out / name).is_dir() and sealed_step(out / name) is None]
    if newest is None:
        discard_checkpoints(out)
        return done
    chosen, step = newest
    for name in CHECKPOINT_DIRS:
        if out / name != chosen and (out / name).is_dir():
            discard(out / name)  # unfinished, or older than the chosen one
    if chosen.name != RESUME_DIR:
        chosen.rename(out / RESUME_DIR)
        done.append(f"recovered the complete checkpoint of step {step} from {chosen.name}/ (a save was interrupted "
                    f"while swapping it in)")
    return done


def kept(out: Path) -> str | None:
    """What an interrupted training leaves to resume from, in words (None: no checkpoint yet)."""
    newest = newest_checkpoint(Path(out))
    if newest is None:
        return None
    return f"the checkpoint of step {newest[1]} is kept in {newest[0]}" if newest[1] >= 0 else \
        f"the checkpoint in {newest[0]} is kept"


def train(spec: VLMSpec, examples: Sequence[Example], out: str | Path, config: TrainConfig,
          device: str | None = None, stop_after: int | None = None, show_progress: bool = True,
          start: Start | None = None, sharding: str = "ddp", save_dtype: torch.dtype | None = None) -> Path:
    """Train `spec` on `examples` into `out` (a qbench checkpoint + train.json); resumes from `out/resume`.
    See Trainer for `start`, `sharding` and `save_dtype`. FolderBusy if another process trains into `out`."""
    trainer = Trainer(spec, examples, out, config, device, show_progress, start, sharding, save_dtype)
    try:
        return trainer.run(stop_after)
    finally:
        trainer.release()
