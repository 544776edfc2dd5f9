"""`qbench report`: tables (Markdown, LaTeX, CSV), figures (PNG, PDF) and a README from the files under results/."""

from __future__ import annotations

from pathlib import Path

from qbench.report.collect import KINDS, Results, SkippedResult, collect
from qbench.report.figures import FIGURES, NoData, draw, save
from qbench.report.readme import Artefact, write_readme
from qbench.report.tables import TABLES

__all__ = ["Artefact", "Results", "SkippedResult", "build_report", "collect"]

TABLE_NEEDS = {"accuracy": "runs", "speed": "speed", "speed_ratio": "speed", "comparisons": "runs",
               "ablation": "ablation", "ablation_differences": "ablation_differences", "training": "training"}
TABLE_MISSING = {"comparisons": "no two runs over the same samples yet: it needs two models' runs of one suite and "
                                 "limit, each with its samples.jsonl",
                 "ablation_differences": "no surviving difference yet: an ablation with differences (`qbench ablate`) "
                                          "lists the pairs it tested in its differences.csv"}
TABLE_EXTENSIONS, FIGURE_EXTENSIONS = ("md", "tex", "csv"), ("png", "pdf")


def table_artefacts(results: Results, folder: Path) -> list[Artefact]:
    artefacts = []
    for name, build in TABLES.items():
        table = build(results)
        artefact = Artefact("table", name, table.title, table.description, sources=table.sources)
        if table.frame.empty:
            artefact.missing = TABLE_MISSING.get(name) or \
                f"no rows yet: it needs files matching `{KINDS[TABLE_NEEDS[name]].pattern}`"
        else:
            artefact.files, artefact.markdown = table.write(folder), table.markdown()
        artefacts.append(artefact)
    return artefacts


def figure_artefacts(results: Results, folder: Path) -> list[Artefact]:
    artefacts = []
    for name, spec in FIGURES.items():
        artefact = Artefact("figure", name, spec.title, spec.description)
        try:
            fig, artefact.sources = draw(name, results)
        except NoData as missing:
            artefact.missing = str(missing)
        else:
            artefact.files = save(fig, folder, name)
        artefacts.append(artefact)
    return artefacts


def remove_stale(out: Path) -> None:
    """Delete the report's own earlier outputs (only names it writes), so a vanished result leaves nothing behind."""
    for folder, names, extensions in ((out / "tables", TABLES, TABLE_EXTENSIONS),
                                      (out / "figures", FIGURES, FIGURE_EXTENSIONS)):
        for name in names:
            for ext in extensions:
                (folder / f"{name}.{ext}").unlink(missing_ok=True)
    for name in TABLES:
        (out / "tables" / f"{name}_full.csv").unlink(missing_ok=True)


def build_report(results: str | Path = "results", out: str | Path = "results/report") -> list[Artefact]:
    """Read every result under `results` and write the report to `out`; returns what was made and what was not."""
    collected = collect(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    artefacts = table_artefacts(collected, out / "tables") + figure_artefacts(collected, out / "figures")
    write_readme(collected, artefacts, out)
    return artefacts
