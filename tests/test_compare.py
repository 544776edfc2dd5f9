"""`qbench compare`: paired differences in percentage points, their interval, p-value and verdict from one test;
runs that cannot be paired, or rows that cannot be trusted, are refused with one line naming the file."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from qbench import compare as comparing
from qbench.cli import app
from qbench.runs import read_run
from run_folders import sample_rows, write_rows, write_run


def compare(*args):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def refused(result, *phrases):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_compare_gives_the_known_difference_verdict_and_disagreeing_samples(tmp_path):
    a = write_run(tmp_path / "a", {"gqa": [1] * 60 + [0] * 40})  # 60%
    b = write_run(tmp_path / "b", {"gqa": [0] * 20 + [1] * 30 + [0] * 50})  # 30%; A right alone on 30 samples
    result = compare(a, b, "--json", "--disagreements", tmp_path / "d.csv")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["unit"] == "percentage points"
    gqa = found["tasks"]["gqa"]
    assert gqa["difference"] == pytest.approx(30.0) and gqa["verdict"] == "A > B" and gqa["ci"][0] > 15
    assert gqa["test"] == "paired bootstrap" and gqa["p"] == pytest.approx(0.0005) and gqa["p_text"] == "p < 0.0005"
    with (tmp_path / "d.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 30
    same = compare(a, a)
    assert same.exit_code == 0 and "A - B = +0.0 points" in same.output and "no detectable difference at n=100" in \
        same.output


def test_comparing_a_with_two_runs_keeps_both_disagreement_files(tmp_path):
    a = write_run(tmp_path / "a", {"gqa": [1] * 60 + [0] * 40})
    b = write_run(tmp_path / "b", {"gqa": [0] * 100})
    c = write_run(tmp_path / "c", {"gqa": [1] * 100})
    assert compare(a, b).exit_code == 0 and compare(a, c).exit_code == 0
    rows = {}
    for other in ("b", "c"):
        with (a / f"disagreements_with_{other}.csv").open() as handle:
            rows[other] = len(list(csv.DictReader(handle)))
    assert rows == {"b": 60, "c": 40}


def test_compare_refuses_different_samples_and_warns_on_provenance_on_stderr(tmp_path):
    a = write_run(tmp_path / "a", {"gqa": [1, 0, 1]})
    other = write_run(tmp_path / "b", {}, sample_rows("gqa", [1, 0, 1], question_ids=["0", "1", "7"]))
    refused(compare(a, other), "different samples", "1 only in A, 1 only in B")
    plain = write_run(tmp_path / "c", {"gqa": [1, 0, 1]}, engine="plain")
    warned = compare(a, plain)
    assert warned.exit_code == 0 and "warning: the runs differ in engine" in warned.output
    as_json = compare(a, plain, "--json")
    assert as_json.exit_code == 0 and "warning:" in as_json.stderr and "warning" not in as_json.stdout
    json.loads(as_json.stdout)  # nothing but JSON on stdout


# --- issue 25, case 5: rows a verdict cannot rest on --------------------------------------------------------------
def test_duplicate_question_ids_are_refused_not_collapsed(tmp_path):
    """Appending a run's rows again with score 1 used to flip A < B into A > B (the last row of an id won)."""
    a = write_run(tmp_path / "a", {"gqa": [0] * 10})
    b = write_run(tmp_path / "b", {"gqa": [1] * 5 + [0] * 5})
    with (a / "samples.jsonl").open("a") as handle:
        handle.write("".join(json.dumps({**row, "score": 1.0}) + "\n" for row in sample_rows("gqa", [0] * 10)))
    refused(compare(a, b), f"{a / 'samples.jsonl'} line 11 repeats the sample gqa 0")


@pytest.mark.parametrize("score,shown", [(float("nan"), "nan"), ("1", "'1'"), (True, "True"), (10 ** 401, "1000")])
def test_a_score_that_is_not_a_finite_number_is_refused_naming_the_file(tmp_path, score, shown):
    a = write_run(tmp_path / "a", {"gqa": [1, 0]})
    rows = sample_rows("gqa", [1, 0])
    rows[1]["score"] = score
    write_rows(a, rows)
    refused(compare(a, a), f"{a / 'samples.jsonl'} line 2 has score {shown}", "not a finite number")


