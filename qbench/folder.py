"""One writer per folder, and files that are whole or absent.

`FolderLock(folder)` is held by the one process that writes a folder: an flock on `folder/.lock`, which the kernel
releases when the process ends, however it ends (a killed run leaves no stale lock behind), with the holder's pid,
host, start and command written in the file so that a process refused the lock can say who holds it. The holder
removes the file when it lets go, so finished folders hold no lock file; a process that locked a file just removed
(it waited on it while the holder finished) tries again on the path's new file.
`write_atomic` writes a file whole or not at all: a kill leaves the old file or the new one, never half of one.
`naming_full_disk(path)` makes a write that runs out of space say which file it was writing (the `qbench` command
turns that into its one line), whichever library wrote it.
`inside(folder, name)` is the one way a name that a user or a file gave (a run's model name, an ablation's --name)
becomes a path: one plain name, which stays inside the folder it is meant for.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from qbench.inputs import UserError

LOCK_FILE = ".lock"
NAME_BYTES = 200  # file systems take 255 bytes a name; room for a suffix
FULL_BELOW = 1 << 20  # bytes free under which a failed write is taken for a full disk


def name_problem(name: str) -> str | None:
    """What keeps `name` from being one plain file or folder name, in words; None if nothing does."""
    if not name:
        return "it is empty"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if name.startswith("."):
        return "it starts with '.' (a hidden name, or a way up)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a control character"
    if len(os.fsencode(name)) > NAME_BYTES:
        return f"it is longer than {NAME_BYTES} bytes"
    return None


def inside(folder: str | Path, name: str, what: str) -> Path:
    """`folder/name` for a name that a user or a file gave, checked to stay inside `folder`; a UserError naming
    `what` (the option or file the name came from) otherwise."""
    folder = Path(folder)
    problem = name_problem(name)
    if problem is None and (folder / name).is_symlink():
        problem = f"{folder / name} is a symbolic link, which may lead out of {folder}"
    if problem is not None:
        raise UserError(f"{what} {name!r} cannot name a folder inside {folder}: {problem}; use a plain name such as "
                        "letters, digits, '-', '_' and '.'")
    return folder / name


class FolderBusy(RuntimeError, UserError):
    """Another process is writing the folder; the message names the folder and the process."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a command that writes results as it goes: `kept` says what was kept, and where."""

    def __init__(self, kept: str):
        super().__init__(kept)
        self.kept = kept


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed over it (flushed to disk first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with naming_full_disk(path), tmp.open("w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # the space it took goes back
        raise
    os.replace(tmp, path)


@contextlib.contextmanager
def naming_full_disk(path: Path) -> Iterator[None]:
    """Writes to `path`: running out of space is an OSError(ENOSPC) naming `path`, where the writer's own error
    names no file (a buffered write) or is no OSError at all (safetensors' error, torch's "unexpected pos")."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC or error.filename:
            raise
        raise OSError(errno.ENOSPC, error.strerror, str(path)) from error
    except Exception as error:
        raise_if_full(path, error)
        raise


def raise_if_full(path: Path, error: Exception) -> None:
    """An OSError(ENOSPC) naming `path` if `error` is a library's word for a full disk, or the disk is full now."""
    folder = next((parent for parent in Path(path).parents if parent.is_dir()), Path("."))
    if "os error 28" in str(error) or shutil.disk_usage(folder).free < FULL_BELOW:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error


def write_table(folder: Path, stem: str, document: dict, columns: list[str] | None = None) -> None:
    """A results document as <stem>.json and its rows as <stem>.csv (`columns` in this order, else the rows' own),
    each written whole or not at all."""
    import pandas as pd

    write_atomic(folder / f"{stem}.json", json.dumps(document, indent=2) + "\n")
    write_atomic(folder / f"{stem}.csv", pd.DataFrame(document["rows"], columns=columns).to_csv(index=False))


def holder() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(["qbench", *sys.argv[1:]])}


def describe(info: dict[str, object]) -> str:
    if not info:
        return "another process (starting: it has not written its pid yet)"
    return f"pid {info['pid']} on {info['host']} since {info['since']} (`{info['command']}`)"


class FolderLock:
    """The lock of one folder, taken on creation: at once (FolderBusy if another process holds it) or, with
    `wait`, when the holder lets go."""

    def __init__(self, folder: Path, wait: bool = False):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK_FILE
        while True:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(self.fd)
                raise FolderBusy(f"{folder} is being written by {describe(read_holder(self.path))}") from None
            if still_there(self.fd, self.path):
                break
            os.close(self.fd)  # the holder removed it as we waited: lock the file now at the path
        os.ftruncate(self.fd, 0)
        try:
            with naming_full_disk(self.path):
                os.pwrite(self.fd, (json.dumps(holder()) + "\n").encode(), 0)
        except OSError:
            self.release()
            raise

    def release(self) -> None:
        """Remove the lock file (while still holding it, so no one locks a file on its way out), then let go."""
        if self.fd is not None:
            if still_there(self.fd, self.path):
                self.path.unlink()
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def hold(folder: Path, otherwise: str) -> Iterator[FolderLock]:
    """The folder's lock for the time of one command; FolderBusy naming the holder and `otherwise` (what to do
    instead) if another process has it."""
    try:
        lock = FolderLock(folder)
    except FolderBusy as busy:
        raise FolderBusy(f"{busy}; wait for it to finish, or {otherwise}") from None
    with lock:
        yield lock


def still_there(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file at `path` (not removed or replaced since it was opened)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def read_holder(path: Path) -> dict[str, object]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
