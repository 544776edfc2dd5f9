"""What the `qbench` command prints besides its results: a line as each long step starts (`step`), and other
packages' warnings, log lines and progress bars only with `qbench --verbose`.

qbench's own output (its tables and progress bars, `error:` and `warning:` lines, its own warnings) is unaffected, and
so are download progress bars (a long step of their own). The packages read their settings from the environment when
they are imported, which the `qbench` command does after `configure`; one already imported is told through its API.
lmms-eval draws its bars whatever the environment says, so `muted()` holds back what is written to stderr while it
builds requests and scores (and shows it if that fails). Used as a library, qbench changes nothing and says nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator

QUIET_ENV = {
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "DATASETS_VERBOSITY": "error",
    "TRANSFORMERS_VERBOSITY": "error",  # e.g. "`selective_scan_fn` is falling back to its reference implementation"
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "LOGURU_LEVEL": "WARNING",  # lmms-eval's INFO and DEBUG lines
}
COMMAND = {"running": False, "verbose": False}  # set by configure: the `qbench` command runs, and how


def configure(verbose: bool) -> None:
    """Say each long step; hide other packages' warnings, logs and progress bars (unless `verbose`)."""
    COMMAND.update(running=True, verbose=verbose)
    if verbose:
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", category=UserWarning, module=r"qbench(\.|$)")  # qbench's own
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.set_verbosity_error()


@contextlib.contextmanager
def muted() -> Iterator[None]:
    """Hold back what other packages write to stderr meanwhile (when quiet); shown if the block fails."""
    if not COMMAND["running"] or COMMAND["verbose"]:
        yield
        return
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    except Exception:
        sys.stderr.write(held.getvalue())
        raise


def step(message: str) -> None:
    """Say that a long step starts, so that no one waits on a silent command (the `qbench` command only)."""
    if COMMAND["running"]:
        from rich.console import Console
        from rich.markup import escape

        Console().print(f"[dim]{escape(message)}[/dim]", highlight=False, soft_wrap=True)
