"""The report's figures (matplotlib, Agg), each written as PNG and PDF with one fixed colour per model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from qbench.presets import preset_names
from qbench.report.collect import Results
from qbench.report.reported import PAPER_NEW_TOKENS
from qbench.report.tables import (
    MEASURED,
    REPORTED,
    ablation_cells,
    accuracy_table,
    is_mamba,
    is_transformer,
    latest_speed,
    measured_ratios,
    model_order,
    reported_ratios,
    sources_of,
)

# Reproducible files: no creation date, no software versions inside.
SAVE = {"png": {"dpi": 150, "metadata": {"Software": None}},
        "pdf": {"metadata": {"CreationDate": None, "Creator": None, "Producer": None}}}
# One line style and marker per decode engine, the same in every figure; other engines share the last.
ENGINE_STYLES = {"eager": ("-", "o"), "graph": ("--", "s"), "graph-nocompile": ("-", "D"), "mamba_ssm-cg": (":", "^")}
OTHER_ENGINE_STYLE = ("-.", "D")
COMPONENTS = {"vision_ms": ("vision", 1.0, ""), "projector_ms": ("projector", 0.65, "//"),
              "prefill_ms": ("prefill", 0.35, "..")}


class NoData(Exception):
    """A figure has nothing to show; the message says which results it needs."""


def canvas(rows: int = 1, cols: int = 1, *, figsize: tuple[float, float], **options: object) -> tuple[Figure, object]:
    """A figure and its axes, outside pyplot: no global state, nothing to close, any backend."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, **options)


def model_colour(model: str, models: list[str]) -> tuple[float, ...]:
    """Presets keep one colour across every figure and report; other models take later colours by name."""
    presets = preset_names()
    if model in presets:
        return matplotlib.colormaps["tab10"](presets.index(model))
    others = sorted(m for m in models if m not in presets)
    return matplotlib.colormaps["tab20b"](others.index(model) % 20)


def engine_style(engine: str) -> tuple[str, str]:
    return ENGINE_STYLES.get(engine, OTHER_ENGINE_STYLE)


def legends(ax: Axes, models: list[str], engines: list[str] = (), loc: str = "best") -> None:
    """A legend of model colours, and one of engine line styles when several engines are drawn."""
    handles = [Patch(color=model_colour(m, models), label=m) for m in model_order(models)]
    handles += [Line2D([], [], color="black", linestyle=engine_style(e)[0], marker=engine_style(e)[1],
                       label=f"engine: {e}") for e in sorted(engines)]
    ax.legend(handles=handles, fontsize=7, loc=loc)


def ok_speed(results: Results, batch_one: bool = True, widest: str | None = None) -> pd.DataFrame:
    """Successful speed rows (at batch 1, asked), at one count of new tokens: rows generating different numbers of
    tokens are different measurements. The count chosen has the most rows, or the most distinct `widest` values."""
    speed = latest_speed(results)
    speed = speed[speed["status"] == "ok"]
    if batch_one:
        speed = speed[(speed["batch"] == 1) & speed["batch_search"].isna()]
    if speed.empty:
        raise NoData("no speed sweep with successful rows under results/speed/")
    spread = speed.groupby("new_tokens")[widest].nunique() if widest else speed.groupby("new_tokens").size()
    chosen = max(spread.items(), key=lambda item: (item[1], item[0]))[0]
    return speed[speed["new_tokens"] == chosen]


def speed_caption(fig: Figure, speed: pd.DataFrame) -> None:
    gpus = ", ".join(sorted(set(speed["gpu"])))
    fig.suptitle(f"{gpus}; {int(speed['new_tokens'].iloc[0])} new tokens", fontsize=9)


