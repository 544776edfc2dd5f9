"""The report's tables: accuracy, speed, speed ratio, ablation and training, from the collected results.

Each table is a pandas frame written three ways: Markdown, LaTeX (booktabs) and CSV (full precision).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qbench import compare, stats
from qbench.backbones import BACKBONES
from qbench.presets import get_preset, preset_names
from qbench.registry import UnknownName
from qbench.report.collect import Results
from qbench.report.reported import (
    BENCHMARKS,
    PAPER_BASELINE,
    PAPER_NEW_TOKENS,
    REPORTED_ACCURACY,
    SPEED_SOURCE,
    benchmark_of,
    paper_speed_ratios,
)

MEASURED, REPORTED = "measured", "reported"


@dataclass
class Table:
    name: str
    title: str
    description: str
    frame: pd.DataFrame
    sources: list[str]
    formats: dict[str, str | Callable[[float], str]] = field(default_factory=dict)  # column -> how it is shown
    full: pd.DataFrame | None = None  # every row behind a summary table: written as <name>_full.csv only
    plusminus: dict[str, str] = field(default_factory=dict)  # value column -> its half-width column (CSV keeps both)
    intervals: dict[str, tuple[str, str]] = field(default_factory=dict)  # shown column -> its (lo, hi) columns

    def display(self) -> pd.DataFrame:
        """The frame as strings: numbers formatted per column ("score ± half-width" where the table has one, an
        interval "[lo, hi]" in place of its two columns), missing values as a dash. The CSV keeps the numbers."""
        shown = self.frame.astype(object).copy()
        for column in shown.columns:
            spec = self.formats.get(column, ".1f" if pd.api.types.is_float_dtype(self.frame[column]) else "")
            shown[column] = [cell(value, spec) for value in self.frame[column]]
        for column, half in self.plusminus.items():
            spec = self.formats.get(column, ".1f")
            shown[column] = [text if pd.isna(h) or text == "-" else f"{text} ± {format(h, spec)}"
                             for text, h in zip(shown[column], self.frame[half])]
        for column, (lo, hi) in self.intervals.items():
            spec = self.formats.get(lo, "+.1f")
            shown.insert(list(shown.columns).index(lo), column, [
                "-" if pd.isna(a) else f"[{format(a, spec)}, {format(b, spec)}]"
                for a, b in zip(self.frame[lo], self.frame[hi])])
        return shown.drop(columns=self.hidden())

    def hidden(self) -> list[str]:
        """Columns shown inside others (half-widths, interval bounds): in the CSV only."""
        return [*self.plusminus.values(), *(bound for pair in self.intervals.values() for bound in pair)]

    def alignment(self) -> list[str]:
        """Numbers to the right, text to the left."""
        shown = self.display()
        return ["right" if c in self.intervals or (c in self.frame and pd.api.types.is_numeric_dtype(self.frame[c]))
                else "left" for c in shown.columns]

    def markdown(self) -> str:
        return self.display().to_markdown(index=False, disable_numparse=True, colalign=self.alignment()) + "\n"

    def latex(self) -> str:
        """booktabs LaTeX that compiles: every cell, header and the caption escaped (latex_text)."""
        shown = self.display()
        shown = shown.map(latex_text).rename(columns=latex_text)
        return shown.to_latex(index=False, escape=False, caption=latex_text(self.title), label=f"tab:{self.name}",
                              column_format="".join(a[0] for a in self.alignment()))

    def write(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{self.name}.{ext}" for ext in ("md", "tex", "csv")]
        paths[0].write_text(self.markdown(), encoding="utf-8")
        paths[1].write_text(self.latex(), encoding="utf-8")
        self.frame.to_csv(paths[2], index=False, lineterminator="\n")
        if self.full is not None:
            paths.append(folder / f"{self.name}_full.csv")
            self.full.to_csv(paths[3], index=False, lineterminator="\n")
        return paths


# LaTeX's special characters, and the few symbols the tables use (as math, which every LaTeX has)
LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
         "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "→": r"$\rightarrow$",
         "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "−": "-", "–": "--", "—": "---", "<": r"$<$",
         ">": r"$>$"}


def latex_text(value: object) -> str:
    """Text as LaTeX typesets it literally: special characters escaped, the tables' symbols as math, anything else
    outside ASCII as '?' (pdflatex stops on characters it has no glyph for)."""
    return "".join(LATEX.get(c, c if c.isascii() else "?") for c in str(value))


def cell(value: object, spec: str | Callable[[float], str]) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if callable(spec):
        return spec(value)
    return format(value, spec) if spec else str(value)


def p_cell(p: float) -> str:
    """A p-value as the tables show it: '0.031', or '< 0.0005' at the bootstrap's resolution."""
    return stats.p_text(p).removeprefix("p = ").removeprefix("p ")


