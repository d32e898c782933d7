"""``mlmkit masking ...``: inspect the masking-strategy registry."""

from __future__ import annotations

import typer
from rich.table import Table

from mlmkit.cli.common import out_console, print_json, user_errors

app = typer.Typer(help="Inspect masking strategies.", no_args_is_help=True)


@app.command("ls")
@user_errors
def list_strategies(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List registered masking strategies with their parameters and papers."""
    from mlmkit.masking.registry import get_strategy_class, strategy_names

    rows = []
    for name in strategy_names():
        cls = get_strategy_class(name)
        rows.append({"name": name, "description": cls.description, "paper": cls.paper,
                     "parameters": {k: v for k, v in cls.parameters().items()}})
    if as_json:
        print_json(rows)
        return
    table = Table(title="masking strategies", show_lines=True)
    for column in ("name", "parameters (defaults)", "description", "paper"):
        table.add_column(column)
    for row in rows:
        params = "\n".join(f"{k}={v!r}" for k, v in row["parameters"].items())
        table.add_row(row["name"], params, row["description"], row["paper"])
    out_console.print(table)
