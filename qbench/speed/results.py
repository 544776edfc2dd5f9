"""speed.json and speed.csv: one row per (model, visual tokens, batch, engine), rewritten after every point.

A sweep into a folder that already holds a speed.json from the same machine and library versions adds to it: points
already measured the way this sweep measures them are kept and skipped (an interrupted sweep resumes; a second sweep
with other engines joins the first); a point measured otherwise (e.g. with other repeats) is measured again and its
row replaced. Each command that wrote rows is listed. A folder holding a document of another machine or schema is
refused (`earlier_document`, which the answering workload's workload.json shares). While a sweep or a workload
writes a folder it holds the folder's lock (qbench.folder), so a second one into the same folder is refused rather
than each rewriting the file with its own rows."""

from __future__ import annotations

import datetime
from pathlib import Path

from qbench.folder import write_table
from qbench.inputs import read_json
from qbench.speed.largest_batch import LARGEST

SCHEMA = "qbench.speed/1"
ROW_FIELDS = ["model", "backbone", "projector", "visual_tokens", "images", "batch", "batch_search", "largest_batch",
              "engine", "status",
              "error", "new_tokens", "prompt_tokens", "dtype", "device", "kernel_path", "vision_ms", "projector_ms",
              "prefill_ms", "ttft_ms", "decode_tokens_per_s", "e2e_tokens_per_s", "peak_mem_gib", "weights_gib",
              "state_gib", "state_alloc_gib", "bytes_per_token", "roofline_tokens_per_s", "roofline_share", "repeats",
              "checkpoint"]
# What rows written before a field existed mean by its absence: one image per prompt, batch asked, not measured.
# batch_search: None (the batch was asked), "largest" (the largest that fits), "limit" (the search's limit, which fit:
# more may), either with ", states copied" (decode measured, the prompts not all prefilled: qbench.speed.largest_batch);
# largest_batch: what the search found (0: not even one sequence fits); batch: where it was measured, the largest
# or, where that whole pass ran out of memory, a smaller batch that fit; checkpoint: None (random weights).
ADDED_FIELDS = {"images": 1, "batch_search": None, "largest_batch": None, "state_alloc_gib": None, "checkpoint": None}

POINT_FIELDS = ["model", "checkpoint", "visual_tokens", "images", "batch", "engine", "new_tokens", "prompt_tokens",
                "dtype", "device"]
HOW_FIELDS = ["repeats"]  # how a point was measured: asked otherwise, it is measured again
# environment keys that must agree for two sweeps to share a folder
SAME_MACHINE = ["device", "gpu", "driver", "torch", "transformers", "mamba_ssm", "causal_conv1d"]


def point_key(row: dict) -> list:
    return [LARGEST if field == "batch" and row.get("batch_search") else row[field] for field in POINT_FIELDS]


class SpeedResults:
    def __init__(self, out_dir: Path, command: str, environment: dict, copy_bandwidth_gbs: float | None):
        self.out_dir = out_dir
        self.document = {"schema": SCHEMA, "commands": [command],
                         "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                         "environment": environment, "copy_bandwidth_gbs": copy_bandwidth_gbs, "rows": [],
                         "searches": []}
        earlier = earlier_document(out_dir / "speed.json", SCHEMA, environment,
                                   "delete it to measure every point again, or choose another --output")
        if earlier is not None:  # an earlier sweep's rows and commands, from this machine and library versions
            self.document |= {"commands": [*earlier["commands"], command], "created": earlier["created"],
                              "rows": [ADDED_FIELDS | row for row in earlier["rows"]],
                              "searches": earlier.get("searches", [])}

    def has(self, point: dict) -> bool:
        """Whether a row for this point (POINT_FIELDS; batch LARGEST matches a searched row), measured the same way
        (HOW_FIELDS), is already written."""
        return any(point_key(row) == point_key(point) and same(row, point, HOW_FIELDS) for row in self.rows)

    def add_search(self, search: dict) -> None:
        """A largest-batch search, every batch it tried; written with the next row."""
        self.document["searches"].append(search)

    @property
    def rows(self) -> list[dict]:
        return self.document["rows"]

    def add(self, row: dict) -> None:
        missing = set(ROW_FIELDS) ^ set(row)
        if missing:
            raise ValueError(f"a speed row must have exactly the schema's fields; differs in: {sorted(missing)}")
        new = {field: row[field] for field in ROW_FIELDS}
        earlier = [index for index, kept in enumerate(self.rows) if point_key(kept) == point_key(new)]
        if earlier:  # the same point measured otherwise: this row replaces it, in its place
            self.rows[earlier[0]] = new
        else:
            self.rows.append(new)
        self.write()

    def write(self) -> None:
        write_table(self.out_dir, "speed", self.document, ROW_FIELDS)


def earlier_document(path: Path, schema: str, environment: dict, remedy: str) -> dict | None:
    """The results document already at `path` (None if there is none), if a command of this machine and library
    versions wrote it (SAME_MACHINE), with its rows; ValueError naming the file and what differs otherwise."""
    if not path.exists():
        return None
    earlier = read_json(path, remedy)
    if not isinstance(earlier, dict) or earlier.get("schema") != schema or not isinstance(earlier.get("rows"), list):
        raise ValueError(f"{path} is not a {schema} document: choose another --output")
    differing = [key for key in SAME_MACHINE if (earlier.get("environment") or {}).get(key) != environment.get(key)]
    if differing:
        raise ValueError(f"{path} was measured with another {', '.join(differing)}: its rows cannot share a table "
                         "with this machine's; choose another --output")
    return earlier


def same(row: dict, other: dict, fields: list[str]) -> bool:
    return all(row[field] == other[field] for field in fields)
