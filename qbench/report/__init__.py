"""`qbench report`: tables (Markdown, LaTeX, CSV), figures (PNG, PDF) and a README from the result files asked for.

A report writes where it is told and records what it read in report.json (its Request, and the files it made). It
refuses an --output holding a report of other inputs, or files it did not make, rather than mixing or replacing them;
rerun with the same inputs, it replaces its own files (those of a vanished result too).
"""

from __future__ import annotations

import json
from pathlib import Path

from qbench.folder import write_atomic
from qbench.inputs import UserError, ensure_writable, read_json
from qbench.report.collect import KINDS, Request, Results, SkippedResult, collect
from qbench.report.figures import FIGURES, NoData, draw, figures_of, save
from qbench.report.readme import Artefact, write_readme
from qbench.report.tables import TABLES, tables_of

__all__ = ["Artefact", "Request", "Results", "SkippedResult", "build_report", "collect"]

TABLE_NEEDS = {"accuracy": "runs", "speed": "speed", "speed_ratio": "speed", "comparisons": "runs",
               "ablation": "ablation", "ablation_differences": "ablation_differences", "training": "training"}
TABLE_MISSING = {"comparisons": "no two runs over the same samples yet: it needs two models' runs of one suite and "
                                 "limit, each with its samples.jsonl",
                 "ablation_differences": "no surviving difference yet: an ablation with differences (`qbench ablate`) "
                                          "lists the pairs it tested in its differences.csv"}
TABLE_EXTENSIONS, FIGURE_EXTENSIONS = ("md", "tex", "csv"), ("png", "pdf")
MANIFEST = "report.json"
SCHEMA = "qbench.report/1"


def table_artefacts(results: Results, folder: Path) -> list[Artefact]:
    artefacts = []
    for name, table in tables_of(results):
        artefact = Artefact("table", table.name, table.title, table.description, sources=table.sources)
        if table.frame.empty:
            artefact.missing = TABLE_MISSING.get(name) or \
                f"no rows yet: it needs files matching `{KINDS[TABLE_NEEDS[name]].pattern}`"
        else:
            artefact.files, artefact.markdown = table.write(folder), table.markdown()
        artefacts.append(artefact)
    return artefacts


def figure_artefacts(results: Results, folder: Path) -> list[Artefact]:
    artefacts = []
    for name, title, spec, drawer in figures_of(results):
        artefact = Artefact("figure", name, title, spec.description)
        try:
            fig, artefact.sources = draw(drawer)
        except NoData as missing:
            artefact.missing = str(missing)
        else:
            artefact.files = save(fig, folder, name)
        artefacts.append(artefact)
    return artefacts


def own_files(out: Path) -> list[Path]:
    """The files an earlier report in `out` made: those its report.json lists, or for a report from before
    report.json the names such a report wrote."""
    manifest = out / MANIFEST
    if manifest.is_file():
        return [out / name for name in read_json(manifest, f"delete {out} or give another --output").get("files", [])]
    return [out / "README.md"] + [folder / f"{name}{suffix}.{ext}" for folder, names, extensions, suffixes in (
        (out / "tables", TABLES, TABLE_EXTENSIONS, ("", "_full")), (out / "figures", FIGURES, FIGURE_EXTENSIONS, ("",)))
        for name in names for ext in extensions for suffix in suffixes]


def check_out(out: Path, request: Request) -> None:
    """Refuse an --output holding a report of other inputs, or files no report made (naming it and what differs)."""
    manifest = out / MANIFEST
    if manifest.is_file():
        earlier = read_json(manifest, f"delete {out} or give another --output").get("request") or {}
        differs = [f"{key} {earlier.get(key)!r} vs {value!r}" for key, value in request.to_dict().items()
                   if earlier.get(key) != value]
        if differs:
            raise UserError(f"{out} holds a report of other inputs ({'; '.join(differs)}); it is not replaced: give "
                            "another --output, or the same inputs to regenerate it")
        return
    readme = out / "README.md"
    earlier_report = readme.is_file() and readme.read_text(errors="replace").startswith("# qbench report")
    strangers = [path for path in out.iterdir() if not earlier_report] if out.is_dir() else []
    if strangers:
        raise UserError(f"{out} holds files that no qbench report made (e.g. {strangers[0].name}): give another "
                        "--output")


def build_report(request: Request | str | Path = "results", out: str | Path = "report") -> list[Artefact]:
    """Read the asked results (a Request, or a results folder) and write the report to `out`; returns what was made
    and what was not."""
    request = request if isinstance(request, Request) else Request(str(request))
    out = Path(out)
    collected = collect(request)
    check_out(out, request)
    ensure_writable(out, "--output")
    for path in own_files(out):
        path.unlink(missing_ok=True)  # a vanished result leaves nothing behind
    artefacts = table_artefacts(collected, out / "tables") + figure_artefacts(collected, out / "figures")
    readme = write_readme(collected, artefacts, out)
    made = [readme, *(path for artefact in artefacts for path in artefact.files)]
    write_atomic(out / MANIFEST, json.dumps({"schema": SCHEMA, "request": request.to_dict(),
                                             "files": [path.relative_to(out).as_posix() for path in made]},
                                            indent=1) + "\n")
    return artefacts