def model_order(models: object) -> list[str]:
    """Presets in their registry order first, then any other model (checkpoint folders) by name."""
    names = set(models)
    presets = [name for name in preset_names() if name in names]
    return presets + sorted(names - set(presets))


def llm_state(model: str, backbone: object) -> str | None:
    """How a model's LLM holds its decode state, from the row's backbone kind or else from its preset: 'recurrent'
    (Mamba), 'attention' (Transformer) or 'hybrid' (both); None for a backbone qbench does not know."""
    if not isinstance(backbone, str):
        try:
            backbone = get_preset(model).backbone.kind
        except UnknownName:
            return None
    return BACKBONES[backbone].state_kind() if backbone in BACKBONES else None


def is_mamba(model: str, backbone: object) -> bool:
    """A pure state-space LLM: one side of the Mamba / Transformer comparisons (a hybrid is neither side)."""
    return llm_state(model, backbone) == "recurrent"


def is_transformer(model: str, backbone: object) -> bool:
    """A pure attention LLM: the other side."""
    return llm_state(model, backbone) == "attention"


def sources_of(*frames: pd.DataFrame) -> list[str]:
    return sorted({source for frame in frames for source in frame["source"] if isinstance(source, str)})


# ---- accuracy -------------------------------------------------------------------------------------------------

def measured_label(variant: str, limit: object) -> str:
    """"measured", or what makes it not the paper's benchmark: "measured (mini)", "measured (lite, limit 50)"."""
    parts = ([variant] if variant else []) + ([f"limit {int(limit)}"] if pd.notna(limit) else [])
    return f"{MEASURED} ({', '.join(parts)})" if parts else MEASURED


RUN_KEY = ["model", "weights", "device"]  # what a measured row is of: rows differing in any never replace each other


def accuracy_scores(results: Results) -> pd.DataFrame:
    """Measured score (percent) per model x weights x device x benchmark x kind of measurement (full, mini, lite,
    limited), from the newest run of each task of a benchmark."""
    runs = results.runs.copy()
    found = [benchmark_of(task) for task in runs["task"]]
    runs["benchmark"] = [b.name if b else None for b, _ in found]
    runs["numbers"] = [measured_label(variant, limit) for (_, variant), limit in zip(found, runs["limit"])]
    # Each benchmark's headline metric; tasks of no known benchmark are left out.
    keep = [b is not None and b.metric == metric for (b, _), metric in zip(found, runs["metric"])]
    runs = runs[np.array(keep, dtype=bool)]
    runs = runs.sort_values(["finished", "source"]).drop_duplicates(RUN_KEY + ["task", "numbers"], keep="last")
    runs["half"] = 100 * (runs["ci_hi"] - runs["ci_lo"]) / 2
    grouped = runs.groupby([*RUN_KEY, "benchmark", "numbers"], as_index=False)
    return grouped.agg(value=("value", lambda v: 100 * v.mean()), half=("half", mean_half_width),
                       n_samples=("n_samples", "sum"),
                       suites=("suite", lambda s: sorted(set(s))),
                       sources=("source", lambda s: sorted(set(s))))


def mean_half_width(halves: pd.Series) -> float:
    """Half-width of the 95% interval of a mean of k independent tasks' scores: sqrt(sum of squares) / k (NaN when
    a task has none)."""
    return float(np.sqrt((halves ** 2).sum()) / len(halves)) if halves.notna().all() else np.nan


def plus(column: str) -> str:
    return f"{column} ±"


