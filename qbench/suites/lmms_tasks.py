"""qbench's suite tasks for lmms-eval's own CLI. suites/tasks/<task>.yaml names a task and this class, which lmms-eval
builds with that YAML's config: the task is made exactly as `qbench run` makes it (qbench.suites.tasks.task_config:
lmms-eval's prompt and scoring, qbench's data and max_new_tokens), on the data under $QBENCH_DATA_DIR (default
`data`; the mini datasets are generated there on first use, as `qbench run` does).

    lmms-eval --model qbench --model_args preset=tiny-cobra --tasks mini_vqav2 --include_path suites/tasks

lmms-eval imports this module only when it loads such a task, so it may import lmms-eval at its top.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmms_eval.api.task import ConfigurableTask

from qbench.suites.catalog import suite_tasks
from qbench.suites.runner import DATA_ENV, DEFAULT_DATA, MAX_NEW_TOKENS


class QBenchSuiteTask(ConfigurableTask):
    """The task of qbench's suites that `config["task"]` names, as `qbench run` would run it."""

    def __init__(self, config: dict[str, Any]):
        from qbench.suites import mini
        from qbench.suites.tasks import task_config

        task = suite_tasks()[config["task"]]
        data_dir = Path(os.environ.get(DATA_ENV) or DEFAULT_DATA)
        if task.generated:
            mini.ensure(data_dir)
        super().__init__(config=task_config(task, data_dir, [], MAX_NEW_TOKENS), model_name="qbench")
