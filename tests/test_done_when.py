"""Issue 26's sequence as a new user types it, on a copy of the project's results: a random-weight run, a trained
run, a CPU speed sweep, a small ablation under a new name, and a report into a folder of its own. The shipped
results stay as they are, trained and random weights get rows of their own, no CPU timing sits beside a GPU one,
and intervals resample the questions of one image together (wider where they share one)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from qbench import stats
from qbench.cli import app
from qbench.runs import read_run

REPO = Path(__file__).resolve().parents[1]


def qbench(*args) -> str:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def digests(folder: Path, names: list[str] | None = None) -> dict[str, str]:
    """sha256 of each file under `folder` (or of the `names` there)."""
    names = names if names is not None else [path.relative_to(folder).as_posix() for path in folder.rglob("*")
                                             if path.is_file()]
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(names)}


def tracked(folder: Path) -> list[str]:
    """The files git tracks under `folder` (the project's shipped results), relative to it."""
    listed = subprocess.run(["git", "-C", str(folder), "ls-files", "-z"], capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name]


def test_runs_an_ablation_and_a_report_leave_the_shipped_results_alone_and_mix_nothing(tmp_path, monkeypatch):
    names = tracked(REPO / "results")
    shipped = digests(REPO / "results", names)
    for name in names:  # a copy of the shipped results, where the commands write by default
        (tmp_path / "results" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / "results" / name, tmp_path / "results" / name)
    monkeypatch.chdir(tmp_path)  # every command's default folders are the copy's
    run = ["run", "--model", "tiny-llava", "--suite", "mini", "--limit", "12", "--device", "cpu"]
    said = qbench(*run)
    assert "random weights, seed 0: scores are chance" in said
    qbench(*run, "--checkpoint", REPO / "weights" / "tiny" / "tiny-llava")
    qbench("speed", "--model", "tiny-cobra,tiny-llava", "--tokens", "16", "--engine", "eager", "--new-tokens", "2",
           "--repeats", "1", "--dtype", "fp32", "--device", "cpu", "--output", "results/speed/cpu_today")
    qbench("ablate", "--projectors", "mlp", "--backbones", "llama", "--name", "first-try", "--steps", "2",
           "--batch-size", "4", "--train-questions", "8", "--recipe", "cobra", "--limit", "4", "--device", "cpu")
    qbench("report", "--results", "results", "--output", "my-report")

    assert digests(REPO / "results", names) == shipped  # nothing the project ships was touched
    copy = digests(tmp_path / "results")
    assert [name for name, digest in shipped.items() if copy[name] != digest] == []  # the copy: only files added
    assert {name.split("/")[1] for name in set(copy) - set(shipped) if name.startswith("ablation/")} == {"first-try"}

    report = tmp_path / "my-report" / "tables"
    accuracy = pd.read_csv(report / "accuracy.csv")
    mine = accuracy[accuracy["numbers"] == "measured (mini, limit 12)"].set_index("weights")
    assert set(mine.index) == {"random, seed 0", "tiny-llava 8ae16742"} and set(mine["device"]) == {"cpu"}
    assert mine.loc["random, seed 0", "VQAv2"] != mine.loc["tiny-llava 8ae16742", "VQAv2"]  # neither replaced
    assert "measured (mini)" in set(accuracy["numbers"])  # the shipped full-split run keeps its own row

    for name in ("speed", "speed_ratio"):  # CPU timings in tables of their own, never beside the H100/H200 ones
        gpu, cpu = pd.read_csv(report / f"{name}.csv"), pd.read_csv(report / f"{name}_cpu.csv")
        assert "cpu" not in set(gpu["device"]) and set(cpu["device"]) == {"cpu"}
    figures = {path.stem for path in (tmp_path / "my-report" / "figures").glob("tokens_per_s_*.png")}
    h100 = "tokens_per_s_nvidia-h100-80gb-hbm3"  # and its hybrids' sweep at 64 new tokens, a figure of its own
    assert figures == {"tokens_per_s_cpu", h100, f"{h100}_64-new-tokens", "tokens_per_s_nvidia-h200"}
    assert "first-try" in set(pd.read_csv(report / "ablation.csv")["ablation"])

    (trained,) = [folder for folder in (tmp_path / "results" / "runs").glob("tiny-llava__mini__*")
                  if read_run(folder).summary["limit"] == 12]  # the trained weights' new run, not the shipped one
    run_read = read_run(trained)
    gqa, vizwiz = run_read.tasks()["mini_gqa"], run_read.tasks()["mini_vizwiz"]
    assert run_read.summary["intervals"]["mini_gqa"]["exact_match"]["clusters"] < len(gqa)  # images shared
    lone = stats.interval([{**row, "image": None} for row in vizwiz], "exact_match")["ci"]
    assert run_read.summary["intervals"]["mini_vizwiz"]["exact_match"]["ci"] == lone  # one question an image

    # where the questions about one image are right or wrong together, the interval widens
    rng = np.random.default_rng(0)
    shared = [{"score": float(rng.random() < p), "image": f"i{image}"}
              for image, p in enumerate(rng.choice([0.1, 0.9], 80)) for _ in range(5)]
    alone = [{"score": row["score"]} for row in shared]
    width = {name: np.diff(stats.bootstrap(rows, stats.mean_score))[0] for name, rows in (("shared", shared),
                                                                                           ("alone", alone))}
    assert width["shared"] > 1.5 * width["alone"]