def lines(ax: Axes, frame: pd.DataFrame, x: str, y: str, models: list[str], crossings: bool = True,
          **style: object) -> list[str]:
    """One line per model x engine x GPU (colour = model, style = engine), and an X where a Transformer's line
    crosses a Mamba model's; returns the engines drawn."""
    engines = sorted(set(frame["engine"]))
    for (gpu, model, engine), group in frame.groupby(["gpu", "model", "engine"], sort=True):
        group = group.dropna(subset=[y]).sort_values(x)
        linestyle, marker = engine_style(engine)
        ax.plot(group[x], group[y], **{"marker": marker, "linestyle": linestyle, "color": model_colour(model, models),
                                       **style})
    if crossings:
        mark_crossovers(ax, frame, x, y)
    return engines


def log_axes(ax: Axes, y: bool = True) -> None:
    """Log axes (x in powers of two), ticks as plain numbers."""
    ax.set_xscale("log", base=2)
    plain = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    if y:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        low, high = ax.get_ylim()  # within about a decade, label the minor ticks too
        ax.yaxis.set_minor_formatter(plain if high / low < 20 else NullFormatter())


def log_grids(axes: list[Axes], xlabel: str) -> None:
    """Log axes with a grid under one x label, on each panel."""
    for ax in axes:
        ax.set(xlabel=xlabel)
        log_axes(ax)
        ax.grid(alpha=0.3, which="both")


def crossover_points(a: pd.Series, b: pd.Series) -> list[tuple[float, float]]:
    """Where two curves (value by x, both positive) cross, interpolating linearly on log-log axes."""
    low, high = max(a.index.min(), b.index.min()), min(a.index.max(), b.index.max())
    grid = np.array(sorted({x for x in (*a.index, *b.index) if low <= x <= high}), dtype=float)
    if len(grid) < 2:
        return []
    log_x = np.log(grid)
    log_a = np.interp(log_x, np.log(a.index.to_numpy(float)), np.log(a.to_numpy(float)))
    log_b = np.interp(log_x, np.log(b.index.to_numpy(float)), np.log(b.to_numpy(float)))
    gap = log_a - log_b
    points = []
    for i in np.flatnonzero(gap[:-1] * gap[1:] < 0):
        share = gap[i] / (gap[i] - gap[i + 1])
        points.append((float(np.exp(log_x[i] + share * (log_x[i + 1] - log_x[i]))),
                       float(np.exp(log_a[i] + share * (log_a[i + 1] - log_a[i])))))
    return points


def mark_crossovers(ax: Axes, frame: pd.DataFrame, x: str, y: str) -> None:
    """An X and its x value where a Transformer's curve crosses a Mamba model's (same GPU and engine)."""
    for _, group in frame.groupby(["gpu", "engine"], sort=True):
        curves = {model: mine.dropna(subset=[y]).groupby(x)[y].median() for model, mine in group.groupby("model")}
        curves = {model: curve for model, curve in curves.items() if len(curve) > 1 and (curve > 0).all()}
        for transformer, mamba in ((t, m) for t in curves for m in curves
                                   if is_transformer(t, None) and is_mamba(m, None)):
            for cx, cy in crossover_points(curves[transformer], curves[mamba]):
                ax.plot(cx, cy, marker="X", color="black", markersize=8, linestyle="none", zorder=5)
                ax.annotate(f"{cx:,.0f}", (cx, cy), textcoords="offset points", xytext=(5, 5), fontsize=7)


def tokens_per_s(results: Results) -> tuple[Figure, pd.DataFrame]:
    speed = ok_speed(results)
    models = sorted(set(speed["model"]))
    fig, axes = canvas(1, 2, figsize=(10, 4))
    for ax, column, label in zip(axes, ("e2e_tokens_per_s", "decode_tokens_per_s"),
                                 ("tokens/s (image in to last token)", "decode tokens/s")):
        engines = lines(ax, speed, "visual_tokens", column, models)
        ax.set(xlabel="visual tokens", ylabel=label, title=label)
        log_axes(ax)
        ax.grid(alpha=0.3, which="both")
    legends(axes[0], models, engines)
    speed_caption(fig, speed)
    return fig, speed


