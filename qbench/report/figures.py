"""The report's figures (matplotlib, Agg), each written as PNG and PDF with one fixed colour per model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

from qbench.presets import preset_names
from qbench.report.collect import Results
from qbench.report.reported import PAPER_NEW_TOKENS
from qbench.speed.environment import device_slug
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


def legends(ax: Axes, models: list[str], engines: list[str] = (), extra: list[object] = ()) -> None:
    """A legend of model colours, and of engine line styles when several engines are drawn (and `extra` handles),
    beside the figure's panels: never over the data."""
    handles = [Patch(color=model_colour(m, models), label=m) for m in model_order(models)]
    handles += [Line2D([], [], color="black", linestyle=engine_style(e)[0], marker=engine_style(e)[1],
                       label=f"engine: {e}") for e in sorted(engines)]
    outside(ax.figure, [*handles, *extra])


def outside(fig: Figure, handles: list[object]) -> None:
    """A legend to the right of every panel (the saved image is widened to hold it)."""
    fig.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)


def successful_speed(results: Results, batch_one: bool = True) -> pd.DataFrame:
    """The newest successful speed rows (at batch 1, asked, where `batch_one`)."""
    speed = latest_speed(results)
    return batch_one_ok(speed) if batch_one else speed[speed["status"] == "ok"]


def batch_one_ok(speed: pd.DataFrame) -> pd.DataFrame:
    """The successful rows measured at batch 1 as asked (not found by a largest-batch search)."""
    return speed[(speed["status"] == "ok") & (speed["batch"] == 1) & speed["batch_search"].isna()]


