"""speed.json and speed.csv: one row per (model, visual tokens, batch, engine), rewritten after every point."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

SCHEMA = "qbench.speed/1"
ROW_FIELDS = ["model", "backbone", "projector", "visual_tokens", "batch", "engine", "status", "error", "new_tokens",
              "prompt_tokens", "dtype", "device", "kernel_path", "vision_ms", "projector_ms", "prefill_ms", "ttft_ms",
              "decode_tokens_per_s", "e2e_tokens_per_s", "peak_mem_gib", "weights_gib", "state_gib",
              "bytes_per_token", "roofline_tokens_per_s", "roofline_share", "repeats"]


class SpeedResults:
    def __init__(self, out_dir: Path, command: str, environment: dict, copy_bandwidth_gbs: float | None):
        self.out_dir = out_dir
        self.document = {"schema": SCHEMA, "command": command,
                         "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                         "environment": environment, "copy_bandwidth_gbs": copy_bandwidth_gbs, "rows": []}

    @property
    def rows(self) -> list[dict]:
        return self.document["rows"]

    def add(self, row: dict) -> None:
        missing = set(ROW_FIELDS) ^ set(row)
        if missing:
            raise ValueError(f"a speed row must have exactly the schema's fields; differs in: {sorted(missing)}")
        self.rows.append({field: row[field] for field in ROW_FIELDS})
        self.write()

    def write(self) -> None:
        import pandas as pd

        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "speed.json").write_text(json.dumps(self.document, indent=2) + "\n")
        pd.DataFrame(self.rows, columns=ROW_FIELDS).to_csv(self.out_dir / "speed.csv", index=False)