def accuracy_table(results: Results) -> Table:
    scores = accuracy_scores(results)
    columns = [b for b in BENCHMARKS if b in set(scores["benchmark"]) or any(
        b in r.scores for r in REPORTED_ACCURACY.values())]
    rows = []
    for model in model_order(set(scores["model"]) | set(REPORTED_ACCURACY)):
        mine = scores[scores["model"] == model]
        for (weights, device, label), kind in sorted(mine.groupby(["weights", "device", "numbers"]),
                                                     key=lambda group: (group[0][2] != MEASURED, group[0])):
            rows.append({"model": model, "weights": weights, "device": device, "numbers": label,
                         **dict(zip(kind["benchmark"], kind["value"])),
                         **dict(zip(map(plus, kind["benchmark"]), kind["half"])),
                         "from": f"{', '.join(sorted(set().union(*kind['suites'])))} "
                                 f"(n={int(kind['n_samples'].sum())})"})
        if model in REPORTED_ACCURACY:
            reported = REPORTED_ACCURACY[model]
            rows.append({"model": model, "weights": "published", "device": None, "numbers": REPORTED,
                         **reported.scores, "from": reported.source})
    halves = [plus(c) for c in columns]
    frame = pd.DataFrame(rows, columns=[*RUN_KEY, "numbers", *columns, *halves, "from"])
    frame[columns + halves] = frame[columns + halves].astype(float)
    return Table("accuracy", "Accuracy (%) per model and benchmark", accuracy_notes(set(scores["benchmark"])), frame,
                 sources_of(results.runs), plusminus=dict(zip(columns, halves)))


def accuracy_notes(measured_benchmarks: set[str]) -> str:
    """What each measured column is, and the splits and scoring behind each system's reported numbers."""
    measured = "; ".join(f"{b.name} {b.note} (lmms-eval `{b.metric}`)" for b in BENCHMARKS.values()
                         if b.name in measured_benchmarks) or "none yet"
    reported = "; ".join(f"{r.system}: {r.splits}" for r in REPORTED_ACCURACY.values())
    return ("Measured scores from the newest run of each task of a model, its weights (a checkpoint's name and "
            "digest, or random weights and their seed: chance-level answers) and its device, beside the papers' "
            "reported ones; rows that differ in any of these are kept apart. Only rows marked "
            "plain \"measured\" ran the whole benchmark: mini = qbench's small generated twin, lite = lmms-eval's Lite "
            "subset, limit N = the first N samples per task; none of these compare with a paper's number. "
            "± = half-width of the 95% interval (a seeded bootstrap over the samples, the questions about one image "
            "resampled together where the run recorded images, from the run's summary, or from "
            "its samples.jsonl for summaries that predate intervals; a benchmark of several tasks, e.g. POPE's three "
            "splits: sqrt(sum of squares) / k); none where neither exists. "
            f"Measured: {measured}. "
            f"Reported: {reported}.")


# ---- speed ----------------------------------------------------------------------------------------------------

SPEED_KEY = ["gpu", "model", "checkpoint", "visual_tokens", "images", "batch", "batch_search", "engine", "new_tokens"]
SPEED_COLUMNS = {"gpu": "device", "model": "model", "checkpoint": "weights", "visual_tokens": "visual tokens",
                 "images": "images", "batch": "batch",
                 "batch_search": "batch found", "largest_batch": "largest batch", "engine": "engine",
                 "new_tokens": "new tokens", "status": "status", "e2e_tokens_per_s": "tokens/s",
                 "decode_tokens_per_s": "decode tokens/s", "ttft_ms": "TTFT ms", "vision_ms": "vision ms",
                 "projector_ms": "projector ms", "prefill_ms": "prefill ms", "peak_mem_gib": "peak GiB",
                 "weights_gib": "weights GiB", "state_gib": "state GiB", "state_alloc_gib": "state allocated GiB",
                 "roofline_share": "roofline share"}


def latest_speed(results: Results) -> pd.DataFrame:
    """One row per device x model x weights x visual tokens x images x batch (asked or searched) x engine x new
    tokens: the newest sweep's, in model order."""
    speed = results.speed.assign(batch_search=results.speed["batch_search"].fillna(""))
    speed = speed.sort_values(["created", "source"]).drop_duplicates(SPEED_KEY, keep="last")
    speed = speed.assign(batch_search=speed["batch_search"].replace("", None))
    order = {model: i for i, model in enumerate(model_order(speed["model"]))}
    speed = speed.assign(order=speed["model"].map(order))
    return speed.sort_values(["gpu", "order", "engine", "visual_tokens", "batch"]).drop(columns="order")


