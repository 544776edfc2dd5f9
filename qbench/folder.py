"""One writer per folder, and files that are whole or absent.

`FolderLock(folder)` is held by the one process that writes a folder: an flock on `folder/.lock`, which the kernel
releases when the process ends, however it ends (a killed run leaves no stale lock behind), with the holder's pid,
host, start and command written in the file so that a process refused the lock can say who holds it. The holder
removes the file when it lets go, so finished folders hold no lock file; a process that locked a file just removed
(it waited on it while the holder finished) tries again on the path's new file.
`write_atomic` writes a file whole or not at all: a kill leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

LOCK_FILE = ".lock"


class FolderBusy(RuntimeError):
    """Another process is writing the folder; the message names the folder and the process."""


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed over it (flushed to disk first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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
        os.pwrite(self.fd, (json.dumps(holder()) + "\n").encode(), 0)

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
