"""``agvp-hpo run | resume | status | best | export | stop``: a study's whole life on the command line."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hpo.cli._common import console, fail, user_errors
from hpo.cli.validate import EpochTimeOption, describe_study

if TYPE_CHECKING:
    from hpo.session.recorder import StudySummary

RootOption = Annotated[
    Path, typer.Option("--root", help="Results root to find studies by name in (a study path also works).")
]
AddressOption = Annotated[
    str | None, typer.Option("--address", help="Join this Ray cluster (e.g. ray://HEAD:10001 or HEAD:6379).")
]


def _duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def render_summary(summary: StudySummary) -> Group:
    """The live view: trials by state, best so far, budget used, per-rung occupancy."""
    counts = summary.counts
    states = ", ".join(
        f"{counts.get(s, 0)} {s}" for s in ("running", "paused", "completed", "stopped", "failed")
    )
    best = summary.best
    best_text = f"{best[0]:.4f} (trial {best[1]} at {best[2]} epochs)" if best else "-"
    epochs = summary.total_resource
    limit = summary.max_total_resource
    fbe = epochs / summary.max_resource
    budget = f"{epochs} epochs ({fbe:.1f} full-budget equivalents)" + (f" of {limit}" if limit else "")
    trials = f"{summary.trials}" + (f"/{summary.max_trials}" if summary.max_trials else "")
    clock = _duration(summary.elapsed)
    if summary.wall_clock:
        clock += f" of {_duration(summary.wall_clock)}"
    at_once = summary.concurrency if summary.concurrency is not None else "?"
    head = Text.from_markup(
        f"[bold]{summary.study}[/]  trials {trials}: {states}\n"
        f"best {summary.metric}: [bold green]{best_text}[/]\n"
        f"budget: {budget}; time {clock}; {at_once} at once"
        + (f"\n[yellow]stopping: {summary.stopping}[/]" if summary.stopping else "")
    )
    rungs = Table(title="trials per rung", title_justify="left")
    rungs.add_column("epochs", justify="right")
    rungs.add_column("trials", justify="right")
    for milestone, reached in summary.rungs:
        rungs.add_row(str(milestone), str(reached))
    return Group(head, rungs)


def best_table(best: Any, metric: str, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("rank", "trial", "status", "epochs", metric, "parameters"):
        table.add_column(column, justify="left" if column in ("status", "parameters") else "right")
    for rank, row in enumerate(best.itertuples(index=False), start=1):
        params = ", ".join(f"{k}={_short(v)}" for k, v in row.params.items())
        table.add_row(str(rank), str(row.trial_id), row.status, str(row.resource), f"{row.value:.4f}", params)
    return table


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_failures(failed: dict[str, Any]) -> None:
    """How many trials failed and why (the first distinct messages: ``Study.failures()``), if any did."""
    if not failed["count"]:
        return
    console.print(f"[red]{failed['count']} trial(s) failed[/]; first errors:", highlight=False)
    for error in failed["errors"]:
        console.print(f"  {error['trials']} x {error['message']}", highlight=False, soft_wrap=True)


def _finish_report(study: Any, status: str) -> None:
    """The end of ``run`` / ``resume`` (``study``: the API's Study): failures, the best configurations; exit
    1 if every trial failed."""
    print_failures(study.failures())
    if status == "failed":
        raise typer.Exit(1)
    best = study.best(k=5)
    if best.empty:
        console.print("no trial reported a value")
        return
    console.print(best_table(best, study.metric, f"best {len(best)} of study {study.spec.name}"))
    spread = rung_spread(study.rows())
    if spread is not None:
        epochs, count, low, high = spread
        console.print(
            f"at {epochs} epochs, the {count} trials measured there range from {low:.4f} to {high:.4f}"
        )
    if study.folder.best_file.is_file():
        console.print(f"best configuration: {study.folder.best_file}")


def rung_spread(rows: Any) -> tuple[int, int, float, float] | None:
    """(epochs, trials, lowest, highest value) at the highest milestone that at least two trials reached."""
    if rows.empty:
        return None
    measured = rows[(rows["rung"] >= 0) & rows["value"].notna()]
    for rung in sorted(measured["rung"].unique(), reverse=True):
        at_rung = measured[measured["rung"] == rung]
        values = at_rung.groupby("trial_id")["value"].first()
        if len(values) >= 2:
            return int(at_rung["resource"].iloc[0]), len(values), float(values.min()), float(values.max())
    return None


#: Without a terminal (nohup, a Ray job, CI), a progress line at most this often, when something changed.
LOG_EVERY_S = 10.0


def progress_line(summary: StudySummary) -> str:
    """The live view in one line, for logs."""
    counts = ", ".join(f"{n} {s}" for s, n in summary.counts.items() if n)
    best = summary.best
    best_text = f"{best[0]:.4f} (trial {best[1]} at {best[2]} epochs)" if best else "-"
    fbe = summary.total_resource / summary.max_resource
    return (
        f"{dt.datetime.now():%H:%M:%S} {summary.study}: {summary.trials} trials ({counts or 'none yet'}); "
        f"best {summary.metric} {best_text}; {summary.total_resource} epochs ({fbe:.1f} FBE); "
        f"{_duration(summary.elapsed)}" + (f"; stopping: {summary.stopping}" if summary.stopping else "")
    )


def _progress_view() -> tuple[Any, Any]:
    """A live view on a terminal; otherwise progress lines in the log (one per change, at most one per
    :data:`LOG_EVERY_S` seconds), so a study under nohup, a Ray job or CI shows what it does."""
    if not console.is_terminal:
        last: dict[str, Any] = {"at": 0.0, "key": None}

        def log(summary: StudySummary) -> None:
            key = (summary.counts, summary.best, summary.total_resource, summary.stopping)
            now = time.monotonic()
            if key != last["key"] and now - last["at"] >= LOG_EVERY_S:
                last.update(at=now, key=key)
                console.print(progress_line(summary), highlight=False, soft_wrap=True)

        return contextlib.nullcontext(), log
    live = Live(console=console, refresh_per_second=2, transient=False)

    def update(summary: StudySummary) -> None:
        live.update(render_summary(summary))

    return live, update


def _interrupted(path: Path, code: int = 130) -> typer.Exit:
    """Ctrl-C (exit 130) or SIGTERM (143; Ray's handler turns it into SystemExit(15)): stopped, resumable."""
    console.print()
    console.print(
        f"interrupted: the study is stopped; continue it with `agvp-hpo resume {path}`", soft_wrap=True
    )
    return typer.Exit(code)


def _terminated(error: SystemExit, path: Path) -> typer.Exit:
    if error.code == signal.SIGTERM:
        return _interrupted(path, 128 + signal.SIGTERM)
    raise error


def _load_run_spec(spec_path: Path) -> tuple[Any, str]:
    """A study file, or ``env:NAME``: the study text in environment variable NAME (how submitted Ray jobs
    receive it); and the name error messages give it."""
    import os

    from hpo.study import load_study, loads_study, resolve_study_path

    if str(spec_path).startswith("env:"):
        variable = str(spec_path)[4:]
        text = os.environ.get(variable)
        if text is None:
            raise ValueError(f"{spec_path}: environment variable {variable} is not set")
        return loads_study(text, source=f"${variable}"), f"${variable}"
    path = resolve_study_path(spec_path)
    return load_study(path), str(path)


def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="Study file (see search_spaces/).")],
    name: Annotated[str | None, typer.Option("--name", help="Study name (default: the file's name).")] = None,
    address: AddressOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only validate and show what the study would do (= validate).")
    ] = False,
    epoch_time: EpochTimeOption = None,
) -> None:
    """Run a study: trials on Ray Tune at increasing epoch budgets; results in <storage.root>/<name>/."""
    from hpo import api

    with user_errors():
        spec, source = _load_run_spec(spec_path)
        if dry_run:
            spec = api.load_study(spec, name=name, source=source)
            describe_study(spec, source, epoch_time)
            return
        live, update = _progress_view()
        path = Path(spec.storage.root) / (name or spec.name)
        try:
            with live:
                study = api.run(spec, name=name, address=address, progress=update, source=source)
        except KeyboardInterrupt:
            raise _interrupted(path) from None
        except SystemExit as error:
            raise _terminated(error, path) from None
    outcome = study.outcome
    assert outcome is not None  # api.run always sets it
    console.print()
    console.print(
        f"study {study.name} {outcome.status} ({outcome.reason}) in {_duration(outcome.elapsed)}: "
        f"{outcome.trials} trials, {outcome.total_resource} epochs; results in {study.path}"
    )
    _finish_report(study, outcome.status)