def span(values: pd.Series, spec: str = ",.0f") -> str | None:
    """'a -> b' from the first to the last value (one value alone; None for none)."""
    values = values.dropna()
    if values.empty:
        return None
    first, last = format(values.iloc[0], spec), format(values.iloc[-1], spec)
    return first if len(values) == 1 or first == last else f"{first} → {last}"


def at_tokens(frame: pd.DataFrame, column: str, spec: str = ",.0f", limit: bool = False) -> str | None:
    """'value @ visual tokens' for each searched row ('≥' where the search stopped at its limit; the batch where it
    was measured below the largest), '; '-joined."""
    cells = []
    for value, row in zip(frame[column], frame.itertuples()):
        if pd.notna(value):
            at_least = "≥" if limit and str(row.batch_search).startswith("limit") else ""
            below = f" (batch {row.batch:,.0f})" if not limit and row.batch != row.largest_batch else ""
            cells.append(f"{at_least}{format(value, spec)} @ {row.visual_tokens:,.0f}{below}")
    return "; ".join(cells) or None


def speed_summary(speed: pd.DataFrame) -> pd.DataFrame:
    """One row per GPU x model x engine x new tokens: batch 1 from the fewest to the most visual tokens, the first
    count that ran out of memory, the largest batch and its decode rate at each searched count."""
    rows = []
    for (gpu, model, weights, engine, new_tokens), group in speed.groupby(
            ["gpu", "model", "checkpoint", "engine", "new_tokens"], sort=False):
        asked = group[group["batch_search"].isna() & (group["batch"] == 1)].sort_values("visual_tokens")
        one = asked[asked["status"] == "ok"]
        oom = asked[asked["status"] == "oom"]["visual_tokens"]
        searched = group[group["batch_search"].notna()].sort_values("visual_tokens")
        if one.empty and oom.empty and searched.empty:
            continue  # only failed rows: speed_full.csv has them
        rows.append({"device": gpu, "model": model, "weights": weights, "engine": engine,
                     "new tokens": int(new_tokens),
                     "visual tokens": span(one["visual_tokens"]), "decode tokens/s": span(one["decode_tokens_per_s"]),
                     "TTFT ms": span(one["ttft_ms"]), "peak GiB": span(one["peak_mem_gib"], ".1f"),
                     "state GiB": span(one["state_gib"], ".2f"),
                     "out of memory from": f"{oom.min():,.0f}" if len(oom) else None,
                     "largest batch": at_tokens(searched, "largest_batch", limit=True),
                     "decode tokens/s at largest": at_tokens(searched, "decode_tokens_per_s"),
                     "tokens/s at largest": at_tokens(searched, "e2e_tokens_per_s")})
    return pd.DataFrame(rows, columns=["device", "model", "weights", "engine", "new tokens", "visual tokens",
                                       "decode tokens/s",
                                       "TTFT ms", "peak GiB", "state GiB", "out of memory from", "largest batch",
                                       "decode tokens/s at largest", "tokens/s at largest"])


def speed_table(results: Results) -> Table:
    speed = latest_speed(results)
    full = speed[list(SPEED_COLUMNS)].rename(columns=SPEED_COLUMNS)
    return Table("speed", "Speed per model and engine: batch 1 over visual tokens, and the largest batch",
                 "One row per device, model, weights, engine and new tokens. Batch 1: each value at the fewest → the "
                 "most visual tokens measured (tokens by resolution, queries or images per prompt); state GiB = the KV"
                 " cache or Mamba state; out of memory from = the fewest visual tokens that did not fit at batch 1. "
                 "Largest batch: found by the sweep's search at each searched visual token count (≥: the search "
                 "stopped at its limit, and it fit), with its decode rate and its end-to-end rate (tokens/s = new "
                 "tokens / (image in to last token); empty where its prompts were not all prefilled). Every row, asked"
                 " batch sizes included, with vision, projector and prefill times and the roofline share: "
                 "speed_full.csv.",
                 speed_summary(speed), sources_of(speed), full=full)


