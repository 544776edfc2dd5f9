"""A suite's tasks as lmms-eval Task objects: lmms-eval's own configs, pointed at local copies where they exist.

Every task starts from the config in its YAML, lmms-eval's own or one in an include path (prompt, generation
settings, scoring, aggregation), and changes only: its name (mini tasks), where the data comes from, the one
max_new_tokens qbench uses for every model, and the paper variants asked for. A task's data is a hub dataset (or its
local copy under the data dir), a local folder, or local files read by one of datasets' builders (`dataset_path:
json` with `data_files`); local data is identified by the fingerprint of the folder that holds it.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from qbench.fingerprint import fingerprint
from qbench.hub import WeightsNotFound
from qbench.inputs import check_folder
from qbench.registry import UnknownName
from qbench.suites.registry import GENERATED_ORG, ImageSource, Suite, SuiteTask
from qbench.suites.variants import Variant, apply_variants

Config = dict[str, Any]


class DataNotFound(WeightsNotFound):
    """A dataset that is neither a local copy nor reachable on the hub; the message says how to make a copy."""


def how_to_copy(dataset: str, data_dir: Path) -> str:
    return (f"On a machine with hub access run `hf download {dataset} --repo-type dataset --local-dir "
            f"{data_dir / dataset}` (or copy such a download there), then rerun with --data-dir {data_dir}.")


def lmms_tasks_dir() -> Path:
    import lmms_eval

    return Path(lmms_eval.__file__).parent / "tasks"


@functools.cache
def task_yaml(name: str) -> Path:
    """The lmms-eval YAML that defines task `name` (found by a text scan: indexing every task takes ~10 s)."""
    pattern = re.compile(rf"^task:\s*[\"']?{re.escape(name)}[\"']?\s*$", re.MULTILINE)
    for path in sorted(lmms_tasks_dir().rglob("*.yaml")):
        if pattern.search(path.read_text(errors="ignore")):
            return path
    raise UnknownName(f"lmms-eval has no task {name!r}")


def base_config(name: str) -> Config:
    """A fresh copy of lmms-eval's config for task `name`, with its `!function`s imported."""
    from lmms_eval import utils

    return utils.load_yaml_config(str(task_yaml(name)), mode="full")


def like_config(task: SuiteTask) -> Config:
    """A fresh copy of the config of the task `task` runs like: from its include path's YAML, else lmms-eval's."""
    if task.config is None:
        return base_config(task.like)
    from lmms_eval import utils

    return utils.load_yaml_config(task.config, mode="full")


def data_files(config: Config) -> list[Path] | None:
    """The local files of a task read by one of datasets' builders (`dataset_path: json` + `data_files`), else None.
    lmms-eval has made relative paths absolute against the task's YAML where the file exists."""
    from lmms_eval.utils import _LOCAL_BUILDERS

    listed = (config.get("dataset_kwargs") or {}).get("data_files")
    if config.get("dataset_path") not in _LOCAL_BUILDERS or not listed:
        return None
    flat = listed.values() if isinstance(listed, dict) else [listed]
    return [Path(name) for entry in flat for name in ([entry] if isinstance(entry, str) else entry)]


def local_data(task: SuiteTask, config: Config) -> Path | None:
    """The folder holding a task's local data: that of its data files, or a local folder as its dataset_path."""
    files = data_files(config)
    if files is not None:
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataNotFound(f"task {task.task}: no data file {', '.join(missing)} (a relative `data_files` path "
                               f"is read beside the task's YAML{f', {task.config}' if task.config else ''})")
        return Path(os.path.commonpath([f.resolve().parent for f in files]))
    path = Path(config["dataset_path"])
    return path if path.is_absolute() and path.is_dir() else None


def local_copy(data_dir: Path, dataset: str) -> Path | None:
    path = data_dir / dataset
    return path if path.is_dir() else None


