"""``agvp-hpo plot`` and the Optuna side of ``agvp-hpo export``: a study's rows as an Optuna study
(hpo/study/optuna_export.py) and Optuna's figures of it (hpo/study/plots.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hpo.cli._common import console, user_errors


def _study_rows(study: str, root: Path) -> tuple[Any, Any, bool, bool]:
    """The study's rows and spec, and whether it is finished / has a live driver (as ``status`` shows)."""
    from hpo.study import load_study
    from hpo.study.folder import find_study, study_status

    folder = find_study(study, root)
    spec = load_study(folder.spec_file)
    state = study_status(folder, folder.store.read_metadata())
    return folder.store.read(), spec, state == "finished", state == "running"


def export_optuna(
    study: str, url: str, root: Path, *, study_name: str | None = None, overwrite: bool = False
) -> None:
    """``agvp-hpo export STUDY --to URL``: write the study into an Optuna storage."""
    from hpo.study.optuna_export import OptunaExportError, export_to_optuna

    if "://" not in url:
        raise OptunaExportError(
            f"--to {url} is not an Optuna storage URL (sqlite:///study.db, postgresql://user@host/db)"
        )
    rows, spec, finished, live = _study_rows(study, root)
    count = export_to_optuna(
        rows, spec, url, study_name=study_name, overwrite=overwrite, finished=finished, live=live
    )
    name = study_name or spec.name
    console.print(
        f"wrote Optuna study {name!r} ({count} trials) to {url}; view it with `optuna-dashboard {url}`",
        soft_wrap=True,
        highlight=False,
    )


def plot(
    study: Annotated[str, typer.Argument(help="Study folder or name.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the figures into (created).")],
    fidelity: Annotated[
        int | None,
        typer.Option(
            "--fidelity",
            min=1,
            help="Compare trials at this fidelity in the parameter figures (default: the highest one "
            "at least 3 trials reached).",
        ),
    ] = None,
    root: Annotated[
        Path,
        typer.Option("--root", help="Results root to find studies by name in (a study path also works)."),
    ] = Path("results"),
) -> None:
    """Figures of a study as HTML and PNG: best vs budget, learning curves by bracket, parallel
    coordinates, parameter importance, slices (Optuna's visualisation of the exported study)."""
    from hpo.study.plots import plot_study, require_plot_packages

    with user_errors():
        require_plot_packages()
        rows, spec, finished, live = _study_rows(study, root)
        report = plot_study(rows, spec, out, finished=finished, live=live, fidelity=fidelity)
    for name, reason in report.skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {reason}", highlight=False, soft_wrap=True)
    figures = sorted({p.stem for p in report.written if p.suffix == ".png"})
    console.print(
        f"wrote {len(figures)} figures (HTML and PNG) to {out}: {', '.join(figures) or 'none'}; "
        f"parameter figures compare trials at fidelity {report.fidelity}",
        highlight=False,
        soft_wrap=True,
    )