def measured_ratios(speed: pd.DataFrame) -> pd.DataFrame:
    """Mamba tokens/s over a Transformer's at batch 1, same device, engine, visual and new tokens (tiny with tiny),
    random weights both."""
    ok = speed[(speed["status"] == "ok") & (speed["batch"] == 1) & speed["e2e_tokens_per_s"].notna()
               & (speed["checkpoint"] == "random")]
    mamba = np.array([is_mamba(m, b) for m, b in zip(ok["model"], ok["backbone"])], dtype=bool)
    transformer = np.array([is_transformer(m, b) for m, b in zip(ok["model"], ok["backbone"])], dtype=bool)
    rows = []
    for _, row in ok[mamba].iterrows():
        peers = ok[transformer & (ok["gpu"] == row["gpu"]) & (ok["engine"] == row["engine"])
                   & (ok["visual_tokens"] == row["visual_tokens"]) & (ok["new_tokens"] == row["new_tokens"])
                   & (ok["model"].str.startswith("tiny-") == row["model"].startswith("tiny-"))]
        if len(peers):
            peer = peers.iloc[0]
            rows.append({"numbers": MEASURED, "device": row["gpu"], "engine": row["engine"],
                         "new tokens": int(row["new_tokens"]),
                         "visual tokens": int(row["visual_tokens"]), "Mamba model": row["model"],
                         "Mamba tokens/s": row["e2e_tokens_per_s"], "Transformer": peer["model"],
                         "Transformer tokens/s": peer["e2e_tokens_per_s"],
                         "ratio": row["e2e_tokens_per_s"] / peer["e2e_tokens_per_s"],
                         "source": row["source"]})
    return pd.DataFrame(rows, columns=[*RATIO_COLUMNS, "source"])


RATIO_COLUMNS = ["numbers", "device", "engine", "new tokens", "visual tokens", "Mamba model", "Mamba tokens/s",
                 "Transformer", "Transformer tokens/s", "ratio"]


def reported_ratios() -> pd.DataFrame:
    rows = [{"numbers": REPORTED, "device": "A100 PCIe 80GB", "engine": f"{s.engine} vs {PAPER_BASELINE}'s eager",
             "new tokens": PAPER_NEW_TOKENS,
             "visual tokens": s.visual_tokens, "Mamba model": s.model or s.system, "Mamba tokens/s": s.tokens_per_s,
             "Transformer": PAPER_BASELINE, "Transformer tokens/s": s.tokens_per_s / ratio, "ratio": ratio}
            for s, ratio in paper_speed_ratios()]
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def speed_ratio_table(results: Results) -> Table:
    measured = measured_ratios(latest_speed(results))
    on_gpus = not (measured["device"] == "cpu").any()  # the papers' numbers are a GPU's: never beside a CPU's
    frame = pd.concat([measured[RATIO_COLUMNS], reported_ratios() if on_gpus else None], ignore_index=True)
    return Table("speed_ratio", "Speed ratio Mamba / Transformer: same engine (measured) vs the papers' mixed engines",
                 f"Measured: batch 1, both models under the same engine and visual tokens. Reported: {SPEED_SOURCE}; "
                 "the Mamba systems decoded with CUDA graphs, the Transformer with eager transformers generate. "
                 "Hybrid LLMs (Mamba and attention layers) are neither side: they are in the speed table and figures.",
                 frame, sources_of(measured),
                 {"Mamba tokens/s": ".2f", "Transformer tokens/s": ".2f", "ratio": ".2f"})


# ---- ablation -------------------------------------------------------------------------------------------------

def ablation_cells(results: Results) -> pd.DataFrame:
    """One row per ablation x task x metric x projector setting x backbone (the newest file's on a repeat), in
    percent (ablation.json keeps the metrics' 0-1), with the half-width of its 95% interval (`half`, NaN without
    one), its settings in order: projectors by name, query counts by number."""
    ablation = results.ablation.copy()
    ablation[["value", "ci_lo", "ci_hi", "chance"]] = 100 * ablation[["value", "ci_lo", "ci_hi", "chance"]]
    ablation["setting"] = [p if pd.isna(q) else f"{p} ({int(q)} queries)"
                           for p, q in zip(ablation["projector"], ablation["queries"])]
    ablation["half"] = (ablation["ci_hi"] - ablation["ci_lo"]) / 2
    ablation = ablation.assign(queries_order=ablation["queries"].fillna(-1)).sort_values(
        ["name", "task", "projector", "queries_order", "backbone"], kind="stable").drop(columns="queries_order")
    return ablation.drop_duplicates(["name", "task", "metric", "setting", "backbone"], keep="last")