def test_an_error_of_compare_json_goes_to_stderr_and_stdout_stays_empty(tmp_path):
    a = write_run(tmp_path / "a", {"gqa": [1] * 10})
    result = compare(a, tmp_path / "nowhere", "--json")
    assert result.exit_code == 2 and result.stdout == "" and result.stderr.startswith("error:")


def test_all_nan_scores_are_refused(tmp_path):
    rows = [{**row, "score": float("nan")} for row in sample_rows("gqa", [0, 0])]
    a = write_run(tmp_path / "a", {}, rows, metrics={"gqa": {"exact_match": 0.0}})
    refused(compare(a, a), "line 1 has score nan")
    b = write_run(tmp_path / "b", {}, rows)  # the summary's own NaN is named first
    refused(compare(b, b), f"{b / 'summary.json'} has metrics.gqa.exact_match = nan, not a finite number")


def test_two_empty_runs_are_refused(tmp_path):
    a, b = write_run(tmp_path / "a", {}, []), write_run(tmp_path / "b", {}, [])
    refused(compare(a, b), f"{a / 'samples.jsonl'} holds no samples")


def test_rows_from_before_the_metric_column_take_the_summarys_first_metric(tmp_path):
    a = write_run(tmp_path / "a", {"gqa": [1] * 8})
    b = write_run(tmp_path / "b", {}, [{k: v for k, v in row.items() if k != "metric"}
                                       for row in sample_rows("gqa", [0] * 8)])
    result = compare(a, b, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tasks"]["gqa"]["metric"] == "exact_match"


def test_verdict_and_p_value_come_from_the_same_test(tmp_path):
    """At n = 8 with A wrong where B is right on 4 questions, exact McNemar gave p = 0.0625 beside "A < B"."""
    a = write_run(tmp_path / "a", {"gqa": [0] * 4 + [1] * 4})
    b = write_run(tmp_path / "b", {"gqa": [1] * 8})
    found = json.loads(compare(a, b, "--json").stdout)["tasks"]["gqa"]
    assert found["verdict"] == "A < B" and found["p"] < 0.05 and found["ci"][1] < 0
    rng = np.random.default_rng(5)
    for trial in range(40):  # whatever the data, the interval excludes 0 exactly when p < 0.05
        n = int(rng.integers(5, 60))
        rows_a = sample_rows("t", list(rng.random(n) < 0.5))
        rows_b = sample_rows("t", list(rng.random(n) < rng.uniform(0.2, 0.8)))
        found = comparing.compare_task(rows_a, rows_b, "exact_match")
        assert (found["p"] < 0.05) == (found["verdict"] != f"no detectable difference at n={n}"), found


def test_a_mini_generator_change_is_explained_in_one_line(tmp_path):
    data = {"mini_gqa": {"source": "local", "hub_id": "mini/GQA", "fingerprint": "a"}}
    a = write_run(tmp_path / "a", {"mini_gqa": [1, 0]}, data=data)
    b = write_run(tmp_path / "b", {}, sample_rows("mini_gqa", [1, 0], question_ids=["5", "6"]),
                  data={"mini_gqa": {**data["mini_gqa"], "fingerprint": "b", "generator": "qbench.mini/2"}})
    refused(compare(a, b), "2 only in A, 2 only in B", "A's mini data was generated by unrecorded and B's by "
                                                        "qbench.mini/2", "the generator changed between the runs")


def test_the_reader_names_what_is_not_a_run(tmp_path):
    refused(compare(tmp_path / "nowhere", tmp_path), f"{tmp_path / 'nowhere'} is not a folder")
    a = write_run(tmp_path / "a", {"gqa": [1]})
    (a / "summary.json").write_text('{"schema": "qbench.run/9"}')
    refused(compare(a, a), f"{a / 'summary.json'} has schema 'qbench.run/9'; this qbench reads qbench.run/1")
    b = write_run(tmp_path / "b", {"gqa": [1, 0]})
    (b / "samples.jsonl").write_text((b / "samples.jsonl").read_text()[:-20])  # cut short
    refused(compare(b, b), f"{b / 'samples.jsonl'} line 2 is not JSON")
    assert read_run(write_run(tmp_path / "c", {"gqa": [1]})).rows[0]["image"] is None
