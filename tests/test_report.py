"""`qbench report`: tables and figures from result files in the schemas the suites, the speed sweep and the
ablation lab write. The results here are fixtures this file writes itself."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from qbench.cli import app
from qbench.presets import get_preset
from qbench.report import FIGURES, SkippedResult, build_report, collect

SPEED_ROWS = [  # model, engine, visual tokens, batch, e2e tokens/s, peak GiB
    ("cobra-3b", "eager", 196, 1, 24.0, 6.1), ("cobra-3b", "eager", 729, 1, 23.0, 6.2),
    ("cobra-3b", "graph", 729, 1, 240.0, 6.2), ("cobra-3b", "eager", 729, 8, 150.0, 7.0),
    ("llava-1.5-7b", "eager", 196, 1, 30.0, 14.0), ("llava-1.5-7b", "eager", 729, 1, 27.5, 14.5),
    ("llava-1.5-7b", "graph", 729, 1, 80.0, 14.5), ("llava-1.5-7b", "eager", 729, 8, 120.0, 20.0),
]


SCALE = {"cobra-3b": (729, 0.02, 286.0), "llava-1.5-7b": (576, 0.32, 140.0)}  # tokens/image, state GiB, decode


def scale_rows() -> list[dict]:
    """A long-context sweep (1, 4, 16 images at batch 1) and largest-batch searches, as `make speed-scale` writes."""
    rows = []
    for model, (tokens, state, rate) in SCALE.items():
        grows = model.startswith("llava")
        for images in (1, 4, 16):
            rows.append({**speed_row(model, "graph-nocompile", tokens * images, 1, rate * 0.8, 7.0 + images),
                         "images": images, "new_tokens": 64, "ttft_ms": 50.0 * images ** (1.5 if grows else 1),
                         "decode_tokens_per_s": rate / (images ** 0.2 if grows else 1),
                         "state_gib": state * (images if grows else 1)})
    for model, images, batch, found, rate, e2e in (("llava-1.5-7b", 1, 352, "largest", 9000.0, 4000.0),
                                                   ("llava-1.5-7b", 16, 24, "largest", 713.0, 125.0),
                                                   ("cobra-3b", 1, 4096, "limit, states copied", 37279.0, None)):
        rows.append({**speed_row(model, "graph-nocompile", SCALE[model][0] * images, batch, e2e or 0.0, 100.0),
                     "images": images, "new_tokens": 64, "batch_search": found, "largest_batch": batch,
                     "decode_tokens_per_s": rate, "e2e_tokens_per_s": e2e})
    return rows


def write_json(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def write_run(results: Path, model: str, suite: str, metrics: dict, when: str, limit: int | None = None) -> Path:
    return write_json(results / "runs" / f"{model}__{suite}__{when}" / "summary.json", {
        "schema": "qbench.run/1", "model": model, "suite": suite, "spec": get_preset(model).to_dict(),
        "checkpoint": {"source": "random", "sha256": None}, "metrics": metrics, "variants": {},
        "n_samples": {task: 20 for task in metrics}, "errors": 0, "samples_per_s": 3.0, "device": "cpu",
        "dtype": "float32", "max_new_tokens": 16, "limit": limit, "versions": {}, "started": when, "finished": when})


def speed_row(model: str, engine: str, tokens: int, batch: int, rate: float, peak: float) -> dict:
    backbone = get_preset(model).backbone.kind
    return {"model": model, "backbone": backbone, "projector": get_preset(model).projector.kind,
            "visual_tokens": tokens, "batch": batch, "engine": engine, "status": "ok", "error": None,
            "new_tokens": 256, "prompt_tokens": tokens + 20, "dtype": "bfloat16", "device": "cuda",
            "kernel_path": "torch", "vision_ms": 20.0, "projector_ms": 2.0, "prefill_ms": 40.0, "ttft_ms": 62.0,
            "decode_tokens_per_s": rate * 1.1, "e2e_tokens_per_s": rate, "peak_mem_gib": peak, "weights_gib": 5.5,
            "state_gib": 0.1, "bytes_per_token": 5.5e9, "roofline_tokens_per_s": 530.0,
            "roofline_share": rate * 1.1 / 530.0, "repeats": 3}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder with two suites' runs (one re-run later), a speed sweep with an OOM row, an ablation,
    and three files the report must skip: broken JSON, an older run schema, a sweep row without a model."""
    root = tmp_path / "results"
    write_run(root, "cobra-3b", "mini", {"mini_vqav2": {"exact_match": 0.40}, "mini_pope": {
        "pope_accuracy": 0.70, "pope_f1_score": 0.6}}, "2026-11-20T10:00:00")
    write_run(root, "cobra-3b", "mini", {"mini_vqav2": {"exact_match": 0.45}}, "2026-11-21T10:00:00")
    write_run(root, "llava-1.5-7b", "vqa", {"vqav2_val": {"exact_match,none": 0.781, "exact_match_stderr,none": "N/A"},
                                            "pope_adv": {"pope_accuracy": 0.80}, "pope_pop": {"pope_accuracy": 0.90}},
              "2026-11-21T12:00:00")
    write_run(root, "llava-1.5-7b", "lite", {"vqav2_val_lite": {"exact_match": 0.70}}, "2026-11-21T13:00:00", limit=50)
    rows = [speed_row(*row) for row in SPEED_ROWS]
    rows.append({**speed_row("llava-1.5-7b", "eager", 729, 64, 0.0, 0.0), "status": "oom",
                 "e2e_tokens_per_s": None, "peak_mem_gib": None, "error": "CUDA out of memory"})
    write_json(root / "speed" / "h100_2026-11-22" / "speed.json", {
        "schema": "qbench.speed/1", "commands": ["qbench speed"], "created": "2026-11-22T08:00:00",
        "environment": {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11"}, "copy_bandwidth_gbs": 2938.0,
        "rows": rows})
    write_json(root / "speed" / "h200_scale" / "speed.json", {
        "schema": "qbench.speed/1", "commands": ["qbench speed --images 1,4,16"], "created": "2026-12-03T09:00:00",
        "environment": {"gpu": "NVIDIA H200", "torch": "2.11"}, "copy_bandwidth_gbs": 4258.0, "rows": scale_rows(),
        "searches": []})
    write_json(root / "ablation" / "lab" / "ablation.json", {
        "schema": "qbench.ablation/1", "name": "lab", "budget": {"steps": 300, "batch": 16, "lr": 1e-3, "seed": 0},
        "rows": [{"projector": p, "backbone": b, "queries": q, "visual_tokens": q or 64, "task": "mini_gqa",
                  "metric": "exact_match", "value": v, "chance": 0.25, "decode_tokens_per_s": 100.0,
                  "checkpoint": f"ckpt/{p}-{b}"}
                 for p, q, b, v in (("mlp", None, "mamba", 0.61), ("mlp", None, "llama", 0.58),
                                    ("qmamba", 16, "mamba", 0.66), ("qmamba", 16, "llama", 0.52))]})
    (root / "runs" / "broken__mini__x").mkdir(parents=True)
    (root / "runs" / "broken__mini__x" / "summary.json").write_text('{"schema": "qbench.run/1", "model": ')
    old = write_run(root, "ml-mamba-2.7b", "mini", {"mini_gqa": {"exact_match": 0.3}}, "2026-01-01T00:00:00")
    old.write_text(old.read_text().replace("qbench.run/1", "qbench.run/0"))
    write_json(root / "speed" / "a100_old" / "speed.json", {"schema": "qbench.speed/1", "rows": [{"engine": "eager"}]})
    return root


def build(results: Path, out: Path) -> list[str]:
    """Build the report and return the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_report(results, out)
    return [str(w.message) for w in caught if issubclass(w.category, SkippedResult)]


def table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / f"{name}.csv")


def test_broken_and_older_files_are_skipped_with_a_warning_naming_them(results: Path) -> None:
    with pytest.warns(SkippedResult) as caught:
        collected = collect(results)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 3
    assert "runs/broken__mini__x/summary.json: cannot be read as JSON" in messages[0]
    assert "runs/ml-mamba-2.7b__mini__2026-01-01T00:00:00/summary.json: has schema 'qbench.run/0'" in messages[1]
    assert "speed/a100_old/speed.json: rows[0] has no 'model'" in messages[2]
    assert "ml-mamba-2.7b" not in set(collected.runs["model"])  # the rest is still read
    assert len(collected.speed) == len(SPEED_ROWS) + 1 + len(scale_rows()) and len(collected.ablation) == 4
    assert set(collected.speed["images"]) == {1, 4, 16}  # rows from before multi-image prompts: one image


def test_accuracy_table_puts_measured_mini_and_reported_numbers_in_marked_rows(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    build(results, out)
    accuracy = table(out, "accuracy").set_index(["model", "numbers"])
    assert accuracy.loc[("cobra-3b", "measured (mini)"), "VQAv2"] == pytest.approx(45.0)  # the newer run wins
    assert accuracy.loc[("cobra-3b", "measured (mini)"), "POPE"] == pytest.approx(70.0)
    assert accuracy.loc[("cobra-3b", "measured (mini)"), "from"] == "mini (n=40)"  # 20 VQAv2 + 20 POPE samples
    assert accuracy.loc[("cobra-3b", "reported"), "VQAv2"] == pytest.approx(77.8)
    assert ("cobra-3b", "measured") not in accuracy.index  # mini numbers never pose as the full benchmark
    assert accuracy.loc[("llava-1.5-7b", "measured"), "VQAv2"] == pytest.approx(78.1)
    assert accuracy.loc[("llava-1.5-7b", "measured"), "POPE"] == pytest.approx(85.0)  # mean of two splits
    assert accuracy.loc[("llava-1.5-7b", "reported"), "POPE"] == pytest.approx(85.9)
    # A Lite subset, cut to its first 50 samples, is marked as such, not merged with the whole benchmark.
    assert accuracy.loc[("llava-1.5-7b", "measured (lite, limit 50)"), "VQAv2"] == pytest.approx(70.0)
    markdown = (out / "tables" / "accuracy.md").read_text()
    assert "| cobra-3b" in markdown and "measured (mini)" in markdown and "45.0" in markdown
    latex = (out / "tables" / "accuracy.tex").read_text()
    assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex and "77.8" in latex


def test_speed_tables_hold_each_configuration_and_the_same_engine_ratio(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    build(results, out)
    speed = table(out, "speed_full")
    assert len(speed) == len(SPEED_ROWS) + 1 + len(scale_rows())
    row = speed[(speed["model"] == "cobra-3b") & (speed["engine"] == "graph")].iloc[0]
    assert (row["visual tokens"], row["batch"], row["tokens/s"]) == (729, 1, 240.0)
    assert row["roofline share"] == pytest.approx(240.0 * 1.1 / 530.0)
    assert speed[speed["status"] == "oom"]["batch"].tolist() == [64]
    ratio = table(out, "speed_ratio").set_index(["numbers", "engine", "visual tokens", "Mamba model"])["ratio"]
    assert ratio[("measured", "graph", 729, "cobra-3b")] == pytest.approx(3.0)
    assert ratio[("measured", "eager", 196, "cobra-3b")] == pytest.approx(0.8)
    reported = ratio.xs("reported", level="numbers")
    assert reported.xs("cobra-3b", level="Mamba model").iloc[0] == pytest.approx(166.47 / 40.89)


def test_the_speed_summary_is_one_readable_row_per_model_and_engine(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    build(results, out)
    summary = table(out, "speed").set_index(["device", "model", "weights", "engine", "new tokens"])
    assert len(summary) == 6  # H100: cobra and llava, eager and graph; H200: both under graph-nocompile
    llava = summary.loc[("NVIDIA H200", "llava-1.5-7b", "random", "graph-nocompile", 64)]
    assert llava["visual tokens"] == "576 → 9,216" and llava["state GiB"] == "0.32 → 5.12"
    assert llava["largest batch"] == "352 @ 576; 24 @ 9,216"
    assert llava["decode tokens/s at largest"] == "9,000 @ 576; 713 @ 9,216"
    cobra = summary.loc[("NVIDIA H200", "cobra-3b", "random", "graph-nocompile", 64)]
    assert cobra["largest batch"] == "≥4,096 @ 729" and pd.isna(cobra["tokens/s at largest"])  # states copied
    assert summary.loc[("NVIDIA H100 80GB HBM3", "llava-1.5-7b", "random", "eager", 256), "visual tokens"] == \
        "196 → 729"
    markdown = (out / "tables" / "speed.md").read_text()
    assert len(markdown.splitlines()) == 2 + 6 and "≥4,096 @ 729" in markdown
    assert "[full csv](tables/speed_full.csv)" in (out / "README.md").read_text()


def test_a_hybrid_is_neither_side_of_the_mamba_transformer_ratio_and_is_in_the_speed_figures(
        results: Path, tmp_path: Path) -> None:
    from qbench.report.tables import is_mamba, is_transformer, llm_state

    hybrid = "cobra-zamba2-2.7b"
    assert [llm_state(hybrid, None), llm_state("cobra-3b", "mamba"), llm_state("x", "llama")] == [
        "hybrid", "recurrent", "attention"]
    assert not is_mamba(hybrid, None) and not is_transformer(hybrid, None) and llm_state("x", None) is None
    write_json(results / "speed" / "h100_hybrid" / "speed.json", {
        "schema": "qbench.speed/1", "commands": ["qbench speed"], "created": "2026-12-06T08:00:00",
        "environment": {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11"}, "copy_bandwidth_gbs": 2938.0,
        "rows": [speed_row(hybrid, "graph", 729, 1, 200.0, 7.0)]})
    out = tmp_path / "report"
    build(results, out)
    ratio = table(out, "speed_ratio")
    assert hybrid not in set(ratio["Mamba model"]) | set(ratio["Transformer"])
    assert set(ratio[ratio["numbers"] == "measured"]["Transformer"]) == {"llava-1.5-7b"}
    assert hybrid in set(table(out, "speed")["model"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedResult)
        _, data = FIGURES["tokens_per_s"].draw(collect(results))
    assert hybrid in set(data["model"])


def test_a_sweep_at_another_count_of_new_tokens_gets_its_own_figure_unless_it_has_one_point(
        results: Path, tmp_path: Path) -> None:
    from qbench.report.figures import figures_of

    hybrid, rows = "cobra-zamba2-2.7b", []
    for tokens in (256, 729, 2916):
        rows += [{**speed_row(model, "graph", tokens, 1, 150.0, 8.0), "new_tokens": 64} for model in (hybrid, "cobra-3b")]
    rows.append({**speed_row(hybrid, "graph", 729, 1, 150.0, 8.0), "new_tokens": 16})  # one point: no figure
    write_json(results / "speed" / "h100_hybrid" / "speed.json", {
        "schema": "qbench.speed/1", "commands": ["qbench speed"], "created": "2026-12-06T08:00:00",
        "environment": {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11"}, "copy_bandwidth_gbs": 2938.0, "rows": rows})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedResult)
        found = {name: drawer for name, _, _, drawer in figures_of(collect(results)) if name.startswith("tokens_per")}
    h100 = "tokens_per_s_nvidia-h100-80gb-hbm3"
    assert set(found) == {h100, f"{h100}_64-new-tokens", "tokens_per_s_nvidia-h200"}
    assert hybrid not in set(found[h100]()[1]["model"])
    _, data = found[f"{h100}_64-new-tokens"]()
    assert set(data["model"]) == {hybrid, "cobra-3b"} and set(data["new_tokens"]) == {64}


def test_crossovers_are_found_on_log_axes() -> None:
    from qbench.report.figures import crossover_points

    rising, flat = pd.Series([1.0, 4.0, 16.0], index=[1, 4, 16]), pd.Series([2.0, 2.0], index=[1, 16])
    (x, y), = crossover_points(rising, flat)
    assert x == pytest.approx(2.0) and y == pytest.approx(2.0)
    assert crossover_points(rising, flat * 100) == []


def test_ablation_table_is_projector_by_backbone(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    build(results, out)
    ablation = table(out, "ablation").set_index("projector")
    assert ablation.loc["mlp", "mamba"] == pytest.approx(61.0)  # percent, as every table
    assert ablation.loc["qmamba (16 queries)", "llama"] == pytest.approx(52.0)
    assert ablation.loc["qmamba (16 queries)", "visual tokens"] == 16


def test_every_figure_is_a_non_empty_image_and_the_readme_shows_it(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    build(results, out)
    readme = (out / "README.md").read_text()
    h100, h200 = "nvidia-h100-80gb-hbm3", "nvidia-h200"  # one device per speed figure
    for name in (f"tokens_per_s_{h100}", f"tokens_per_s_{h200}", f"memory_{h100}", f"long_context_{h200}",
                 f"full_batch_{h200}", f"ttft_{h100}", "accuracy", "ablation_lab", f"speed_ratio_{h100}"):
        with Image.open(out / "figures" / f"{name}.png") as image:
            assert image.width > 200 and image.height > 200
            assert len(np.unique(np.asarray(image.convert("L")))) > 2  # something is drawn, not a blank canvas
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        assert f"](figures/{name}.png)" in readme
    assert "](tables/accuracy.md)" in readme and "speed/h100_2026-11-22/speed.json" in readme
    assert "`runs/broken__mini__x/summary.json`: cannot be read as JSON" in readme


def test_report_is_reproducible_and_says_what_is_missing(results: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    build(results, first)
    build(results, second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    # Without speed sweeps and ablations: the accuracy parts are still made, the rest says what it needs.
    for folder in ("speed", "ablation"):
        for path in (results / folder).rglob("*.json"):
            path.unlink()
    build(results, first)
    readme = (first / "README.md").read_text()
    assert "no speed sweep with successful rows under results/speed/" in readme
    assert "no ablation table under results/ablation/" in readme
    assert not (first / "figures" / "tokens_per_s_nvidia-h200.png").exists()  # the stale figure is gone
    assert (first / "figures" / "accuracy.png").exists() and (first / "tables" / "speed_ratio.csv").exists()


def test_cli_report_writes_the_report_and_names_skipped_files(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    outcome = CliRunner().invoke(app, ["report", "--results", str(results), "--output", str(out)])
    assert outcome.exit_code == 0, outcome.output
    assert "summary.json" in outcome.output and "skipped" in outcome.output
    assert (out / "README.md").exists()
    missing = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "nowhere"), "--output", str(out)])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


def test_report_from_an_empty_results_folder_shows_the_papers_numbers_and_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    outcome = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "results"), "--output",
                                       str(tmp_path / "r")])
    assert outcome.exit_code == 0, outcome.output
    accuracy = table(tmp_path / "r", "accuracy")
    assert set(accuracy["numbers"]) == {"reported"} and len(accuracy) == 4
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "no speed sweep with successful rows" in readme and "](figures/accuracy.png)" in readme



def test_training_table_reads_what_qbench_train_writes(tmp_path: Path) -> None:
    from qbench.ablate import tiny_combo
    from qbench.train import Example, TrainConfig, train

    examples = [Example(Image.new("RGB", (112, 112), c), "What color is the image?", c) for c in ("red", "blue")]
    run = train(tiny_combo("mlp", "llama"), examples, tmp_path / "run", TrainConfig(steps=2, batch_size=2),
                device="cpu", show_progress=False)
    record = json.loads((run / "train.json").read_text())
    write_json(tmp_path / "results" / "train" / "cpu" / "mlp-llama.json", record)
    write_json(tmp_path / "results" / "train" / "cpu" / "mlp-llama-oom.json",
               {**record, "finished": False, "error": "CUDA out of memory at step 1"})
    build(tmp_path / "results", tmp_path / "report")
    assert not (tmp_path / "report" / "tables" / "training.csv").exists()  # CPU trainings: in their own table
    rows = table(tmp_path / "report", "training_cpu").set_index("status")
    assert set(rows.index) == {"finished", "CUDA out of memory at step 1"}
    assert rows.loc["finished", "device"] == "cpu" and rows.loc["finished", "sharding"] == "ddp"
    assert rows.loc["finished", "processes"] == 1 and rows.loc["finished", "batch"] == 2
    assert rows.loc["finished", "s/step"] == pytest.approx(record["median_step_seconds"])


def test_long_context_lines_follow_one_route_per_model(results: Path) -> None:
    """A sweep by images per prompt and one point by resolution (`--tokens 2304`): the figure's lines follow the
    images route, the resolution point is not joined into them."""
    scale = results / "speed" / "h200_scale" / "speed.json"
    doc = json.loads(scale.read_text())
    doc["rows"].append({**speed_row("llava-1.5-7b", "graph-nocompile", 2304, 1, 110.0, 15.8), "images": 1,
                        "new_tokens": 64, "ttft_ms": 89.0})
    scale.write_text(json.dumps(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedResult)
        _, drawn = FIGURES["long_context"].draw(collect(results))
    llava = drawn[drawn["model"] == "llava-1.5-7b"]
    assert sorted(llava["visual_tokens"]) == [576, 2304, 9216]
    assert list(llava.loc[llava["visual_tokens"] == 2304, "images"]) == [4]


def write_samples(run: Path, task: str, scores: list[float]) -> None:
    """samples.jsonl beside a run's summary: one right-or-wrong row per question."""
    rows = [{"task": task, "doc_id": i, "question_id": str(i), "prompt": "q", "answer": "yes" if s else "no",
             "target": ["yes"], "metric": "exact_match", "score": s, "error": None} for i, s in enumerate(scores)]
    (run.parent / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_scores_show_plus_minus_from_intervals_or_samples_and_same_sample_runs_are_compared(tmp_path: Path) -> None:
    root = tmp_path / "results"
    a = write_run(root, "cobra-3b", "mini", {"mini_vqav2": {"exact_match": 0.75}}, "2026-12-01T10:00:00")
    doc = json.loads(a.read_text())
    doc["intervals"] = {"mini_vqav2": {"exact_match": {"ci": [0.6, 0.9], "n": 40}}}
    a.write_text(json.dumps(doc))
    write_samples(a, "mini_vqav2", [1.0] * 30 + [0.0] * 10)
    b = write_run(root, "llava-1.5-7b", "mini", {"mini_vqav2": {"exact_match": 0.25}}, "2026-12-01T11:00:00")
    write_samples(b, "mini_vqav2", [0.0] * 30 + [1.0] * 10)  # an older summary: no intervals, samples only
    write_run(root, "q-mamba-3b", "mini", {"mini_vqav2": {"exact_match": 0.5}}, "2026-12-01T12:00:00")  # neither
    out = tmp_path / "report"
    build(root, out)
    accuracy = table(out, "accuracy").set_index(["model", "numbers"])
    assert accuracy.loc[("cobra-3b", "measured (mini)"), "VQAv2 ±"] == pytest.approx(15.0)
    computed = accuracy.loc[("llava-1.5-7b", "measured (mini)"), "VQAv2 ±"]
    assert 10 < computed < 18  # bootstrap of 10 right out of 40
    assert np.isnan(accuracy.loc[("q-mamba-3b", "measured (mini)"), "VQAv2 ±"])
    markdown = (out / "tables" / "accuracy.md").read_text()
    assert "75.0 ± 15.0" in markdown and "VQAv2 ±" not in markdown
    compared = table(out, "comparisons")  # q-mamba-3b has no samples.jsonl: not paired
    assert list(zip(compared["A"], compared["B"])) == [("cobra-3b (random, seed 0; cpu)",
                                                        "llava-1.5-7b (random, seed 0; cpu)")]
    assert compared["A - B"].iloc[0] == pytest.approx(50.0) and compared["verdict"].iloc[0] == "A > B"
    assert compared["test"].iloc[0] == "paired bootstrap" and compared["n"].iloc[0] == 40
    assert "Paired comparisons" in (out / "README.md").read_text()


def latex_problems(tex: str) -> list[str]:
    """What would stop pdflatex on a booktabs table, checked without LaTeX: characters outside ASCII (no glyph
    without extra packages), special characters not escaped, unbalanced braces or math, rows whose number of cells
    differs from the column format's."""
    import re

    problems = [f"non-ASCII {c!r}" for c in sorted(set(tex)) if not c.isascii()]
    body = re.sub(r"\\label\{[^}]*\}", "", tex)
    for special in "%#_&$^~":
        if special == "&":
            continue
        unescaped = re.findall(rf"(?<!\\){re.escape(special)}", body)
        if special == "$" and len(unescaped) % 2 == 0:
            continue
        if unescaped:
            problems.append(f"unescaped {special!r}")
    if body.count("{") - body.count("\\{") != body.count("}") - body.count("\\}"):
        problems.append("unbalanced braces")
    columns = len(re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1))
    for line in tex.splitlines():
        if line.rstrip().endswith("\\\\"):
            cells = len(re.findall(r"(?<!\\)&", line)) + 1
            if cells != columns:
                problems.append(f"{cells} cells in a {columns}-column row: {line[:60]}")
    return problems


def test_every_latex_table_escapes_what_latex_would_stop_on(results: Path, tmp_path: Path) -> None:
    """tables/accuracy.tex had an unescaped % in its caption. pdflatex is not installed here: the check is LaTeX-free
    (and runs pdflatex too where there is one)."""
    import shutil
    import subprocess

    out = tmp_path / "report"
    build(results, out)
    tables = sorted((out / "tables").glob("*.tex"))
    assert {t.stem for t in tables} >= {"accuracy", "speed", "speed_ratio", "ablation"}
    assert "Accuracy (\\%)" in (out / "tables" / "accuracy.tex").read_text()
    for tex in tables:
        assert latex_problems(tex.read_text()) == [], tex.name
    assert latex_problems("\\begin{tabular}{ll}\na & 50% \\\\\n\\end{tabular}") == ["unescaped '%'"]
    if shutil.which("pdflatex"):
        for tex in tables:
            document = tmp_path / f"{tex.stem}-doc.tex"
            document.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
                                + tex.read_text() + "\\end{document}\n")
            done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
                                  cwd=tmp_path, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout[-2000:]