def cache_for(local: Path) -> str:
    """The datasets cache folder of a local copy, keyed on its contents: the same data maps to the same cache
    wherever it lies, and changed data to another (datasets keys a local folder's cache on the folder's name and
    file patterns only, so two copies, or a regenerated one, would otherwise share a stale cache)."""
    import datasets

    return str(Path(datasets.config.HF_DATASETS_CACHE) / "qbench-local" / fingerprint(local)[:16])


def provenance(task: SuiteTask, data_dir: Path, loaded: Any) -> dict[str, str | None]:
    """Where a task's data came from (summary.json's data[task], and part of a run's identity): the local copy and
    its fingerprint, or the hub id and the revision that was loaded."""
    dataset = task.dataset
    if not dataset:
        config = like_config(task)
        own = local_data(task, config)
        if own is not None:
            return {"source": "local", "hub_id": None, "revision": None, "path": str(own.resolve()),
                    "fingerprint": fingerprint(own)}
        dataset = config["dataset_path"]
    local = local_copy(data_dir, dataset)
    if local is None:
        revision = hub_revision(loaded)
        return {"source": "hub", "hub_id": dataset, "revision": revision, "path": None, "fingerprint": revision}
    found = [fingerprint(local)]
    if task.images is not None and task.images.dataset != dataset:
        images = local_copy(data_dir, task.images.dataset)
        found.append(fingerprint(images) if images else f"hub:{task.images.dataset}")
    generated = {"generator": mini_generator(local)} if dataset.startswith(GENERATED_ORG + "/") else {}
    return {"source": "local", "hub_id": dataset, "revision": None, "path": str(local.resolve()),
            "fingerprint": "+".join(found), **generated}


def mini_generator(local: Path) -> str | None:
    """The generator version of a generated dataset (its MINI.json's), which `qbench compare` names when two runs'
    generated data differ."""
    from qbench.suites.mini import MANIFEST, read_settings

    manifest = local.parent / MANIFEST
    return read_settings(manifest)["generator"] if manifest.is_file() else None


def hub_revision(loaded: Any) -> str | None:
    """The commit of a hub dataset that lmms-eval loaded, read from its cache files' path (datasets stores a hub
    dataset under .../<config>/<version>/<commit>/)."""
    for split in loaded.dataset.values():
        for cached in split.cache_files:
            commits = [part for part in Path(cached["filename"]).parts if re.fullmatch(r"[0-9a-f]{40}", part)]
            if commits:
                return commits[-1]
    return None


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def attach_images(docs, source: str, name: str, split: str, key: str = "imageId"):
    """Rows that carry only an image id, with the `image` column of the local images config joined in (what
    lmms-eval's gqa_process_docs does from the hub)."""
    import datasets

    images = datasets.load_dataset(source, name, split=split, cache_dir=cache_for(Path(source)))
    row_of = {image_id: index for index, image_id in enumerate(images["id"])}
    missing = sorted(set(docs[key]) - set(row_of))
    if missing:
        raise DataNotFound(f"{source} ({name}, {split}) lacks {len(missing)} images the questions need, "
                           f"e.g. {missing[:3]}")
    picked = images.select([row_of[image_id] for image_id in docs[key]]).flatten_indices()
    return datasets.concatenate_datasets([docs, picked.remove_columns("id")], axis=1)


