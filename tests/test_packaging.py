"""What `make install` and `pip install .` put in place: the suites as package data, locks that
agree with pyproject.toml's ranges and hold the GPU image's versions. (.ci/run installs the built wheel and runs it.)"""

import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lock.compare import pins
from qbench.suites.registry import SUITES_DIR, suite_names

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = sorted((ROOT / "lock").glob("py3.*.txt"))


def test_the_suites_folder_is_package_data_that_a_wheel_copies():
    assert (ROOT / "qbench" / "suites" / "definitions").resolve() == ROOT / "suites"
    assert PROJECT["tool"]["setuptools"]["package-data"]["qbench.suites"] == ["definitions/*.yaml",
                                                                              "definitions/tasks/*.yaml"]
    assert SUITES_DIR == Path(str(files("qbench.suites") / "definitions"))
    assert suite_names() == sorted(path.stem for path in (ROOT / "suites").glob("*.yaml"))


def requirements() -> list[Requirement]:
    """pyproject.toml's requirements for `.[dev]`: the base ones and the extras dev pulls in."""
    extras = PROJECT["project"]["optional-dependencies"]
    wanted = [Requirement(r) for r in PROJECT["project"]["dependencies"]]
    for name in Requirement(extras["dev"][0]).extras | {"dev"}:
        wanted += [Requirement(r) for r in extras[name] if not r.startswith("qbench")]
    return wanted


@pytest.mark.parametrize("lock", LOCKS, ids=[path.stem for path in LOCKS])
def test_each_lock_pins_what_the_ranges_allow_and_the_gpu_image_has(lock: Path):
    locked = pins(lock)
    python = lock.stem.removeprefix("py")
    for requirement in requirements():
        if requirement.marker and not requirement.marker.evaluate({"python_version": python}):
            continue
        assert requirement.specifier.contains(locked[requirement.name], prereleases=True), (lock.name, requirement)
    assert pins(ROOT / "lock" / "gpu-image.txt").items() <= locked.items()


def test_both_python_versions_are_locked():
    assert [path.name for path in LOCKS] == ["py3.11.txt", "py3.12.txt"]