def test_cpu_and_gpu_timings_never_share_a_table_or_a_figure(results: Path, tmp_path: Path) -> None:
    """A CPU tiny speed sweep among the GPU ones used to land in the H100/H200 tables and figures (the speed-ratio
    table gained a "cpu" row; tokens_per_s.png was titled "NVIDIA H100 80GB HBM3, cpu")."""
    rows = [{**speed_row(model, "eager", 16, 1, rate, 0.1), "device": "cpu"}
            for model, rate in (("tiny-cobra", 41.0), ("tiny-llava", 25.0))]
    write_json(results / "speed" / "cpu_2026-12-06" / "speed.json", {
        "schema": "qbench.speed/1", "commands": ["qbench speed"], "created": "2026-12-06T08:00:00",
        "environment": {"gpu": None, "device": "cpu", "torch": "2.11"}, "rows": rows})
    out = tmp_path / "report"
    build(results, out)
    for name in ("speed", "speed_ratio"):
        assert "cpu" not in set(table(out, name)["device"].astype(str))
        assert set(table(out, f"{name}_cpu")["device"]) == {"cpu"}
    assert "reported" not in set(table(out, "speed_ratio_cpu")["numbers"])  # the papers' GPU numbers stay apart
    assert (out / "figures" / "tokens_per_s_cpu.png").is_file()
    only = tmp_path / "only-h100"
    outcome = CliRunner().invoke(app, ["report", "--results", str(results), "--device", "H100", "--output", str(only)])
    assert outcome.exit_code == 0, outcome.output
    assert set(table(only, "speed")["device"]) == {"NVIDIA H100 80GB HBM3"}
    assert not (only / "tables" / "speed_cpu.csv").exists()