def ablation_table(results: Results) -> Table:
    cells = ablation_cells(results)
    index = ["name", "task", "metric", "seeds", "chance", "setting", "visual_tokens"]
    if len(cells):
        order = list(dict.fromkeys(cells["setting"]))  # projectors by name, query counts by number
        wide = cells.set_index([*index, "backbone"])[["value", "half"]].unstack("backbone")
        backbones = list(wide["value"].columns)
        frame = pd.concat([wide["value"], wide["half"].rename(columns=plus)], axis=1).reset_index()
        frame = frame.sort_values(["name", "task", "setting"], key=lambda column: column.map(order.index)
                                  if column.name == "setting" else column, kind="stable")
    else:
        frame, backbones = pd.DataFrame(columns=index), []
    frame.columns.name = None
    frame = frame.rename(columns={"name": "ablation", "setting": "projector", "visual_tokens": "visual tokens",
                                  "chance": "chance (%)"})
    if len(frame):
        frame = frame.astype({"visual tokens": int, "seeds": int})
    return Table("ablation", "Projector x backbone ablation (%)",
                 "Score in percent of each projector (rows) on each backbone (columns), trained with the same budget; "
                 "with several seeds the mean over them. ± = half-width of the 95% interval (bootstrap over the "
                 "questions of each question's score averaged over the seeds, questions about one image resampled "
                 "together where the ablation recorded images); the spread over seeds is in the ablation's own "
                 "tables. chance = the score of always giving the most common answer.", frame, sources_of(cells),
                 plusminus={b: plus(b) for b in backbones})


def ablation_differences_table(results: Results) -> Table:
    found = results.ablation_differences
    survivors = found[found["survives"].astype(bool)]
    frame = survivors[["name", "task", "factor", "a", "b", "difference", "ci_lo", "ci_hi", "p", "seeds"]].rename(
        columns={"name": "ablation", "a": "A", "b": "B", "difference": "A - B", "ci_lo": "lo", "ci_hi": "hi"})
    frame[["A - B", "lo", "hi"]] = 100 * frame[["A - B", "lo", "hi"]]
    tested = found.groupby("name").size()
    return Table("ablation_differences", "Ablation: differences that survive (percentage points)",
                 "Pairs of combinations that differ in one factor (projector on one backbone, or backbone under one "
                 "projector), per task, in percentage points. A difference survives when its 95% paired bootstrap "
                 "interval over the questions (each question's score averaged over the seeds; qbench compare's test) "
                 "excludes zero and every seed alone gives it the same sign; lo and hi are the interval's bounds, p "
                 "its p-value (at least 1/2000, the bootstrap's resolution). Pairs tested: "
                 + (", ".join(f"{name} {count}" for name, count in tested.items()) or "none") + ".",
                 frame, sources_of(found), {"A - B": "+.1f", "lo": "+.1f", "hi": "+.1f", "p": p_cell},
                 intervals={"95% interval": ("lo", "hi")})


# ---- paired comparisons ------------------------------------------------------------------------------------------

def newest_runs(results: Results) -> pd.DataFrame:
    """The newest run of each model, weights and device per suite and limit: one row per run folder."""
    runs = results.runs.drop_duplicates("source").assign(limit=results.runs["limit"].fillna(-1))
    return runs.sort_values(["finished", "source"]).drop_duplicates([*RUN_KEY, "suite", "limit"], keep="last")


def run_label(run: pd.Series) -> str:
    """A run as the comparisons name it: its model, weights and device."""
    return f"{run['model']} ({run['weights']}; {run['device']})"


