"""Every hub repository a model reads, with the files it reads from each: for `qbench models --hub MODEL` (the `hf
download` line of each, and where $QBENCH_HUB_DIR expects it) and for refusing a model with ALL that are missing named
at once, before data is loaded or a model built.

A preset reads its checkpoint's repository (the files its format loads), the vision towers' own repositories where
the format does not hold them (Cobra's and ML-Mamba's checkpoints hold no tower), and its tokenizer's repository.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from qbench.checkpoints import cobra, llava_hf, mlmamba
from qbench.hub import HUB_DIR_ENV, WeightsNotFound, mirror_path, resolve_repo
from qbench.tokenizers import BUILTIN_SPECIALS, TOKENIZER_FILES

if TYPE_CHECKING:
    from qbench.checkpoints.source import ModelSource

# format -> the files (glob patterns) its loader reads from the checkpoint's repository
CHECKPOINT_FILES = {
    "cobra": (cobra.HUB_CONFIG, cobra.HUB_CHECKPOINT),
    "mlmamba": (mlmamba.HUB_CHECKPOINT,),
    "llava-hf": (llava_hf.CONFIG, llava_hf.INDEX, "*.safetensors"),
}
OWN_TOWERS = {"cobra", "mlmamba"}  # formats whose vision towers load from their own repositories (whole)


@dataclass(frozen=True)
class Repo:
    repo_id: str
    roles: tuple[str, ...]  # what the model reads from it: checkpoint, vision tower <encoder>, tokenizer
    files: tuple[str, ...] = ()  # glob patterns of the files read; () for the whole repository

    @property
    def role(self) -> str:
        return " + ".join(self.roles)

    def local_dir(self) -> str:
        """Where $QBENCH_HUB_DIR expects it."""
        return str(mirror_path(self.repo_id) or f"${HUB_DIR_ENV}/{self.repo_id}")

    def download(self) -> str:
        """The `hf download` command that fetches what qbench reads into local_dir()."""
        includes = [part for pattern in self.files for part in ("--include", shlex.quote(pattern))]
        local = self.local_dir()
        return shlex.join(["hf", "download", self.repo_id]) + "".join(f" {part}" for part in includes) + \
            f" --local-dir {local if local.startswith('$') else shlex.quote(local)}"

    def fetch(self) -> str:
        """A local folder holding it: the mirror, the hub cache, or downloaded now (WeightsNotFound if none)."""
        return resolve_repo(self.repo_id, what=self.role, files=list(self.files) or None)

    def found(self) -> str | None:
        """Where it is on this machine (the mirror or the hub cache), without asking the hub; None if nowhere."""
        try:
            return resolve_repo(self.repo_id, what=self.role, files=list(self.files) or None, local_only=True)
        except WeightsNotFound:
            return None


def merged(repos: list[Repo]) -> list[Repo]:
    """One entry per repository (LLaVA's checkpoint and tokenizer share one), in order of first mention."""
    by_id: dict[str, Repo] = {}
    for repo in repos:
        seen = by_id.get(repo.repo_id)
        if seen is None:
            by_id[repo.repo_id] = repo
            continue
        files = () if not seen.files or not repo.files else tuple(dict.fromkeys(seen.files + repo.files))
        by_id[repo.repo_id] = Repo(repo.repo_id, seen.roles + repo.roles, files)
    return list(by_id.values())


def needed_repos(source: ModelSource) -> list[Repo]:
    """The hub repositories that loading `source` reads; local paths are not listed."""
    repos = []
    if source.format in CHECKPOINT_FILES and not Path(source.location).exists():
        repos.append(Repo(source.location, ("checkpoint",), CHECKPOINT_FILES[source.format]))
    if source.format in OWN_TOWERS:
        repos += [Repo(repo, (f"vision tower {name}",)) for name, repo in source.spec.vision.weights.items()
                  if not Path(repo).exists()]
    if source.tokenizer not in BUILTIN_SPECIALS and not Path(source.tokenizer).exists():
        repos.append(Repo(source.tokenizer, ("tokenizer",), tuple(TOKENIZER_FILES)))
    return merged(repos)


def require(name: str, repos: list[Repo]) -> None:
    """Every repository here (fetched from the hub where it answers); WeightsNotFound naming ALL that are not, each
    with its `hf download` line."""
    missing, first = [], None
    for repo in repos:
        try:
            repo.fetch()
        except WeightsNotFound as error:
            missing.append(repo)
            first = first or error
    if len(missing) == 1:
        raise first
    if missing:
        listed = ", ".join(f"{repo.role} {repo.repo_id}" for repo in missing)
        lines = "; ".join(f"`{repo.download()}`" for repo in missing)
        where = "" if os.environ.get(HUB_DIR_ENV) else f", then set {HUB_DIR_ENV} to the folder that holds them"
        raise WeightsNotFound(f"{name} needs {len(missing)} hub repositories that are neither on this machine nor "
                              f"reachable on the hub: {listed}. On a machine with hub access run {lines}; copy them "
                              f"here{where} (`qbench models --hub {name}` lists them)")