def test_the_report_writes_where_it_is_told_and_never_over_a_report_of_other_inputs(results: Path,
                                                                                    tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert CliRunner().invoke(app, ["report", "--results", str(results), "--output", str(out)]).exit_code == 0
    assert json.loads((out / "report.json").read_text())["request"]["results"] == str(results)
    other = CliRunner().invoke(app, ["report", "--results", str(results), "--device", "H200", "--output", str(out)])
    assert other.exit_code == 2 and "holds a report of other inputs (device None vs 'H200')" in \
        " ".join(other.output.split())
    again = CliRunner().invoke(app, ["report", "--results", str(results), "--output", str(out)])
    assert again.exit_code == 0  # the same inputs regenerate it
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    stranger = CliRunner().invoke(app, ["report", "--results", str(results), "--output", str(tmp_path / "notes")])
    assert stranger.exit_code == 2 and "holds files that no qbench report made (e.g. mine.txt)" in stranger.output
    runs = CliRunner().invoke(app, ["report", "--results", str(results), "--runs", str(results / "runs" / "nowhere"),
                                    "--output", str(tmp_path / "r2")])
    assert runs.exit_code == 2 and "--runs" in runs.output and "no summary.json there" in runs.output


def test_tracked_reads_only_what_git_tracks_and_runs_can_be_given(results: Path, tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(results), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "runs/cobra-3b__mini__2026-11-21T10:00:00")  # one run is the project's own
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one run")
    out = tmp_path / "tracked"
    made = CliRunner().invoke(app, ["report", "--results", str(results), "--tracked", "--output", str(out)])
    assert made.exit_code == 0, made.output
    assert set(table(out, "accuracy").query("numbers != 'reported'")["model"]) == {"cobra-3b"}
    given = tmp_path / "given"
    outcome = CliRunner().invoke(app, ["report", "--results", str(results), "--runs",
                                       str(results / "runs" / "llava-1.5-7b__vqa__2026-11-21T12:00:00"), "--output",
                                       str(given)])
    assert outcome.exit_code == 0, outcome.output
    assert set(table(given, "accuracy").query("numbers != 'reported'")["model"]) == {"llava-1.5-7b"}
