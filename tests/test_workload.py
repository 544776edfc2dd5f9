"""`qbench workload` as a user runs it on a CPU: tiny presets in fp32, where the answering engine's answers are
exactly today's path's (`VLM.generate`), with the time split into stages. No timing is asserted."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from qbench.cli import app
from qbench.engine.answering import STAGES

runner = CliRunner()
COMMON = ["--device", "cpu", "--dtype", "fp32", "--questions", "40", "--plain-questions", "12", "--plain-batch", "5",
          "--batch", "6", "--window", "4", "--encode-batch", "3", "--workers", "2"]


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    out = tmp_path_factory.mktemp("workload")
    result = runner.invoke(app, ["workload", "--model", "tiny-cobra,tiny-llava", "--stream", "vqa,vizwiz", *COMMON,
                                 "--output", str(out)])
    return result, out


def test_one_row_per_model_and_stream_with_identical_answers(workload):
    result, out = workload
    assert result.exit_code == 0, result.output
    document = json.loads((out / "workload.json").read_text())
    assert document["schema"] == "qbench.workload/1"
    assert document["commands"][0].startswith("qbench workload --model tiny-cobra,tiny-llava")
    assert document["environment"]["device"] == "cpu" and document["environment"]["torch"]
    rows = document["rows"]
    assert [(r["model"], r["stream"]) for r in rows] == [(m, s) for m in ("tiny-cobra", "tiny-llava")
                                                         for s in ("vqa", "vizwiz")]
    for row in rows:
        assert row["identical_share"] == 1.0  # fp32 on the CPU: exactly today's answers
        assert row["plain_questions"] == 12 and row["engine_name"] == "answering (eager decode)"
        assert all(row[f"engine_{stage}_s"] > 0 for stage in STAGES)
        assert sum(row[f"engine_{stage}_s"] for stage in STAGES) <= row["engine_seconds"]
        assert row["engine_answers_per_s"] > 0 and row["plain_answers_per_s"] > 0
    vqa, vizwiz = rows[0], rows[1]
    assert vqa["images"] < vqa["questions"] and vizwiz["images"] == vizwiz["questions"]  # shared images, or none
    assert vqa["suite_minutes"] > 0 and vizwiz["suite_minutes"] is None
    assert pd.read_csv(out / "workload.csv")[["model", "stream"]].values.tolist() == \
        [[r["model"], r["stream"]] for r in rows]


def test_an_unknown_stream_or_model_is_named(tmp_path):
    result = runner.invoke(app, ["workload", "--stream", "coco", *COMMON, "--output", str(tmp_path)])
    assert result.exit_code == 2 and "unknown stream 'coco'" in result.output and "vizwiz" in result.output
    result = runner.invoke(app, ["workload", "--model", "nope", *COMMON, "--output", str(tmp_path)])
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output
    assert not list(tmp_path.iterdir())


def test_the_work_of_each_stage_is_counted_and_its_flops_rate_given(tmp_path):
    """A stream whose every answer is 5 tokens, as a random-weight run's are (EOS may end one sooner here)."""
    result = runner.invoke(app, ["workload", "--model", "tiny-cobra", "--stream", "vqa", *COMMON, "--questions", "20",
                                 "--answer-tokens", "5", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "workload.json").read_text())
    row, = document["rows"]
    assert "--answer-tokens 5" in document["commands"][0] and row["mean_new_tokens"] == 5
    assert row["engine_images"] == row["images"] and row["engine_prefix_tokens"] % row["images"] == 0
    assert row["engine_question_tokens"] == row["mean_question_tokens"] * row["questions"]
    assert row["questions"] <= row["engine_answer_tokens"] <= 5 * row["questions"]
    assert all(row[f"engine_{stage}_tflops"] > 0 for stage in ("vision", "prefill", "question")) and row["engine_tflops"] > 0
    assert row["engine_mfu"] is None  # no peak known for a CPU


def test_peaks_are_known_per_card_and_dtype():
    from qbench.speed.flops import peak_flops

    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert peak_flops("NVIDIA H200", "fp32") == pytest.approx(66.9e12)
    assert peak_flops(None, "bf16") is None and peak_flops("NVIDIA A100-SXM4-80GB", "bf16") is None
