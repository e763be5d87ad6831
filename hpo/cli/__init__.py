"""The ``agvp-hpo`` command line. One module per command group; this one only wires them."""

from __future__ import annotations

import typer

from hpo.cli.data import data_app
from hpo.cli.evaluate import evaluate
from hpo.cli.plan import plan
from hpo.cli.plot import plot
from hpo.cli.service import serve, submit
from hpo.cli.study import best, check, export, resume, run, status, stop
from hpo.cli.train import train
from hpo.cli.validate import validate

app = typer.Typer(
    name="agvp-hpo",
    help="Multi-fidelity hyper-parameter optimisation for aerial-ground video person re-identification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.command()(train)
app.command()(evaluate)
app.command()(plan)
for command in (validate, run, resume, status, best, export, plot, stop, check, serve, submit):
    app.command()(command)


def main() -> None:
    """Console-script entry point."""
    app()
