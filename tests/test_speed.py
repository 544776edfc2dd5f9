"""`qbench speed` as a user runs it on a CPU: tiny presets, small token counts, eager engine."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from qbench.cli import app
from qbench.speed import ROW_FIELDS, SCHEMA

runner = CliRunner()
TIMES = ["vision_ms", "projector_ms", "prefill_ms", "ttft_ms", "decode_tokens_per_s", "e2e_tokens_per_s",
         "weights_gib", "state_gib", "bytes_per_token", "roofline_tokens_per_s", "roofline_share"]
COMMON = ["--new-tokens", "3", "--repeats", "1", "--dtype", "fp32", "--device", "cpu", "--engine", "eager"]


def speed(tmp_path, *args: str):
    result = runner.invoke(app, ["speed", *args, *COMMON, "--output", str(tmp_path)])
    document = json.loads((tmp_path / "speed.json").read_text()) if (tmp_path / "speed.json").exists() else None
    return result, document


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed")
    return speed(out, "--model", "tiny-cobra,tiny-llava,tiny-q-mamba", "--tokens", "16,36", "--batch", "1,2") + (out,)


def test_one_row_per_point_in_the_schema(sweep):
    result, document, out = sweep
    assert result.exit_code == 0, result.output
    assert document["schema"] == SCHEMA
    assert document["commands"][0].startswith("qbench speed --model tiny-cobra")
    assert document["environment"]["torch"] and document["environment"]["device"] == "cpu"
    assert document["copy_bandwidth_gbs"] > 0
    rows = document["rows"]
    assert [list(row) for row in rows] == [ROW_FIELDS] * len(rows)
    points = {(r["model"], r["visual_tokens"], r["batch"], r["engine"]) for r in rows}
    assert len(rows) == len(points) == 3 * 2 * 2
    assert {r["visual_tokens"] for r in rows} == {16, 36}  # by resolution, and by queries for Q-Mamba
    assert pd.read_csv(out / "speed.csv").shape == (len(rows), len(ROW_FIELDS))


def test_every_measure_is_positive(sweep):
    _, document, _ = sweep
    for row in document["rows"]:
        assert row["status"] == "ok", row["error"]
        for field in TIMES:
            assert row[field] > 0, (row["model"], field)
        assert row["ttft_ms"] >= row["vision_ms"] + row["projector_ms"] + row["prefill_ms"]
        assert row["kernel_path"].startswith("pytorch")
        assert row["peak_mem_gib"] is None  # CPU: no device allocator to ask


def test_the_kv_cache_grows_with_the_prompt_and_the_mamba_state_does_not(sweep):
    _, document, _ = sweep
    state = {(r["model"], r["visual_tokens"]): r["state_gib"] for r in document["rows"] if r["batch"] == 1}
    assert state["tiny-llava", 36] > state["tiny-llava", 16]
    assert state["tiny-cobra", 36] == state["tiny-cobra", 16]


def test_an_out_of_memory_point_is_a_row_and_the_sweep_goes_on(tmp_path):
    result, document = speed(tmp_path, "--model", "tiny-cobra", "--batch", str(10**13) + ",1")
    assert result.exit_code == 0, result.output
    oom, ok = document["rows"]
    assert oom["status"] == "oom" and "memory" in oom["error"] and oom["decode_tokens_per_s"] is None
    assert ok["status"] == "ok" and ok["decode_tokens_per_s"] > 0


def test_a_second_sweep_into_the_same_folder_keeps_what_was_measured(tmp_path):
    _, first = speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16")
    result, second = speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16", "--batch", "1,2")
    assert result.exit_code == 0, result.output
    assert second["rows"][0] == first["rows"][0]  # kept, not measured again
    assert [row["batch"] for row in second["rows"]] == [1, 2]
    assert len(second["commands"]) == 2 and "--batch 1,2" in second["commands"][1]


def test_a_point_asked_with_other_repeats_is_measured_again_and_its_row_replaced(tmp_path):
    speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16,36")
    again = runner.invoke(app, ["speed", "--model", "tiny-cobra", "--tokens", "16", *COMMON, "--repeats", "2",
                                "--output", str(tmp_path)])
    assert again.exit_code == 0, again.output
    document = json.loads((tmp_path / "speed.json").read_text())
    assert [(row["visual_tokens"], row["repeats"]) for row in document["rows"]] == [(16, 2), (36, 1)]
    assert len(document["commands"]) == 2 and "--repeats 2" in document["commands"][1]


def test_a_sweep_refuses_to_join_results_from_another_machine(tmp_path):
    speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16")
    document = json.loads((tmp_path / "speed.json").read_text())
    document["environment"]["torch"] = "1.0"
    (tmp_path / "speed.json").write_text(json.dumps(document))
    result, _ = speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16", "--batch", "2")
    assert result.exit_code == 2
    assert "was measured with another torch" in " ".join(result.output.split())


@pytest.mark.parametrize("args, message", [
    (["--engine", "graph"], "need --device cuda"),
    (["--model", "gpt-5"], "unknown model 'gpt-5'"),
    (["--engine", "beam"], "unknown engine 'beam'"),
    (["--engine", "eager", "--tokens", "50"], "not a square grid"),
])
def test_bad_requests_are_refused_before_anything_runs(tmp_path, args, message):
    base = ["speed", "--model", "tiny-cobra", "--device", "cpu", "--output", str(tmp_path)]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "speed.json").exists()