def resume(
    study: Annotated[str, typer.Argument(help="Study folder or name.")],
    root: RootOption = Path("results"),
    address: AddressOption = None,
) -> None:
    """Continue a stopped or killed study from its saved scheduler state and checkpoints."""
    from hpo import api

    with user_errors():
        target = api.open_study(study, root=root)
        live, update = _progress_view()
        try:
            with live:
                resumed = api.resume(target, address=address, progress=update)
        except KeyboardInterrupt:
            raise _interrupted(target.path) from None
        except SystemExit as error:
            raise _terminated(error, target.path) from None
        spec = resumed.spec
    outcome = resumed.outcome
    assert outcome is not None  # api.resume always sets it
    console.print()
    console.print(
        f"study {spec.name} {outcome.status} ({outcome.reason}) after {_duration(outcome.elapsed)} in all: "
        f"{outcome.trials} trials, {outcome.total_resource} epochs"
    )
    _finish_report(resumed, outcome.status)


def _when(timestamp: Any) -> str:
    if not isinstance(timestamp, (int, float)):
        return "-"
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def status(
    study: Annotated[str | None, typer.Argument(help="Study folder or name (default: list all).")] = None,
    root: RootOption = Path("results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Also list the agvp-hpo Ray jobs of this cluster (http://HEAD:8265)."),
    ] = None,
) -> None:
    """List studies under --root, or show one study: trials by state, best so far, budget, rungs."""
    from hpo import api

    with user_errors():
        if address is not None:
            from hpo.cli.service import list_jobs

            try:
                list_jobs(address)
            except Exception as error:  # connection refused, not a Ray dashboard, ...
                raise fail(f"--address {address}: cannot list Ray jobs ({error})") from None
        if study is None:
            rows = []
            for listed in api.list_studies(root=root):
                summary = listed.summary
                rows.append(
                    {
                        "name": summary["name"],
                        "status": summary["status"],
                        "trials": summary["trials"],
                        "best": (summary["best"] or {}).get("value"),
                        "budget_used": summary["budget_used"] or {},
                        "started": summary["started"],
                        "updated": summary["updated"],
                    }
                )
            if as_json:
                console.print_json(json.dumps(rows))
                return
            if not rows:
                console.print(f"no studies under {root}")
                return
            table = Table(title=f"studies under {root}", title_justify="left")
            for column in ("study", "status", "trials", "best", "epochs", "started", "updated"):
                table.add_column(column)
            for row in rows:
                trials = ", ".join(f"{n} {s}" for s, n in row["trials"].items() if n)
                best = f"{row['best']:.4f}" if isinstance(row["best"], float) else "-"
                epochs = str(row["budget_used"].get("epochs", "-"))
                table.add_row(
                    row["name"],
                    row["status"],
                    trials,
                    best,
                    epochs,
                    _when(row["started"]),
                    _when(row["updated"]),
                )
            console.print(table)
            return
        target = api.open_study(study, root=root)
        summary = target.summary
        state = summary["status"]
        trials = target.trials()
        best = target.best(k=5)
        failed = target.failures()
        if as_json:
            payload = {
                "name": target.name,
                "status": state,
                "reason": summary["reason"],
                "error": summary["error"],
                "budget_used": summary["budget_used"],
                "trials": trials["status"].value_counts().to_dict() if not trials.empty else {},
                "failures": failed,
                "best": best.to_dict(orient="records"),
            }
            console.print_json(json.dumps(payload, default=str))
            return
        counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
        used = summary["budget_used"] or {}
        color = {"failed": "red", "interrupted": "yellow", "running": "green"}.get(state, "bold")
        console.print(
            f"[bold]{target.name}[/]: [{color}]{state}[/]"
            + (f" ({summary['reason']})" if summary["reason"] else "")
            + (f" - [red]{summary['error']}[/]" if summary["error"] else "")
        )
        console.print(
            f"trials: {', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none yet'}; "
            f"budget used: {used.get('epochs', 0)} epochs, {_duration(used.get('seconds'))}; "
            f"started {_when(summary['started'])}, updated {_when(summary['updated'])}"
        )
        rungs = target.rungs()
        if not rungs.empty:
            occupancy = Table(title="rungs", title_justify="left")
            for column in ("bracket", "rung", "epochs", "trials reported", "went further"):
                occupancy.add_column(column, justify="right")
            for entry in rungs.itertuples(index=False):
                occupancy.add_row(
                    *(str(getattr(entry, k)) for k in ("bracket", "rung", "resource", "trials", "advanced"))
                )
            console.print(occupancy)
        print_failures(failed)
        if not best.empty:
            console.print(best_table(best, target.metric, "best so far"))