def memory(results: Results) -> tuple[Figure, pd.DataFrame]:
    tokens, batches = ok_speed(results), ok_speed(results, batch_one=False, widest="batch")
    models = sorted(set(tokens["model"]) | set(batches["model"]))
    fig, axes = canvas(1, 2, figsize=(10, 4))
    engines = lines(axes[0], tokens, "visual_tokens", "peak_mem_gib", models)
    axes[0].set(xlabel="visual tokens", ylabel="peak memory (GiB)",
                title=f"vs visual tokens\n(batch 1, {int(tokens['new_tokens'].iloc[0])} new tokens)")
    # Against batch: at each model's visual token count measured at the most batch sizes.
    widest = batches.groupby(["model", "visual_tokens"])["batch"].nunique().reset_index()
    widest = widest.sort_values(["batch", "visual_tokens"]).drop_duplicates("model", keep="last")
    by_batch = batches.merge(widest[["model", "visual_tokens"]], on=["model", "visual_tokens"])
    engines = sorted(set(engines) | set(lines(axes[1], by_batch, "batch", "peak_mem_gib", models)))
    axes[1].set(xlabel="batch", ylabel="peak memory (GiB)", title=f"vs batch\n({int(batches['new_tokens'].iloc[0])} "
                "new tokens; at the visual tokens with the most batch sizes)")
    for ax in axes:
        log_axes(ax)
        ax.grid(alpha=0.3, which="both")
    legends(axes[0], models, engines)
    fig.suptitle("peak memory: " + ", ".join(sorted(set(tokens["gpu"]) | set(batches["gpu"]))), fontsize=9)
    return fig, pd.concat([tokens, by_batch])


