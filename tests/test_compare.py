import csv
import json

import pytest
from typer.testing import CliRunner

from qbench.cli import app


def write_run(folder, scores, engine="generate", question_ids=None):
    folder.mkdir(parents=True)
    ids = question_ids or [str(i) for i in range(len(scores))]
    rows = [{"task": "gqa", "doc_id": i, "question_id": q, "prompt": f"q{i}", "answer": "yes" if s else "no",
             "target": ["yes"], "metric": "exact_match", "score": float(s), "error": None}
            for i, (q, s) in enumerate(zip(ids, scores))]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({"model": "m", "engine": engine, "metrics": {}}))
    return folder


def compare(*args):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def test_compare_gives_the_known_difference_verdict_and_disagreeing_samples(tmp_path):
    a = write_run(tmp_path / "a", [1] * 60 + [0] * 40)  # 0.60
    b = write_run(tmp_path / "b", [0] * 20 + [1] * 30 + [0] * 50)  # 0.30; A right alone on 30 samples, B on none
    result = compare(a, b, "--json", "--disagreements", tmp_path / "d.csv")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)["tasks"]["gqa"]
    assert found["difference"] == pytest.approx(0.3) and found["verdict"] == "A > B" and found["p"] < 1e-4
    assert found["test"] == "exact McNemar" and found["ci"][0] > 0.15
    with (tmp_path / "d.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 30
    same = compare(a, a)
    assert same.exit_code == 0 and "no detectable difference at n=100" in same.output


def test_compare_refuses_different_samples_and_warns_on_provenance(tmp_path):
    a = write_run(tmp_path / "a", [1, 0, 1])
    other = write_run(tmp_path / "b", [1, 0, 1], question_ids=["0", "1", "7"])
    refused = compare(a, other)
    assert refused.exit_code == 2 and "error:" in refused.output and "different samples" in refused.output
    plain = write_run(tmp_path / "c", [1, 0, 1], engine="answering")
    warned = compare(a, plain)
    assert warned.exit_code == 0 and "warning:" in warned.output and "engine" in warned.output