def by_new_tokens(speed: pd.DataFrame, widest: str | None = None) -> list[int]:
    """The counts of new tokens in `speed`, the one with the most rows (or the most distinct `widest` values) first:
    rows generating different numbers of tokens are different measurements."""
    spread = speed.groupby("new_tokens")[widest].nunique() if widest else speed.groupby("new_tokens").size()
    return [int(count) for count, _ in sorted(spread.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def curve_lengths(results: Results) -> list[int]:
    """The counts of new tokens worth a figure against visual tokens: the first of `by_new_tokens`, and the others
    measured at batch 1 at more than one visual token count."""
    speed = successful_speed(results)
    counts = by_new_tokens(speed)
    return counts[:1] + [count for count in counts[1:]
                         if speed.loc[speed["new_tokens"] == count, "visual_tokens"].nunique() > 1]


def ok_speed(results: Results, batch_one: bool = True, widest: str | None = None,
             new_tokens: int | None = None) -> pd.DataFrame:
    """Successful speed rows at one count of new tokens: `new_tokens`, or the first of `by_new_tokens`."""
    speed = successful_speed(results, batch_one)
    if speed.empty:
        raise NoData("no speed sweep with successful rows under results/speed/")
    return speed[speed["new_tokens"] == (by_new_tokens(speed, widest)[0] if new_tokens is None else new_tokens)]


def speed_caption(fig: Figure, speed: pd.DataFrame) -> None:
    (device,) = set(speed["gpu"])  # one device per figure (FigureSpec.parts)
    fig.suptitle(f"{device}; {int(speed['new_tokens'].iloc[0])} new tokens", fontsize=9)


def lines(ax: Axes, frame: pd.DataFrame, x: str, y: str, models: list[str], crossings: bool = True,
          **style: object) -> list[str]:
    """One line per model x engine x GPU (colour = model, style = engine) through the positive values (the axes are
    logarithmic; the CPU measures no GPU memory), and an X where a Transformer's line crosses a Mamba model's;
    returns the engines drawn."""
    engines = sorted(set(frame["engine"]))
    for (gpu, model, engine), group in frame.groupby(["gpu", "model", "engine"], sort=True):
        group = group[group[y] > 0].sort_values(x)
        linestyle, marker = engine_style(engine)
        ax.plot(group[x], group[y], **{"marker": marker, "linestyle": linestyle, "color": model_colour(model, models),
                                       **style})
    if crossings:
        mark_crossovers(ax, frame, x, y)
    return engines


CROSSOVER = "crossover"  # the gid of the marks where two curves cross: not a measured point


TICK_GAP = 0.3  # of a doubling: a measured value closer than this to the last labelled one gets its tick, no label


def measured_ticks(ax: Axes) -> None:
    """x ticks at the values measured (the points of the panel's lines), and no others; labels where they fit."""
    values = sorted({float(x) for line in ax.get_lines() if line.get_gid() != CROSSOVER for x in line.get_xdata()})
    labels, last = [], -np.inf
    for value in values:
        fits = np.log2(value) - last >= TICK_GAP
        labels.append((f"{value:,.0f}" if value >= 1 else f"{value:g}") if fits else "")
        last = np.log2(value) if fits else last
    if values:
        ax.set_xticks(values, labels, rotation=45 if len(values) > 6 else 0, fontsize=7)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_minor_locator(NullLocator())


def log_axes(ax: Axes, y: bool = True) -> None:
    """Log axes (x in powers of two, ticked at the measured values), ticks as plain numbers."""
    ax.set_xscale("log", base=2)
    plain = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")
    measured_ticks(ax)
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
                ax.plot(cx, cy, marker="X", color="black", markersize=8, linestyle="none", zorder=5, gid=CROSSOVER)
                ax.annotate(f"{cx:,.0f}", (cx, cy), textcoords="offset points", xytext=(5, 5), fontsize=7)


def tokens_per_s(results: Results, new_tokens: int | None = None) -> tuple[Figure, pd.DataFrame]:
    speed = ok_speed(results, new_tokens=new_tokens)
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
    if not (tokens["peak_mem_gib"] > 0).any():
        raise NoData("no peak GPU memory measured (a CPU sweep measures none)")
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
    outside(fig, [Patch(facecolor="grey", alpha=a, hatch=h, edgecolor="black", label=n)
                  for n, a, h in COMPONENTS.values()])
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
    table = table.assign(model=[m if n == REPORTED else f"{m} ({w}; {d})"  # a bar per model, weights and device
                                for m, w, d, n in zip(table["model"], table["weights"], table["device"],
                                                      table["numbers"])])
    keys = ["model", "numbers"]
    long = table.melt(id_vars=keys, value_vars=list(half_of), var_name="benchmark").dropna()
    halves = table.melt(id_vars=keys, value_vars=list(half_of.values()), value_name="half")
    halves["benchmark"] = halves["variable"].map({half: benchmark for benchmark, half in half_of.items()})
    long = long.merge(halves[[*keys, "benchmark", "half"]], on=[*keys, "benchmark"])
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


ABLATION_COLUMNS = 4  # heatmaps per row: four fit a page's width readably
MIN_SPAN = 10.0  # percentage points: a colour scale never stretches a smaller range over its whole width


def task_scales(cells: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    """One colour scale per task, the same in every ablation's figure: from the lower of its chance level and its
    lowest score to its highest, at least MIN_SPAN points wide (0.500 vs 0.502 must not look like 0 vs 100)."""
    scales = {}
    for (task, metric), group in cells.groupby(["task", "metric"]):
        low, high = np.nanmin([*group["value"], *group["chance"]]), np.nanmax(group["value"])
        pad = max(0.0, MIN_SPAN - (high - low)) / 2
        low, high = low - pad, high + pad
        shift = max(0.0, -low) - max(0.0, high - 100)  # kept within 0-100, the span kept
        scales[task, metric] = (float(low + shift), float(high + shift))
    return scales


def survivor_marks(results: Results, name: str) -> dict[tuple[str, str], str]:
    """(task, combination) -> '▲n▼m': how many surviving differences the cell wins and loses."""
    found = results.ablation_differences
    found = found[(found["name"] == name) & found["survives"].astype(bool)]
    wins: dict[tuple[str, str], list[int]] = {}
    for row in found.itertuples():
        winner, loser = (row.a, row.b) if row.difference > 0 else (row.b, row.a)
        wins.setdefault((row.task, winner), [0, 0])[0] += 1
        wins.setdefault((row.task, loser), [0, 0])[1] += 1
    return {key: (f"▲{up}" if up else "") + (f"▼{down}" if down else "") for key, (up, down) in wins.items()}


def ablation_heatmaps(results: Results, name: str | None = None) -> tuple[Figure, pd.DataFrame]:
    """One ablation's scores (percent) as heatmaps, a task each, four to a row: settings sorted (query counts by
    number), one colour scale per task shared with every other ablation's figure, each cell's interval half-width,
    and the surviving differences it wins (▲) and loses (▼). NoData without an ablation."""
    every = ablation_cells(results)
    if name is None or every.empty:
        raise NoData("no ablation table under results/ablation/")
    scales = task_scales(every)
    cells = every[every["name"] == name]
    marks = survivor_marks(results, name)
    tasks = sorted(set(zip(cells["task"], cells["metric"])))
    settings = list(dict.fromkeys(cells["setting"]))
    backbones = sorted(set(cells["backbone"]))
    columns = min(ABLATION_COLUMNS, len(tasks))
    rows = -(-len(tasks) // columns)
    fig, axes = canvas(rows, columns, squeeze=False,
                       figsize=(7.5, rows * (0.38 * len(settings) + 1.4) + 0.3))
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, (task, metric) in zip(axes.flat, tasks):
        group = cells[(cells["task"] == task) & (cells["metric"] == metric)]
        values = group.pivot_table(index="setting", columns="backbone", values="value", aggfunc="last")
        values = values.reindex(index=settings, columns=backbones)
        halves = group.pivot_table(index="setting", columns="backbone", values="half", aggfunc="last",
                                   dropna=False).reindex(index=settings, columns=backbones)
        combos = group.pivot_table(index="setting", columns="backbone", values="combo", aggfunc="last")
        combos = combos.reindex(index=settings, columns=backbones)
        low, high = scales[task, metric]
        image = ax.imshow(values.to_numpy(dtype=float), cmap="viridis", aspect="auto", vmin=low, vmax=high)
        ax.set_xticks(range(len(backbones)), backbones, fontsize=6, rotation=30)
        ax.set_yticks(range(len(settings)), settings if ax in axes[:, 0] else [], fontsize=7)
        for (i, j), value in np.ndenumerate(values.to_numpy(dtype=float)):
            if not np.isnan(value):
                half, combo = halves.to_numpy(dtype=float)[i, j], combos.to_numpy()[i, j]
                mark = marks.get((task, combo), "") if isinstance(combo, str) else ""
                text = "\n".join(part for part in (f"{value:.1f}", "" if np.isnan(half) else f"±{half:.1f}", mark)
                                  if part)
                ax.text(j, i, text, ha="center", va="center", fontsize=5, linespacing=1.0,
                        color="black" if image.norm(value) > 0.5 else "white")
        chance = group["chance"].dropna()
        ax.set_title(task.removeprefix("mini_") + (f" (chance {chance.iloc[0]:.1f})" if len(chance) else ""),
                     fontsize=7)
        fig.colorbar(image, ax=ax, shrink=0.9).ax.tick_params(labelsize=6)
    fig.suptitle(f"ablation {name}: score (%) ± 95% half-width; ▲/▼ surviving differences won/lost", fontsize=8)
    return fig, cells


def speed_ratio(results: Results) -> tuple[Figure, pd.DataFrame]:
    try:
        speed = ok_speed(results)
    except NoData:
        speed = latest_speed(results)
    # Several visual token counts per engine: show the median ratio of each Mamba model.
    measured = measured_ratios(speed).groupby(["device", "engine", "new tokens", "Mamba model"], as_index=False,
                                              sort=True)["ratio"].median()
    measured["group"] = [f"measured: {engine} for both\n{device}, {tokens} tokens" for device, engine, tokens
                         in zip(measured["device"], measured["engine"], measured["new tokens"])]
    reported = reported_ratios()
    reported["group"] = f"reported: CUDA graph vs eager\nA100 (papers), {PAPER_NEW_TOKENS} tokens"
    on_gpus = not (measured["device"] == "cpu").any()  # the papers' GPU numbers never share an axis with a CPU's
    frame = pd.concat([measured, reported[["Mamba model", "ratio", "group"]] if on_gpus else None],
                      ignore_index=True)
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
    legends(ax, models)
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
    legends(axes[0], models, engines)
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
    single = batch_one_ok(speed).merge(searched[keys].drop_duplicates(), on=keys)
    models = sorted(set(searched["model"]))
    fig, axes = canvas(1, 2, figsize=(11, 4.3))
    engines = lines(axes[0], searched, "visual_tokens", "largest_batch", models)
    limit = searched[searched["batch_search"].str.startswith("limit")]
    reached = axes[0].scatter(limit["visual_tokens"], limit["largest_batch"], marker="^", s=80, color="black",
                              zorder=4, label="the search's limit: at least this many fit")
    axes[0].set(ylabel="sequences", title="largest batch that fits (found by trying)")
    measured = searched[searched["status"] == "ok"]
    lines(axes[1], measured, "visual_tokens", "decode_tokens_per_s", models)
    lines(axes[1], single, "visual_tokens", "decode_tokens_per_s", models, crossings=False, linestyle=":",
          marker=".")
    axes[1].set(ylabel="decode tokens/s", title="decode tokens/s at the largest batch (solid) and at batch 1 (dotted)")
    log_grids(axes, "visual tokens per prompt")
    legends(axes[1], models, engines, extra=[reached] if len(limit) else [])
    speed_caption(fig, searched)
    return fig, pd.concat([searched, single])


Drawer = Callable[[], tuple[Figure, pd.DataFrame]]


@dataclass(frozen=True)
class FigureSpec:
    title: str
    description: str
    draw: Callable[..., tuple[Figure, pd.DataFrame]]  # the figure and the result rows it drew from
    # "device": one figure per device measured; "device-length": one per device and count of new tokens (the count
    # with the most rows unnamed); "ablation": one per ablation
    split: str = "whole"

    def parts(self, results: Results) -> list[tuple[str, Drawer]]:
        """(what the part is of, its drawer) for each figure this spec makes: one per device (GPUs first), per
        device and length, or per ablation, or one for all; a split with nothing to split draws the whole (which
        says what it lacks)."""
        if self.split.startswith("device"):
            devices = sorted(set(results.speed["gpu"]), key=lambda device: (device == "cpu", device))
            found = []
            for device in devices:
                measured = results.on(device.__eq__)
                if self.split == "device-length":
                    found += [(f"{device}, {count} new tokens" if i else device,
                               partial(self.draw, measured, new_tokens=count))
                              for i, count in enumerate(curve_lengths(measured))]
                else:
                    found.append((device, partial(self.draw, measured)))
        elif self.split == "ablation":
            found = [(name, partial(self.draw, results, name)) for name in sorted(set(results.ablation["name"]))]
        else:
            found = []
        return found or [("", partial(self.draw, results))]


FIGURES: dict[str, FigureSpec] = {
    "tokens_per_s": FigureSpec("Tokens/s vs visual tokens", "Throughput at batch 1 as the visual token count grows "
                               "(colour = model, line style = engine; X: where a Transformer's curve crosses a "
                               "Mamba model's); one figure per count of new tokens measured.", tokens_per_s,
                               "device-length"),
    "memory": FigureSpec("Peak memory vs visual tokens and vs batch", "Peak GPU memory while generating: a "
                         "Transformer's KV cache grows with the prompt, a Mamba state does not.", memory, "device"),
    "long_context": FigureSpec("Long visual contexts", "At batch 1 from one image to many per prompt: a Transformer's "
                               "KV cache, peak memory and time to first token climb with the visual tokens while a "
                               "Mamba model's state stays the same size and its decode rate holds (X: where the "
                               "Transformer's curve crosses a Mamba model's).", long_context, "device"),
    "full_batch": FigureSpec("Full batches", "The largest batch that fits on the GPU, found by trying, falls with the "
                             "visual tokens as a Transformer's KV cache fills the memory while thousands of Mamba "
                             "states still fit, and with it the decode rate a server reaches (X: crossovers).",
                             full_batch, "device"),
    "ttft": FigureSpec("Time to first token, split", "Time to first token at batch 1, split into the vision tower, "
                       "the projector and the LLM prefill.", ttft_split, "device"),
    "accuracy": FigureSpec("Accuracy per benchmark", "Measured scores (mini, lite and limited runs marked; error bars: "
                           "95% intervals) and, separately, the papers' reported scores.", accuracy),
    "ablation": FigureSpec("Projector x backbone ablation", "An ablation's scores in percent (mean over seeds, ± "
                           "half-width of the 95% interval where it has one) as heatmaps, one per task: settings "
                           "sorted (query counts by number), one colour scale per task shared by every ablation's "
                           "figure, ▲n/▼m: the surviving differences (differences.md) a cell wins and loses.",
                           ablation_heatmaps, "ablation"),
    "speed_ratio": FigureSpec("Speed ratio Mamba / Transformer", "Mamba over Transformer tokens/s under the same "
                              "engine, next to the ratio the papers' mixed engines give.", speed_ratio, "device"),
}


def save(fig: Figure, folder: Path, name: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, options in SAVE.items():
        paths.append(folder / f"{name}.{ext}")
        fig.savefig(paths[-1], bbox_inches="tight", **options)
    return paths


def figures_of(results: Results) -> list[tuple[str, str, FigureSpec, Drawer]]:
    """(name, title, spec, drawer) of every figure: a split figure named <name>_<device or ablation>."""
    found = []
    for name, spec in FIGURES.items():
        for part, drawer in spec.parts(results):
            suffix = part_slug(part) if spec.split.startswith("device") else part
            found.append((f"{name}_{suffix}" if part else name, f"{spec.title}: {part}" if part else spec.title, spec,
                          drawer))
    return found


def part_slug(part: str) -> str:
    """'NVIDIA H100 80GB HBM3, 64 new tokens' -> 'nvidia-h100-80gb-hbm3_64-new-tokens'."""
    device, _, length = part.partition(", ")
    return device_slug({"gpu": device}) + (f"_{length.replace(' ', '-')}" if length else "")


def draw(drawer: Drawer) -> tuple[Figure, list[str]]:
    """One figure and the result files it came from; NoData when its results are absent."""
    with matplotlib.rc_context({"svg.hashsalt": "qbench", "font.size": 9}):
        fig, rows = drawer()
    fig.tight_layout()
    return fig, sources_of(rows)
