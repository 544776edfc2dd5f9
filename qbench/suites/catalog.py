"""Where a task's lmms-eval config comes from: the user's own task YAMLs (include paths), qbench's suites, or
lmms-eval's own tasks.

    qbench run --model M --tasks my_vqa,pope_adv --include-path ~/my_tasks

An include path is a folder of task YAMLs in lmms-eval's own format, indexed by lmms-eval's TaskManager exactly as
`lmms-eval --include_path DIR` indexes it, so the same folder serves both commands. A name is looked up in the
include paths (a task, or a group or tag of tasks), then among the tasks of qbench's suites (which carry qbench's
way to their local data, e.g. `mini_vqav2`, or `gqa` with its images), then among lmms-eval's tasks, groups and tags.
A task of one's own may not take a name that qbench or lmms-eval already has: lmms-eval's CLI would run its own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qbench.inputs import UserError
from qbench.registry import UnknownName
from qbench.suites.registry import SUITES_DIR, Suite, SuiteTask, read_suite, suite_files

# qbench's suite tasks as lmms-eval tasks, for `lmms-eval --model qbench --include_path <this folder>`
TASKS_DIR = SUITES_DIR / "tasks"
LONGEST_NAME = 80  # characters of a --tasks list's name (the run folder's middle part) before it is shortened


@functools.cache
def suite_tasks() -> dict[str, SuiteTask]:
    """Every task of qbench's own suites, by the name it is reported under."""
    return {task.task: task for path in suite_files().names() for task in read_suite(suite_files()[path]).tasks}


def lmms_eval_index() -> dict[str, dict[str, Any]]:
    """lmms-eval's whole task index (groups and tags included); about 6 s, so only for names the text scan of
    qbench.suites.tasks.task_yaml does not find."""
    from lmms_eval.tasks import TaskManager

    return TaskManager(include_defaults=True).task_index


def lmms_eval_has(name: str) -> bool:
    """Whether lmms-eval defines a task of this name."""
    from qbench.suites.tasks import task_yaml

    try:
        task_yaml(name)
    except UnknownName:
        return False
    return True


class Catalog:
    """Task names -> SuiteTasks, over the given include paths, qbench's suites and lmms-eval's tasks."""

    def __init__(self, include_paths: Sequence[str | Path] = ()):
        for path in include_paths:
            if not Path(path).is_dir():
                raise UserError(f"--include-path {path}: no such folder; give a folder of task YAMLs")
        own = TASKS_DIR.resolve()
        self.include_paths = [Path(p) for p in include_paths if Path(p).resolve() != own]  # qbench's: known anyway

    @functools.cached_property
    def included(self) -> dict[str, dict[str, Any]]:
        """lmms-eval's index of the include paths: name -> {type, yaml_path[, task]}."""
        if not self.include_paths:
            return {}
        from lmms_eval.tasks import TaskManager

        return TaskManager(include_path=[str(p) for p in self.include_paths], include_defaults=False).task_index

    @functools.cached_property
    def lmms_eval(self) -> dict[str, dict[str, Any]]:
        return lmms_eval_index()

    def tasks(self, name: str) -> list[SuiteTask]:
        """The tasks `name` stands for: one task, or the tasks of a group or tag."""
        if name in self.included:
            return self.own_tasks(name)
        if name in suite_tasks():
            return [suite_tasks()[name]]
        if lmms_eval_has(name):
            return [SuiteTask(name, name)]
        if name in self.lmms_eval:
            return [task for member in members(name, self.lmms_eval[name]) for task in self.tasks(member)]
        where = f"the include paths ({', '.join(map(str, self.include_paths))}), " if self.include_paths else ""
        raise UnknownName(f"unknown task {name!r}: not in {where}qbench's suites or lmms-eval's tasks (`lmms-eval "
                          "--tasks list` lists lmms-eval's; --include-path DIR adds a folder of your own task YAMLs)")

    def own_tasks(self, name: str) -> list[SuiteTask]:
        """A name from the include paths: its task, or the tasks of its group or tag."""
        entry = self.included[name]
        if entry["type"] == "python_task":
            raise UserError(f"task {name} ({entry['yaml_path']}) is a Python class task; qbench runs tasks configured "
                            "in YAML (a doc_to_text, doc_to_visual, metric_list, ...)")
        if entry["type"] != "task":
            return [task for member in members(name, entry) for task in self.tasks(member)]
        if lmms_eval_has(name) or name in suite_tasks():
            raise UserError(f"task {name} in {entry['yaml_path']} has the name of a task qbench or lmms-eval already "
                            "defines (lmms-eval's CLI would run that one): give yours another name")
        return [SuiteTask(name, name, config=str(Path(entry["yaml_path"]).resolve()))]

    def resolve(self, task: SuiteTask) -> list[SuiteTask]:
        """A suite's entry with its config found: a bare name as `tasks` finds it, a task on other data with its
        `like` looked up in the include paths."""
        if task.bare:
            return self.tasks(task.task)
        if task.like in self.included:
            if self.included[task.like]["type"] != "task":
                raise UserError(f"task {task.task}: `like: {task.like}` names a group or tag; name one task")
            (like,) = self.own_tasks(task.like)
            return [dataclasses.replace(task, config=like.config)]
        return [task]

    def suite(self, name: str, description: str, entries: Sequence[SuiteTask]) -> Suite:
        """A suite with every entry resolved (groups expanded); a task named twice runs once."""
        found: dict[str, SuiteTask] = {}
        for entry in entries:
            for task in self.resolve(entry):
                found.setdefault(task.task, task)
        return Suite(name, description, tuple(found.values()))


def members(name: str, entry: dict[str, Any]) -> list[str]:
    """The task names of a group (its YAML's `task` list) or of a tag (lmms-eval's index lists them)."""
    if entry["type"] == "tag":
        return list(entry["task"])
    from lmms_eval import utils

    listed = utils.load_yaml_config(entry["yaml_path"], mode="simple").get("task", [])
    inline = [member for member in listed if not isinstance(member, str)]
    if inline:
        raise UserError(f"group {name} ({entry['yaml_path']}) defines tasks inline; qbench runs groups that list "
                        "tasks by name")
    return listed


def tasks_name(names: Sequence[str]) -> str:
    """The name a --tasks list is run and reported under: the names joined by '+', shortened with a hash of the
    whole list when long (two lists never share a name, so neither resumes the other's run)."""
    joined = "+".join(names)
    if len(joined) <= LONGEST_NAME:
        return joined
    return f"{'+'.join(names[:2])}+{len(names) - 2}-more-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


def find_suite(suite: str | None, tasks: Sequence[str], include_paths: Sequence[str | Path] = ()) -> Suite:
    """What `qbench run` runs: `--suite` (a name or a YAML file) or `--tasks`, each name found in the catalog."""
    from qbench.suites.registry import load_suite

    if (suite is None) == (not tasks):
        raise UserError("give --suite NAME_OR_FILE or --tasks TASK[,TASK...] (one of them)")
    catalog = Catalog(include_paths)
    if suite is not None:
        chosen = load_suite(suite)
        return catalog.suite(chosen.name, chosen.description, chosen.tasks)
    return catalog.suite(tasks_name(tasks), f"the tasks {', '.join(tasks)}", [SuiteTask(t, t) for t in tasks])
