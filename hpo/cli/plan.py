"""``agvp-hpo plan``: the Hyperband bracket table for a maximum budget and reduction factor.

The numbers are Hyperband's Algorithm 1 (Li et al., JMLR 2018), computed by
:func:`hpo.schedulers.brackets.plan_hyperband`. The table printed in the paper for R = 81, eta = 3 (bracket
sizes 81, 27, 9, 6, 5) does not follow from Algorithm 1, which gives 81, 34, 15, 8, 5; we implement
Algorithm 1.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from hpo.cli._common import console, user_errors
from hpo.schedulers.brackets import HyperbandPlan, plan_hyperband


def _render(plan: HyperbandPlan, unit: str = "epochs") -> None:
    """The bracket table; ``unit`` names the resource (``units`` for a data-fraction fidelity)."""
    table = Table(
        title=(
            f"Hyperband plan: R = {plan.max_resource} {unit}, eta = {plan.reduction_factor}, "
            f"r = {plan.min_resource}, s_max = {plan.s_max}"
        ),
        title_justify="left",
    )
    for column in ("bracket s", "rung", "configs", f"{unit} each", "kept", f"bracket {unit} (resumed)"):
        table.add_column(column, justify="right")
    for bracket in plan.brackets:
        for i, rung in enumerate(bracket.rungs):
            first = i == 0
            table.add_row(
                str(bracket.s) if first else "",
                str(i),
                str(rung.configs),
                str(rung.resource),
                str(rung.keep) if i < bracket.s else "-",
                str(bracket.epochs_resumed) if first else "",
                end_section=i == bracket.s,
            )
    console.print(table)
    console.print(
        f"one pass: {plan.epochs_resumed} {unit} = {plan.fbe_resumed:.2f} FBE with resumed promotions; "
        f"{plan.epochs_restarted} {unit} = {plan.fbe_restarted:.2f} FBE if promotions restart "
        f"(FBE = {unit} / {plan.max_resource})",
        highlight=False,
    )


def plan(
    max_epochs: Annotated[int, typer.Option("--max-epochs", help="R: epochs of a full training run.")],
    eta: Annotated[int, typer.Option("--eta", help="Reduction factor: keep the best 1/eta per rung.")] = 3,
    min_epochs: Annotated[int, typer.Option("--min-epochs", help="r: the smallest budget to measure.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Print the Hyperband brackets (Algorithm 1; not the paper's truncated printed table) and their cost."""
    with user_errors():
        hyperband = plan_hyperband(max_epochs, eta, min_epochs)
    if as_json:
        typer.echo(json.dumps(hyperband.to_dict(), indent=1))
    else:
        _render(hyperband)