def point_at_data(config: Config, task: SuiteTask, data_dir: Path) -> Config:
    """Use the local copy under data_dir where there is one; otherwise leave the hub id (or fail when offline).
    A task on local files or a local folder of its own reads them, through a cache keyed on their contents."""
    own = None if task.dataset else local_data(task, config)
    if own is not None:
        kwargs = {k: v for k, v in (config.get("dataset_kwargs") or {}).items() if k != "token"}
        return {**config, "dataset_kwargs": {**kwargs, "cache_dir": cache_for(own)}}
    dataset = task.dataset or config["dataset_path"]
    local = local_copy(data_dir, dataset)
    if local is None and dataset.startswith(GENERATED_ORG + "/"):
        raise DataNotFound(f"task {task.task} needs the generated dataset {dataset}, which is not at "
                           f"{data_dir / dataset}: run `qbench data mini --out {data_dir}`")
    if local is None and hub_offline():
        raise DataNotFound(f"task {task.task} needs the dataset {dataset}: no local copy at {data_dir / dataset} "
                           f"and the hub is offline (HF_HUB_OFFLINE). " + how_to_copy(dataset, data_dir))
    if local is not None:
        kwargs = {k: v for k, v in (config.get("dataset_kwargs") or {}).items() if k != "token"}
        config = {**config, "dataset_path": str(local), "dataset_kwargs": {**kwargs, "cache_dir": cache_for(local)}}
    if task.images is not None:
        config = {**config, "process_docs": images_for(task.images, data_dir, config.get("process_docs"))}
    return config


def images_for(images: ImageSource, data_dir: Path, hub_process_docs):
    """The process_docs that brings in the images: the local images config, or lmms-eval's own (from the hub)."""
    local = local_copy(data_dir, images.dataset)
    if local is None:
        if hub_offline():
            raise DataNotFound(f"the images of {images.dataset} ({images.name}) are not at {data_dir / images.dataset}"
                               f" and the hub is offline. " + how_to_copy(images.dataset, data_dir))
        return hub_process_docs
    return functools.partial(attach_images, source=str(local), name=images.name, split=images.split)


def task_config(task: SuiteTask, data_dir: Path, variants: list[Variant], max_new_tokens: int) -> Config:
    config = like_config(task)
    config["task"] = task.task
    config["generation_kwargs"] = {**(config.get("generation_kwargs") or {}), "max_new_tokens": max_new_tokens}
    return apply_variants(point_at_data(config, task, data_dir), variants)


def check_caches() -> None:
    """The caches loading data writes to ($HF_DATASETS_CACHE, $QBENCH_CACHE) are folders; a UserError naming the
    variable otherwise, before any data is made or loaded."""
    import datasets

    from qbench.fingerprint import cache_root

    check_folder(datasets.config.HF_DATASETS_CACHE, "HF_DATASETS_CACHE",
                 "set it to a folder the datasets library may cache in, or unset it")
    cache_root()


def load_fix(task: SuiteTask, config: Config, data_dir: Path) -> str:
    """What to check when a task's data does not load."""
    files = data_files(config)
    if files is not None:
        return f"Do {', '.join(map(str, files))} hold what `dataset_path: {config['dataset_path']}` reads?"
    dataset = task.dataset or config["dataset_path"]
    if Path(config["dataset_path"]).is_dir():
        return f"Is {config['dataset_path']} a complete copy of {dataset} in the hub layout?"
    return how_to_copy(dataset, data_dir)


def check_variants(suite: Suite, variants: list[Variant]) -> None:
    from qbench.suites.variants import MODEL_PROMPT, applies

    for variant in variants:
        if variant.function != MODEL_PROMPT and not any(applies(variant, like_config(task)) for task in suite.tasks):
            raise ValueError(f"variant {variant.option}={variant.value} applies to no task of suite {suite.name}")


def load_tasks(suite: Suite, data_dir: Path, variants: list[Variant], max_new_tokens: int) -> dict[str, Any]:
    """name -> lmms-eval Task with its data loaded; DataNotFound names the dataset and how to make a local copy."""
    from lmms_eval.api.task import ConfigurableTask

    check_variants(suite, variants)
    tasks: dict[str, Any] = {}
    for task in suite.tasks:
        config = task_config(task, data_dir, variants, max_new_tokens)
        try:
            tasks[task.task] = ConfigurableTask(config=config, model_name="qbench")  # loads the data
        except DataNotFound:
            raise
        except Exception as error:
            raise DataNotFound(f"task {task.task}: cannot load {config['dataset_path']} "
                               f"({type(error).__name__}: {error}). {load_fix(task, config, data_dir)}") from error
    return tasks