def best(
    study: Annotated[str, typer.Argument(help="Study folder or name.")],
    k: Annotated[int, typer.Option("--k", min=1, help="How many configurations.")] = 5,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="Print the best configuration as YAML.")] = False,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train the best configuration at full budget, then evaluate it.")
    ] = False,
    root: RootOption = Path("results"),
) -> None:
    """The best configurations of a study; --yaml prints the best one as a config `agvp-hpo train` takes."""
    from hpo import api

    with user_errors():
        target = api.open_study(study, root=root)
        spec = target.spec
        ranked = target.best(k=k)
        top = None if ranked.empty else int(ranked.iloc[0]["trial_id"])
        text = target.best_trainer_config_yaml(trial=top)  # one line if no trial has a value yet
        if as_yaml:
            typer.echo(text, nl=False)
            return
        console.print(best_table(ranked, spec.objective.metric, f"best {len(ranked)} of study {spec.name}"))
        if not retrain:
            return
        if spec.trainer.name != "tfclip":
            raise fail(f"--retrain needs trainer 'tfclip', but study {spec.name} uses {spec.trainer.name!r}")
        config_path = target.path / "retrain" / "config-best.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(text, encoding="utf-8")
    from hpo.cli.evaluate import evaluate
    from hpo.cli.train import train

    run_dir = target.path / "retrain" / "run"
    epochs = spec.fidelity.schedule_epochs  # a full run on every identity, whatever the fidelity
    console.print(f"retraining trial {ranked.iloc[0]['trial_id']} at {epochs} epochs -> {run_dir}")
    train(config_path, epochs=epochs, out=run_dir, resume=None, data=None, set_=None)
    evaluate(
        run_dir,
        data=spec.trainer.data,
        json_out=target.path / "retrain" / "test-report.json",
        submission=target.path / "retrain" / "submission.csv",
    )


