"""``agvp-hpo validate SPEC.yaml`` (and ``agvp-hpo run --dry-run``): every check a run makes before it starts
anything, then what the study would do - the trainer configuration of the space's corners and of a few
sampled points, the rung plan, and the budget it implies (epochs, full-budget equivalents, GPU-hours with an
epoch-time estimate). Exit 0 when the study is valid, 2 (one line naming file, field and rule) when not.
Nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from hpo.cli._common import console, user_errors

EpochTimeOption = Annotated[
    str | None,
    typer.Option("--epoch-time", help="Estimated time of one epoch of one trial (e.g. 20m): adds GPU-hours."),
]


def describe_study(spec: Any, source: str, epoch_time: str | None) -> None:
    """Print the checked study: configurations of corners and samples, rungs, budget."""
    from hpo.cli.plan import _render as render_plan
    from hpo.schedulers.brackets import milestones, plan_hyperband
    from hpo.schedulers.mfho import round_plan
    from hpo.study.build import max_total_epochs, prior_from_spec, trainer_settings
    from hpo.study.spec import parse_duration
    from trainers.protocol import get_trainer

    trainer = get_trainer(spec.trainer.name)
    settings = trainer_settings(spec)
    space = spec.space
    points = {
        "low corner": space.from_unit(np.zeros(space.dimensions)),
        "high corner": space.from_unit(np.ones(space.dimensions)),
    }
    rng = np.random.default_rng(spec.searcher.seed)
    for i in range(3):
        points[f"sample {i + 1}"] = space.sample(rng)
    prior = prior_from_spec(spec)
    if prior is not None:
        first = prior.configuration(space, np.random.default_rng(spec.searcher.seed))
        points = {"prior": first, **points}
    resolved = {label: trainer.resolved_config(settings, params) for label, params in points.items()}
    console.print(
        f"[bold green]{source}: valid[/] - study {spec.name}: {space.dimensions} searched parameters, "
        f"trainer {spec.trainer.name} (preset {spec.trainer.preset}), scheduler {spec.scheduler.kind}, "
        f"searcher {spec.searcher.kind}, objective {spec.objective.metric} ({spec.objective.mode})",
        soft_wrap=True,
    )
    table = Table(title="trainer configuration (as trials resolve it)", title_justify="left")
    table.add_column("key", no_wrap=True)
    for label in points:
        table.add_column(label, justify="right")
    shown = [*space.names, *(k for k in ("optim.epochs", "runtime.threads") if k not in space)]
    for key in shown:
        cells = [_cell(config, key) for config in resolved.values()]
        if any(cell != "-" for cell in cells):
            table.add_row(key, *cells)
    console.print(table)
    fidelity = spec.fidelity
    if prior is not None:
        missing = [k for k in space.unit_names if k not in prior.values]
        console.print(
            f"prior: {len(prior.values)} of {space.dimensions} searched parameters"
            + (f" (the others drawn at random: {', '.join(missing)})" if missing else "")
            + (
                f"; hyperband trains it alone to {fidelity.max} epochs first (1 full-budget equivalent)"
                if spec.scheduler.kind == "hyperband"
                else "; it is the first configuration"
            ),
            highlight=False,
        )
    rungs = milestones(fidelity.max, fidelity.eta, fidelity.min)
    unit = "units" if fidelity.retrains else "epochs"  # a data-fraction unit is 1/max of a full run
    if fidelity.resource == "epochs":
        console.print(f"rungs (epochs): {', '.join(map(str, rungs))}", highlight=False)
    else:
        budgets = [fidelity.budget(r) for r in rungs]
        console.print(
            f"rungs ({fidelity.resource}): "
            + ", ".join(
                f"{r} = {b.epochs} epochs on {b.data_fraction:.0%} of the identities"
                for r, b in zip(rungs, budgets, strict=True)
            )
            + (
                f"; a promotion retrains from scratch (1 unit = 1/{fidelity.max} of a full run)"
                if fidelity.retrains
                else "; a promotion continues from the checkpoint with more data"
            ),
            highlight=False,
        )
    if spec.scheduler.kind in ("hyperband", "mfho-hedge"):
        render_plan(plan_hyperband(fidelity.max, fidelity.eta, fidelity.min), unit)
    if spec.scheduler.kind == "mfho-hedge":
        console.print(
            "mfho-hedge uses these brackets but not these counts: the first configurations run to "
            f"{fidelity.max} epochs (bracket 0), then each bracket gets new configurations in proportion to "
            "how well its first rung has ranked them so far (none while it misleads)",
            highlight=False,
        )
    elif spec.scheduler.kind == "mfho":
        plan = round_plan(
            fidelity.max,
            fidelity.eta,
            fidelity.min,
            spec.scheduler.initial_fidelity,
            spec.scheduler.promote_fraction,
        )
        steps = " -> ".join(f"{n} at {epochs}" for epochs, n in plan)
        rounds = spec.scheduler.max_rounds
        console.print(
            f"each round (configurations at epochs): {steps}; later rounds promote only what beats earlier "
            f"rounds; {'until the budget ends' if rounds is None else f'{rounds} rounds at most'}",
            highlight=False,
        )
    epochs = max_total_epochs(spec)
    trials = spec.budget.max_trials
    limits = []
    if epochs is not None:
        limits.append(f"{epochs} {unit} = {epochs / fidelity.max:.1f} full-budget equivalents")
    if trials is not None:
        limits.append(f"{trials} trials (at most {trials * fidelity.max} {unit})")
    if spec.budget.wall_clock is not None:
        limits.append(f"{spec.budget.wall_clock / 3600:.1f} h of wall clock")
    console.print(f"budget: {'; '.join(limits)}", highlight=False)
    bounds = [b for b in (epochs, trials * fidelity.max if trials else None) if b is not None]
    if epoch_time is not None and bounds:
        bound = min(bounds)
        # a data-fraction unit is 1/max of a full run of schedule_epochs epochs on every identity
        full_epochs = bound * fidelity.schedule_epochs / fidelity.max if fidelity.retrains else bound
        hours = full_epochs * parse_duration(epoch_time) / 3600
        gpu, packed = spec.resources.gpu, spec.resources.trials_per_gpu
        if isinstance(packed, int):
            from hpo.ray_backend.packing import gpu_share  # the share the runner reserves, not 1/N

            gpu = gpu_share(packed)
        if packed == "auto":
            cost = "GPU-hours depend on the trials per GPU the probe picks (trials_per_gpu: auto)"
        elif gpu:
            cost = f"{hours * gpu:.1f} GPU-hours ({gpu:g} GPU per trial)"
        else:
            cost = "resources.gpu is 0"
        console.print(
            f"at most {full_epochs:g} epochs on every identity x {epoch_time} = {hours:.1f} trial-hours: "
            f"{cost}",
            highlight=False,
        )


def _cell(config: dict[str, Any], key: str) -> str:
    if key in config:
        value = config[key]
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    if key == "data.transform.size" and "data.transform.height" in config:
        return f"{config['data.transform.height']}x{config['data.transform.width']}"
    return "-"


def validate(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="Study file (see search_spaces/).")],
    epoch_time: EpochTimeOption = None,
) -> None:
    """Check a study file completely (schema, trainer keys and values, couplings, objective) without running
    it; print what it would do. Exit 0 if valid, 2 with one line naming the file and field if not."""
    from hpo import api
    from hpo.study import resolve_study_path

    with user_errors():
        path = resolve_study_path(spec_path)  # the file the messages name (a bundled one for a bare name)
        spec = api.load_study(path)
        describe_study(spec, str(path), epoch_time)