def ttft_split(results: Results) -> tuple[Figure, pd.DataFrame]:
    speed = ok_speed(results).dropna(subset=list(COMPONENTS))
    if speed.empty:
        raise NoData("no speed row with vision, projector and prefill times")
    # TTFT hardly depends on the decode engine: one bar per GPU x model x visual tokens, from the first engine.
    speed = speed.sort_values("engine", key=lambda e: e != "eager", kind="stable")
    bars = speed.drop_duplicates(["gpu", "model", "visual_tokens"]).iloc[::-1]
    models = sorted(set(bars["model"]))
    fig, ax = canvas(figsize=(9, 0.4 * len(bars) + 1.5))
    labels = [f"{m} @ {int(v)} ({e})" for m, v, e in zip(bars["model"], bars["visual_tokens"], bars["engine"])]
    left = np.zeros(len(bars))
    for column, (name, alpha, hatch) in COMPONENTS.items():
        colours = [model_colour(m, models) for m in bars["model"]]
        ax.barh(labels, bars[column], left=left, color=colours, alpha=alpha, hatch=hatch, edgecolor="black",
                linewidth=0.4)
        left += bars[column].to_numpy()
    ax.set(xlabel="time to first token (ms)", title="time to first token: vision + projector + prefill (batch 1)")
    ax.legend(handles=[Patch(facecolor="grey", alpha=a, hatch=h, edgecolor="black", label=n)
                       for n, a, h in COMPONENTS.values()], fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    speed_caption(fig, bars)
    return fig, bars


def grouped_bars(ax: Axes, frame: pd.DataFrame, group: str, value: str, models: list[str],
                 error: str | None = None) -> None:
    """Bars of `value` grouped by `group`, one bar (colour) per model present in the group; error bars of +-`error`
    where the frame has one."""
    groups = list(dict.fromkeys(frame[group]))
    for x, name in enumerate(groups):
        mine = frame[frame[group] == name]
        shown = model_order(mine["model"])
        width = 0.8 / len(shown)
        for i, model in enumerate(shown):
            row = mine[mine["model"] == model].iloc[0]
            half = row[error] if error and pd.notna(row[error]) else None
            ax.bar(x + (i - (len(shown) - 1) / 2) * width, row[value], width, color=model_colour(model, models),
                   yerr=half, capsize=3 if half is not None else 0)
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
    ax.grid(axis="y", alpha=0.3)


def accuracy(results: Results) -> tuple[Figure, pd.DataFrame]:
    scores_table = accuracy_table(results)
    table, half_of = scores_table.frame, scores_table.plusminus  # benchmark column -> its half-width column
    long = table.melt(id_vars=["model", "numbers"], value_vars=list(half_of), var_name="benchmark").dropna()
    halves = table.melt(id_vars=["model", "numbers"], value_vars=list(half_of.values()), value_name="half")
    halves["benchmark"] = halves["variable"].map({half: benchmark for benchmark, half in half_of.items()})
    long = long.merge(halves[["model", "numbers", "benchmark", "half"]], on=["model", "numbers", "benchmark"])
    long["benchmark"] = [b if n in (REPORTED, MEASURED) else f"{b} {n.removeprefix(MEASURED + ' ')}"
                         for b, n in zip(long["benchmark"], long["numbers"])]
    measured = long[long["numbers"] != REPORTED]
    models = sorted(set(long["model"]))
    panels = [(measured, "measured (this repository's runs)"), (long[long["numbers"] == REPORTED],
                                                                 "reported in the papers (their splits and scoring)")]
    fig, axes = canvas(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, (frame, title) in zip(axes, panels):
        if frame.empty:
            ax.text(0.5, 0.5, "no measured runs yet" if frame is measured else "none", ha="center",
                    transform=ax.transAxes)
        else:
            grouped_bars(ax, frame, "benchmark", "value", models, error="half")
        ax.set(title=title, ylabel="accuracy (%)")
    legends(axes[1], models)
    return fig, results.runs


def ablation(results: Results) -> tuple[Figure, pd.DataFrame]:
    cells = ablation_cells(results)
    if cells.empty:
        raise NoData("no ablation table under results/ablation/")
    names = sorted(cells["name"].unique())
    tasks = sorted(set(zip(cells["task"], cells["metric"])))
    settings = [cells.loc[cells["name"] == name, "setting"].nunique() for name in names]
    fig, axes = canvas(len(names), len(tasks), figsize=(4.2 * len(tasks) + 1, 0.5 * sum(settings) + 1.2 * len(names)),
                       squeeze=False, gridspec_kw={"height_ratios": [n + 2 for n in settings]})
    for ax in axes.flat:
        ax.set_visible(False)
    for (name, task, metric), group in cells.groupby(["name", "task", "metric"], sort=True):
        ax = axes[names.index(name), tasks.index((task, metric))]  # one row per ablation, one column per task
        ax.set_visible(True)
        grid = group.pivot_table(index="setting", columns="backbone", values="value", aggfunc="last", sort=True)
        halves = group.pivot_table(index="setting", columns="backbone", values="half", aggfunc="last", sort=True,
                                   dropna=False).reindex(index=grid.index, columns=grid.columns)
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(grid.columns)), grid.columns)
        ax.set_yticks(range(len(grid.index)), grid.index)
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            if not np.isnan(value):
                half = halves.to_numpy(dtype=float)[i, j]
                ax.text(j, i, f"{value:.3f}" + ("" if np.isnan(half) else f"\n±{half:.3f}"), ha="center",
                        va="center", fontsize=8, color="black" if image.norm(value) > 0.5 else "white")
        chance = group["chance"].dropna()
        ax.set_title(f"{name}: {task} {metric}" + (f"\n(chance {chance.iloc[0]:.3f})" if len(chance) else ""),
                     fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig, cells


def speed_ratio(results: Results) -> tuple[Figure, pd.DataFrame]:
    try:
        speed = ok_speed(results)
    except NoData:
        speed = latest_speed(results)
    # Several visual token counts per engine: show the median ratio of each Mamba model.
    measured = measured_ratios(speed).groupby(["GPU", "engine", "new tokens", "Mamba model"], as_index=False,
                                              sort=True)["ratio"].median()
    measured["group"] = [f"measured: {engine} for both\n{gpu}, {tokens} tokens" for gpu, engine, tokens
                         in zip(measured["GPU"], measured["engine"], measured["new tokens"])]
    reported = reported_ratios()
    reported["group"] = f"reported: CUDA graph vs eager\nA100 (papers), {PAPER_NEW_TOKENS} tokens"
    frame = pd.concat([measured, reported[["Mamba model", "ratio", "group"]]], ignore_index=True)
    frame = frame.rename(columns={"Mamba model": "model"})
    models = sorted(set(frame["model"]))
    fig, ax = canvas(figsize=(8, 4.5))
    grouped_bars(ax, frame, "group", "ratio", models)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylim(0, 1.3 * frame["ratio"].max())  # room for the legend and the note above the bars
    ax.set(ylabel="Mamba tokens/s / Transformer tokens/s",
           title="speed ratio Mamba / Transformer: same engine vs the papers' mixed engines")
    if measured.empty:
        ax.text(0.02, 0.95, "no measured Mamba/Transformer pair yet", transform=ax.transAxes, va="top")
    legends(ax, models, loc="upper right")
    return fig, speed if len(measured) else speed.iloc[:0]


def one_route(speed: pd.DataFrame) -> pd.DataFrame:
    """Of a model's rows reached by more images per prompt and by resolution, those of the images route: the two
    routes give different costs at nearly the same token count, and one line through both would zigzag."""
    per_image = speed["visual_tokens"] / speed["images"]
    key = [speed["gpu"], speed["model"], speed["engine"]]
    multi = speed["images"] > 1
    route = per_image.where(multi).groupby(key).transform("min")
    return speed[route.isna() | (per_image == route)]


def long_context(results: Results) -> tuple[Figure, pd.DataFrame]:
    speed = one_route(ok_speed(results, widest="visual_tokens"))
    speed = speed[speed.groupby(["gpu", "model", "engine"])["visual_tokens"].transform("nunique") > 2]
    if speed.empty:
        raise NoData("no sweep at batch 1 over more than two visual token counts")
    models = sorted(set(speed["model"]))
    fig, axes = canvas(1, 3, figsize=(15, 4.3))
    engines = lines(axes[0], speed, "visual_tokens", "peak_mem_gib", models)
    lines(axes[0], speed, "visual_tokens", "state_gib", models, crossings=False, linestyle=":", marker=".")
    axes[0].set(ylabel="GiB", title="peak memory (solid) and its KV cache or state (dotted)")
    lines(axes[1], speed, "visual_tokens", "ttft_ms", models)
    axes[1].set(ylabel="ms", title="time to first token")
    lines(axes[2], speed, "visual_tokens", "decode_tokens_per_s", models)
    axes[2].set(ylabel="tokens/s", title="decode tokens/s")
    log_grids(axes, "visual tokens in the prompt")
    legends(axes[0], models, engines, loc="upper left")
    speed_caption(fig, speed)
    return fig, speed


def full_batch(results: Results) -> tuple[Figure, pd.DataFrame]:
    speed = latest_speed(results)
    searched = speed[speed["batch_search"].notna() & (speed["largest_batch"] > 0)]
    if searched.empty:
        raise NoData("no largest-batch search (`qbench speed --batch max`) under results/speed/")
    new_tokens = searched["new_tokens"].value_counts().idxmax()
    searched = searched[searched["new_tokens"] == new_tokens]
    keys = ["gpu", "model", "engine", "new_tokens"]
    single = speed[(speed["batch"] == 1) & speed["batch_search"].isna() & (speed["status"] == "ok")]
    single = single.merge(searched[keys].drop_duplicates(), on=keys)
    models = sorted(set(searched["model"]))
    fig, axes = canvas(1, 2, figsize=(11, 4.3))
    engines = lines(axes[0], searched, "visual_tokens", "largest_batch", models)
    limit = searched[searched["batch_search"].str.startswith("limit")]
    axes[0].scatter(limit["visual_tokens"], limit["largest_batch"], marker="^", s=80, color="black", zorder=4,
                    label="the search's limit: at least this many fit")
    axes[0].legend(fontsize=7, loc="lower left")
    axes[0].set(ylabel="sequences", title="largest batch that fits (found by trying)")
    measured = searched[searched["status"] == "ok"]
    lines(axes[1], measured, "visual_tokens", "decode_tokens_per_s", models)
    lines(axes[1], single, "visual_tokens", "decode_tokens_per_s", models, crossings=False, linestyle=":",
          marker=".")
    axes[1].set(ylabel="decode tokens/s", title="decode tokens/s at the largest batch (solid) and at batch 1 (dotted)")
    log_grids(axes, "visual tokens per prompt")
    legends(axes[1], models, engines, loc="center right")
    speed_caption(fig, searched)
    return fig, pd.concat([searched, single])


@dataclass(frozen=True)
class FigureSpec:
    title: str
    description: str
    draw: Callable[[Results], tuple[Figure, pd.DataFrame]]  # the figure and the result rows it drew from


FIGURES: dict[str, FigureSpec] = {
    "tokens_per_s": FigureSpec("Tokens/s vs visual tokens", "Throughput at batch 1 as the visual token count grows "
                               "(colour = model, line style = engine; X: where a Transformer's curve crosses a "
                               "Mamba model's).", tokens_per_s),
    "memory": FigureSpec("Peak memory vs visual tokens and vs batch", "Peak GPU memory while generating: a "
                         "Transformer's KV cache grows with the prompt, a Mamba state does not.", memory),
    "long_context": FigureSpec("Long visual contexts", "At batch 1 from one image to many per prompt: a Transformer's "
                               "KV cache, peak memory and time to first token climb with the visual tokens while a "
                               "Mamba model's state stays the same size and its decode rate holds (X: where the "
                               "Transformer's curve crosses a Mamba model's).", long_context),
    "full_batch": FigureSpec("Full batches", "The largest batch that fits on the GPU, found by trying, falls with the "
                             "visual tokens as a Transformer's KV cache fills the memory while thousands of Mamba "
                             "states still fit, and with it the decode rate a server reaches (X: crossovers).",
                             full_batch),
    "ttft": FigureSpec("Time to first token, split", "Time to first token at batch 1, split into the vision tower, "
                       "the projector and the LLM prefill.", ttft_split),
    "accuracy": FigureSpec("Accuracy per benchmark", "Measured scores (mini, lite and limited runs marked; error bars: "
                           "95% intervals) and, separately, the papers' reported scores.", accuracy),
    "ablation": FigureSpec("Projector x backbone ablation", "The ablation's scores (mean over seeds, ± half-width of "
                           "the 95% interval where it has one) as heatmaps, one per task.",
                           ablation),
    "speed_ratio": FigureSpec("Speed ratio Mamba / Transformer", "Mamba over Transformer tokens/s under the same "
                              "engine, next to the ratio the papers' mixed engines give.", speed_ratio),
}


def save(fig: Figure, folder: Path, name: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, options in SAVE.items():
        paths.append(folder / f"{name}.{ext}")
        fig.savefig(paths[-1], bbox_inches="tight", **options)
    return paths


def draw(name: str, results: Results) -> tuple[Figure, list[str]]:
    """One figure and the result files it came from; NoData when its results are absent."""
    with matplotlib.rc_context({"svg.hashsalt": "qbench", "font.size": 9}):
        fig, rows = FIGURES[name].draw(results)
    fig.tight_layout()
    return fig, sources_of(rows)