def export(
    study: Annotated[str, typer.Argument(help="Study folder or name.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="FILE.parquet|URL",
            help="Parquet file (every result row), or an Optuna storage URL (sqlite:///study.db, "
            "postgresql://...) to write the study into as an Optuna study.",
        ),
    ],
    to_format: Annotated[
        str | None,
        typer.Option(
            "--format", help="parquet or optuna (default: optuna for a URL with '://', else parquet)."
        ),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option("--study-name", help="Optuna study name (default: the study's name).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an Optuna study of that name in the storage.")
    ] = False,
    root: RootOption = Path("results"),
) -> None:
    """Write every result row of a study to one Parquet file, or the study into an Optuna storage."""
    from hpo import api
    from hpo.cli.plot import export_optuna

    with user_errors():
        kind = to_format or ("optuna" if "://" in to else "parquet")
        if kind not in ("parquet", "optuna"):
            raise fail(f"--format {kind} must be parquet or optuna")
        if kind == "optuna":
            export_optuna(study, to, root, study_name=study_name, overwrite=overwrite)
            return
        if study_name is not None or overwrite:
            raise fail("--study-name and --overwrite apply to an Optuna export only (--format optuna)")
        if Path(to).suffix != ".parquet":
            raise fail(f"--to {to} must end in .parquet (or be an Optuna storage URL: sqlite:///study.db)")
        exported = api.open_study(study, root=root)
        path = exported.export(to)
    console.print(f"wrote {len(exported.rows())} rows to {path}")


def stop(
    study: Annotated[str, typer.Argument(help="Study folder or name.")],
    root: RootOption = Path("results"),
) -> None:
    """Ask a running study to stop (its driver stops at its next step; resume continues it)."""
    from hpo.study.folder import find_study
    from hpo.study.lock import lock_holder

    with user_errors():
        folder = find_study(study, root)
        if lock_holder(folder.path) is None:
            raise fail(f"study {folder.name} is not running (no driver holds it): nothing to stop")
        folder.stop_file.write_text("stop requested\n", encoding="utf-8")
    console.print(f"stop requested for study {folder.name}")


def check(
    study: Annotated[str, typer.Argument(help="Study folder or name.")],
    repair: Annotated[
        bool, typer.Option("--repair", help="Fix what can be rebuilt (rows that are gone stay gone).")
    ] = False,
    root: RootOption = Path("results"),
) -> None:
    """Verify a study folder: rows vs scheduler state vs checkpoints; exit 1 if anything is wrong."""
    from hpo.study.check import check_study, repair_study
    from hpo.study.folder import find_study

    with user_errors():
        folder = find_study(study, root)
        if repair:
            for line in repair_study(folder):
                console.print(f"repaired: {line}")
        problems = check_study(folder)
    for problem in problems:
        hint = " [dim](--repair fixes this)[/]" if problem.repairable and not repair else ""
        label = "[yellow]warning[/]" if problem.warning else "[red]problem[/]"
        console.print(f"{label}: {problem.message}{hint}", soft_wrap=True)
    if any(not p.warning for p in problems):
        raise typer.Exit(1)
    console.print(f"study {folder.name}: consistent (rows, scheduler state, checkpoints)")
