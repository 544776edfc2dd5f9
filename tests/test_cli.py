"""The `qbench` command as a user meets it: one name for one thing in every command (old spellings still work), help
for every option, flags that are flags, a models table that fits 100 columns, and quiet unless asked."""

from typer.testing import CliRunner

from qbench.cli import app
from qbench.presets import ALIASES, get_preset, preset_names


def qbench_cli(*args, **env):
    return CliRunner(env={"COLUMNS": "100", **env}).invoke(app, [str(arg) for arg in args])


def test_the_models_table_fits_100_columns_with_aliases_and_weight_sources():
    result = qbench_cli("models")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 100 and "…" not in result.output
    for name in preset_names():
        (row,) = [line for line in lines if line.split() and line.split()[0] == name]
        weights = get_preset(name).weights
        assert (weights.partition(":")[2] or weights) in row
        assert all(alias in row.split() for alias, target in ALIASES.items() if target == name)