def comparisons(results: Results) -> pd.DataFrame:
    """qbench compare's paired comparison of every two newest runs over the same samples (same suite and limit)."""
    rows = []
    for (suite, _), group in newest_runs(results).groupby(["suite", "limit"], sort=True):
        order = {model: i for i, model in enumerate(model_order(group["model"]))}
        group = group.assign(order=group["model"].map(order)).sort_values(["order", "weights", "device"])
        for (_, a), (_, b) in itertools.combinations(group.iterrows(), 2):
            try:
                found = compare.compare_runs(results.read[a["source"]], results.read[b["source"]])
            except compare.NotComparable:
                continue  # not over the same samples, or no samples.jsonl
            for task, row in found["tasks"].items():
                rows.append({"suite": suite, "A": run_label(a), "B": run_label(b), "task": task,
                             "metric": row["metric"], "n": row["n"], "A - B": row["difference"], "lo": row["ci"][0],
                             "hi": row["ci"][1], "p": row["p"], "test": row["test"], "verdict": row["verdict"],
                             "provenance differs": ", ".join(found["provenance_differs"]) or "-",
                             "source": f"{a['source']}, {b['source']}"})
    return pd.DataFrame(rows, columns=["suite", "A", "B", "task", "metric", "n", "A - B", "lo", "hi", "p", "test",
                                       "verdict", "provenance differs", "source"])


def comparisons_table(results: Results) -> Table:
    frame = comparisons(results)
    sources = sorted({part for joined in frame["source"] for part in joined.split(", ")})
    return Table("comparisons", "Paired comparisons of runs over the same samples",
                 "Every two newest runs of one suite and limit whose samples pair up, compared as `qbench compare` "
                 "does: per task the difference A - B of the task's metric in percentage points, its 95% paired "
                 "bootstrap interval (lo, hi) and p-value (one test, resampling whole images; p at least 1/2000, the "
                 "bootstrap's resolution) and the verdict they give; provenance differs names what else differs "
                 "between the two runs. A and B: model (weights; device).",
                 frame.drop(columns="source"), sources, {"A - B": "+.1f", "lo": "+.1f", "hi": "+.1f", "p": p_cell},
                 intervals={"95% interval": ("lo", "hi")})


# ---- training ---------------------------------------------------------------------------------------------------

def training_table(results: Results) -> Table:
    runs = results.training
    frame = runs[["model", "gpu", "processes", "sharding", "batch", "peak_gpu_memory_gib", "median_step_seconds",
                  "status"]].rename(columns={"gpu": "device", "peak_gpu_memory_gib": "peak GiB per process",
                                             "median_step_seconds": "s/step"})
    frame = frame.astype({"processes": int, "batch": int}) if len(frame) else frame
    return Table("training", "Training over several processes",
                 "Each `qbench train` run under results/train/: how the model was spread over the processes (ddp: a "
                 "replica each; fsdp: sharded), the global batch, the GPU memory one process held at most, and "
                 "the median seconds per optimizer step.", frame, sources_of(runs),
                 {"peak GiB per process": ".1f", "s/step": ".2f"})


TABLES: dict[str, Callable[[Results], Table]] = {
    "accuracy": accuracy_table,
    "speed": speed_table,
    "speed_ratio": speed_ratio_table,
    "comparisons": comparisons_table,
    "ablation": ablation_table,
    "ablation_differences": ablation_differences_table,
    "training": training_table,
}
# Timings and memory of one class of device per table: GPU measurements under the table's own name, CPU ones under
# <name>_cpu (made where there are any). CPU and GPU numbers never share a table.
PER_DEVICE_CLASS = ("speed", "speed_ratio", "training")
DEVICE_CLASSES = {"": lambda device: device != "cpu", "_cpu": lambda device: device == "cpu"}


def tables_of(results: Results) -> list[tuple[str, Table]]:
    """Every table (its registry name, the table), those of PER_DEVICE_CLASS once per class of device."""
    made = []
    for name, build in TABLES.items():
        if name not in PER_DEVICE_CLASS:
            made.append((name, build(results)))
            continue
        for suffix, keep in DEVICE_CLASSES.items():
            table = build(results.on(keep))
            if suffix and not table.sources:  # no CPU measurement: no CPU table
                continue
            table.name += suffix
            table.title += " (CPU)" if suffix else ""
            made.append((name, table))
    return made
