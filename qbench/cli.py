"""The `qbench` command: one short function per subcommand, each calling into the package."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Benchmark and evaluation harness for multimodal LLMs on Mamba backbones.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()


@app.callback()
def main() -> None:
    """qbench: accuracy, speed and memory of Mamba and Transformer VLMs, measured the same way."""


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table.")) -> None:
    """List the model presets with their parameter counts (built on the meta device: no memory used)."""
    from qbench.presets import ALIASES, get_preset, preset_names
    from qbench.vlm import build_vlm

    rows = []
    for name in preset_names():
        spec = get_preset(name)
        vlm = build_vlm(spec, device="meta")
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        rows.append({"name": name, "aliases": aliases, "vision": spec.vision.kind, "projector": spec.projector.kind,
                     "backbone": spec.backbone.kind, "visual_tokens": vlm.visual_tokens,
                     **vlm.parameter_counts(), "weights": spec.weights})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="qbench model presets")
    for column in ("name", "vision", "projector", "backbone", "visual tokens", "vision", "projector", "LLM", "total"):
        table.add_column(column, justify="right" if column[0].isupper() or column in ("visual tokens", "total") else "left")
    for row in rows:
        table.add_row(row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else ""), row["vision"],
                      row["projector"], row["backbone"], str(row["visual_tokens"]),
                      *(human(row[k]) for k in ("vision_params", "projector_params", "llm_params", "total_params")))
    console.print(table)


def human(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


if __name__ == "__main__":
    app()
