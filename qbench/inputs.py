"""What a user gives qbench, checked before the expensive work: devices, output folders, files that must parse.

Every mistake a user can fix raises a UserError (or an error class that is one too) whose message names what was
wrong and what to do instead; the `qbench` command prints it as one `error: ...` line (`qbench --debug` or
QBENCH_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class UserError(Exception):
    """A mistake the user can fix: a bad option, a missing or damaged file, a device that is not there."""


class UnreadableFile(UserError):
    """A file qbench reads that is missing, damaged or unsafe; the message names it and what to do."""


def unreadable(path: str | Path, problem: str, remedy: str) -> UnreadableFile:
    return UnreadableFile(f"{path} {problem}: {remedy}")


def read_json(path: str | Path, remedy: str) -> Any:
    """The JSON document at `path`; UnreadableFile naming it (and `remedy`) when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise unreadable(path, "is missing", remedy) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise unreadable(path, f"cannot be read as JSON ({error})", remedy) from None


# Every --dtype and --save-dtype takes these names; None (no --dtype) is bf16 on a GPU and fp32 on the CPU.
DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16",
          "float16": "float16"}


def resolve_dtype(dtype: torch.dtype | str | None, device: str | torch.device = "cpu") -> torch.dtype:
    """A torch dtype from its name (DTYPES); bf16 on a GPU and fp32 on the CPU unless asked otherwise."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose from: {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[dtype])


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of a torch dtype: bf16, fp16 or fp32."""
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[str(dtype).removeprefix("torch.")]


def process_rank() -> tuple[int, int, int]:
    """(rank, local rank, world size) as torchrun and accelerate set them."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(device: str | None = None) -> torch.device:
    """The device a `--device` names, checked: nothing or `auto` is this process's GPU where there is one, else the
    CPU; a bare `cuda` is this process's own GPU (its local rank under torchrun), made current."""
    import torch

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = check_device(device)
    if chosen.type == "cuda":
        if chosen.index is None:
            chosen = torch.device("cuda", process_rank()[1])
        torch.cuda.set_device(chosen)
    return chosen


def check_device(device: str) -> torch.device:
    """The torch device a `--device` names, if this machine has it; UserError saying what to type otherwise."""
    import torch

    try:
        chosen = torch.device(device)
    except RuntimeError:
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        raise UserError(f"unknown --device {device!r}; use cpu, cuda or cuda:N")
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {device}: this machine has no GPU that torch can use "
                            "(torch.cuda.is_available() is False); use --device cpu")
        if chosen.index is not None and chosen.index >= count:
            raise UserError(f"--device {device}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return chosen


def check_folder(path: str | Path, what: str, remedy: str) -> Path:
    """A folder qbench reads or writes under (it need not exist yet): a UserError naming `what` (an option or
    environment variable) and `remedy` when it is a file or cannot be read."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder: {remedy}")
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"{what} {path} cannot be read (permission denied): {remedy}")
    return path


def ensure_writable(folder: str | Path, option: str) -> Path:
    """Create `folder` if needed and write (then remove) a probe file in it, so that a run that could not save its
    results stops before it starts rather than after the work."""
    folder = Path(folder)
    probe = folder / f".qbench-write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        where = f" ({error.filename})" if error.filename and Path(error.filename) != probe else ""
        raise UserError(f"{option} {folder}: cannot write there: {error.strerror}{where}; choose a folder you can "
                        "write to") from None
    return folder
