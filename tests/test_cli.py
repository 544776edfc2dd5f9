"""The `qbench` command as a user meets it: one name for one thing in every command (old spellings still work), help
for every option, flags that are flags, a models table that fits 100 columns, and quiet unless asked."""

import re

import pytest
from typer.testing import CliRunner

from qbench.cli import app
from qbench.presets import ALIASES, get_preset, preset_names


def qbench_cli(*args, **env):
    return CliRunner(env={"COLUMNS": "100", **env}).invoke(app, [str(arg) for arg in args])


def test_the_models_table_fits_100_columns_with_aliases_and_weight_sources():
    result = qbench_cli("models")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 100 and "…" not in result.output
    for name in preset_names():
        (row,) = [line for line in lines if line.split() and line.split()[0] == name]
        weights = get_preset(name).weights
        assert (weights.partition(":")[2] or weights) in row
        assert all(alias in row.split() for alias, target in ALIASES.items() if target == name)


def commands(group=None, prefix=()):
    """Every (path, click command) of `qbench`, subgroups' commands included."""
    import typer.main

    group = group or typer.main.get_command(app)
    found = [(prefix, group)]
    for name, command in getattr(group, "commands", {}).items():
        found += commands(command, (*prefix, name)) if hasattr(command, "commands") else [((*prefix, name), command)]
    return found


def test_every_option_has_help_and_every_boolean_is_a_flag():
    for path, command in commands():
        for param in command.params:
            if param.param_type_name != "option":
                continue
            assert param.help, f"qbench {' '.join(path)} {param.opts[0]} has no help"
            if param.type_descriptor.annotation is bool:
                assert param.is_flag, f"qbench {' '.join(path)} {param.opts[0]} takes a value: make it a flag"
        help_text = qbench_cli(*path, "--help").output
        assert "<bool>" not in help_text, f"`qbench {' '.join(path)} --help` shows a flag as taking a value"


def test_one_name_for_one_thing_in_every_command():
    """Output folders are --output, batch sizes --batch-size, everywhere; the old names are hidden aliases."""
    from qbench.cli import RENAMED, renamed

    for path, command in commands():
        names = {name for param in command.params for name in param.opts}
        assert not names & set(RENAMED), f"qbench {' '.join(path)} still spells {names & set(RENAMED)}"
        assert not {name for name in names if name.endswith(("-out", "-dir-out", "-batch"))}, names
        for old, new in RENAMED.items():
            if new in names:
                assert renamed(command, [old, "x", f"{old}=y"]) == [new, "x", f"{new}=y"]
                assert not re.search(rf"{old}(?![\w-])", qbench_cli(*path, "--help").output), f"{old} shown"


def test_old_option_spellings_still_work(tmp_path):
    result = qbench_cli("data", "mini", "--out", tmp_path / "data", "--eval", "1", "--train", "1")
    assert result.exit_code == 0 and (tmp_path / "data" / "mini" / "VQAv2").is_dir(), result.output
    result = qbench_cli("report", "--results", tmp_path / "nothing", "--out=" + str(tmp_path / "report"))
    assert result.exit_code == 2 and "results folder" in result.output and "does not exist" in result.output
    refused = qbench_cli("speed", "--model", "tiny-cobra", "--batch", "0", "--output", tmp_path / "speed")
    assert refused.exit_code == 2 and "--batch-size takes whole numbers" in " ".join(refused.output.split())


def test_other_packages_are_quiet_unless_verbose(tmp_path):
    """Without a terminal, as CI or a log sees it: a run prints qbench's lines only; --verbose shows the rest."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from qbench.suites import mini

    mini.write(tmp_path / "data", eval_questions=2, train_questions=1)
    root = Path(__file__).resolve().parents[1]
    env = {key: value for key, value in os.environ.items() if key not in {"TRANSFORMERS_VERBOSITY", "TQDM_DISABLE"}}
    run = [sys.executable, "-m", "qbench.cli", "run", "--model", "tiny-cobra", "--tasks", "mini_vqav2,mini_textvqa",
           "--limit", "1", "--data-dir", str(tmp_path / "data"), "--output", str(tmp_path / "runs")]
    printed = {}
    for flag in ([], ["--verbose"]):
        done = subprocess.run([*run, *flag], env={**env, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"},
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        printed[bool(flag)] = done.stdout + done.stderr
    noise = ("falling back", "it/s]", "Postprocessing", "| DEBUG", "| INFO")
    assert not [line for line in printed[False].splitlines() if any(word in line for word in noise)], printed[False]
    assert "falling back" in printed[True] and "Postprocessing" in printed[True]
    assert "mini_textvqa" in printed[False] and "wrote" in printed[False]
    assert "loading the data of 2 task(s)" in printed[False] and "loading tiny-cobra (random) on cpu" in printed[False]


def test_speed_on_a_cpu_runs_fp32_and_refuses_full_size_presets_with_an_estimate(tmp_path):
    import json

    refused = qbench_cli("speed", "--device", "cpu", "--output", tmp_path / "full")
    line = " ".join(refused.output.split())
    assert refused.exit_code == 2 and line.startswith("error: cobra-3b, ml-mamba-2.7b, q-mamba-3b, llava-1.5-7b on "
                                                      "the CPU: this sweep would take at least"), line
    assert re.search(r"at least \d+(\.\d)? (h|min|s) .* (\d+\.\d) GiB for the largest model's fp32 weights", line)
    assert "--allow-slow" in line and not (tmp_path / "full").exists()
    result = qbench_cli("speed", "--device", "cpu", "--model", "tiny-cobra", "--tokens", "16", "--new-tokens", "2",
                        "--repeats", "1", "--output", tmp_path / "tiny")
    assert result.exit_code == 0, result.output
    assert "building tiny-cobra" in result.output and "timing tiny-cobra batch 1 eager" in result.output
    (row,) = json.loads((tmp_path / "tiny" / "speed.json").read_text())["rows"]
    assert row["dtype"] == "fp32" and row["status"] == "ok"


def test_the_estimate_counts_every_pass_of_every_point(monkeypatch):
    from qbench.speed import estimate
    from qbench.speed.estimate import FULL_SIZE, full_size_estimate
    from qbench.speed.sweep import SweepConfig

    monkeypatch.setattr(estimate, "matmul_flops_per_s", lambda: 1e11)  # this machine's rate, fixed

    small = SweepConfig(models=["tiny-cobra"], tokens=[None], batches=[1], engines=["eager"], device="cpu",
                        dtype="fp32")
    assert full_size_estimate(small) is None
    one = full_size_estimate(SweepConfig(models=["cobra"], tokens=[None], batches=[1], engines=["eager"],
                                         device="cpu", dtype="fp32", repeats=1, new_tokens=16))
    twice = full_size_estimate(SweepConfig(models=["cobra"], tokens=[None], batches=[1, 2], engines=["eager"],
                                           device="cpu", dtype="bf16", repeats=3, new_tokens=16))
    assert one.full_size == ["cobra-3b"] and 3.55e9 * 4 / 2**30 * 0.99 < one.memory_gib < 3.56e9 * 4 / 2**30
    assert twice.memory_gib == one.memory_gib / 2
    assert twice.seconds == pytest.approx(6 * one.seconds, rel=0.01)  # (1 + 3) passes x (batch 1 + 2) vs 2 x 1
    llm_flops = 2 * 2.77e9 * (729 + 16 + 16) * 2  # the LLM's share of the one point's two passes
    assert llm_flops / 1e11 < one.seconds < 1.5 * llm_flops / 1e11
    assert FULL_SIZE > 1_000_000  # every tiny twin is below it
