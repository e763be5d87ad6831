"""``agvp-hpo plot``: a study's figures as HTML (plotly) and PNG (matplotlib), drawn by Optuna's own
visualisation on the study exported to an in-memory Optuna storage (:mod:`hpo.study.optuna_export`).

Figures, each as ``NAME.html`` and ``NAME.png`` in the output folder:

* ``best_vs_budget`` - the best value so far against the epochs all trials used so far (the rule of
  :func:`hpo.study.analysis.best_so_far`; Optuna's history plot counts trials, not budget, so this one is
  ours);
* ``learning_curves`` - :func:`optuna.visualization.plot_intermediate_values`, every trial's reports
  recoloured by Hyperband bracket (by the highest rung reached when the study has one bracket);
* ``parallel_coordinate``, ``param_importances`` (Optuna's PED-ANOVA evaluator: the default of Optuna >= 5,
  and it needs no scikit-learn), ``slice`` - drawn on a *view at one fidelity*: every trial that reported
  there, with its value there, so trials are compared on equal budgets (default: the highest fidelity at
  least :data:`VIEW_MIN_TRIALS` trials reached).

HTML files share one ``plotly.min.js`` in the folder (they open offline). PNGs come from Optuna's
matplotlib backend: plotly's own PNG export needs kaleido and a Chrome build. A figure Optuna cannot draw
(too few trials) is skipped with its reason; every file is written atomically.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hpo.results import RESOURCE, TRIAL_ID, VALUE
from hpo.store import StoreError
from hpo.study.analysis import best_so_far
from hpo.study.optuna_export import to_memory_study
from hpo.study.spec import StudySpec
from trainers.atomic import atomic_write_bytes, atomic_write_text

FIGURES = ("best_vs_budget", "learning_curves", "parallel_coordinate", "param_importances", "slice")
#: The per-parameter figures use the highest fidelity that at least this many trials reached.
VIEW_MIN_TRIALS = 3
PLOTLY_JS = "plotly.min.js"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


class PlotError(StoreError):
    """A study cannot be plotted as asked (a missing package, no results, a fidelity nobody reached)."""


@dataclass
class PlotReport:
    """What :func:`plot_study` wrote and what it skipped (figure name -> reason)."""

    fidelity: int
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def require_plot_packages() -> None:
    """One line naming the package and the install command when plotly or matplotlib is missing."""
    for module, package in (("plotly", "plotly"), ("matplotlib", "matplotlib")):
        if importlib.util.find_spec(module) is None:
            raise PlotError(
                f"agvp-hpo plot needs {package}, which is not installed: "
                f"pip install {package} (or pip install -e '.[plot]' in a checkout)"
            )


def view_fidelity(rows: pd.DataFrame, requested: int | None = None) -> int:
    """The fidelity the per-parameter figures compare trials at (see the module docstring)."""
    scored = rows[rows[VALUE].notna()]
    counts = scored.groupby(RESOURCE)[TRIAL_ID].nunique()
    if counts.empty:
        raise PlotError("the study has no reported value to plot")
    if requested is not None:
        if requested not in counts.index:
            reached = ", ".join(str(int(r)) for r in counts.index)
            raise PlotError(f"--fidelity {requested}: no trial reported there (reported at: {reached})")
        return requested
    enough = counts[counts >= VIEW_MIN_TRIALS]
    if not enough.empty:
        return int(enough.index.max())
    return int(counts[counts == counts.max()].index.max())


def plot_study(
    rows: pd.DataFrame,
    spec: StudySpec,
    out: Path,
    *,
    finished: bool,
    live: bool,
    fidelity: int | None = None,
) -> PlotReport:
    """Write every figure of :data:`FIGURES` into ``out`` (created if needed)."""
    require_plot_packages()
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, work without a display
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization as ov
    import optuna.visualization.matplotlib as om
    import plotly.offline

    if rows.empty:
        raise PlotError(f"study {spec.name} has no results to plot")
    if out.exists() and not out.is_dir():
        raise PlotError(f"--out {out} is not a folder")
    chosen = view_fidelity(rows, fidelity)
    study = to_memory_study(rows, spec, finished=finished, live=live)
    view = to_memory_study(rows, spec, finished=finished, live=live, fidelity=chosen)
    unit = "epochs" if spec.fidelity.resource != "data_fraction" else "data units"
    at = f"trials at {chosen} {unit}"
    colours = _curve_colours(study)
    evaluator = importance_evaluator(optuna)

    figures: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "best_vs_budget": (
            lambda: _best_plotly(rows, spec),
            lambda: _best_matplotlib(rows, spec),
        ),
        "learning_curves": (
            lambda: _recolour_plotly(ov.plot_intermediate_values(study), colours, spec),
            lambda: _recolour_matplotlib(om.plot_intermediate_values(study), colours, spec),
        ),
        "parallel_coordinate": (
            lambda: _titled(ov.plot_parallel_coordinate(view), at),
            lambda: _suptitled(om.plot_parallel_coordinate(view), at),
        ),
        "param_importances": (
            lambda: _titled(ov.plot_param_importances(view, evaluator=evaluator), at),
            lambda: _suptitled(om.plot_param_importances(view, evaluator=evaluator), at),
        ),
        "slice": (
            lambda: _titled(ov.plot_slice(view), at),
            lambda: _suptitled(om.plot_slice(view), at),
        ),
    }
    report = PlotReport(fidelity=chosen)
    drawn: dict[str, tuple[str, bytes]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks some of its plots experimental
        for name, (html, png) in figures.items():
            try:
                page = html().to_html(include_plotlyjs="directory", full_html=True)
                figure = png()
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
                plt.close(figure)
            except (ValueError, RuntimeError, ZeroDivisionError) as error:
                plt.close("all")
                report.skipped[name] = str(error).strip().splitlines()[0] if str(error).strip() else "failed"
                continue
            drawn[name] = (page, buffer.getvalue())
    out.mkdir(parents=True, exist_ok=True)
    if drawn:
        report.written.append(atomic_write_text(out / PLOTLY_JS, plotly.offline.get_plotlyjs()))
    for name, (page, image) in drawn.items():
        report.written.append(atomic_write_text(out / f"{name}.html", page))
        report.written.append(atomic_write_bytes(out / f"{name}.png", image))
    return report


def importance_evaluator(optuna: Any) -> Any:
    """PED-ANOVA (Optuna's default from 5.0; in 3.6-4.x it exists but fANOVA, which needs scikit-learn, is
    the default)."""
    evaluator = getattr(optuna.importance, "PedAnovaImportanceEvaluator", None)
    return evaluator() if evaluator is not None else None


def _curve_colours(study: Any) -> dict[int, tuple[str, str]]:
    """Trial number -> (group label, colour): by bracket, or by highest rung when there is one bracket."""
    trials = study.get_trials(deepcopy=False)
    brackets = {t.user_attrs.get("bracket") for t in trials}
    key, label = ("bracket", "bracket") if len(brackets) > 1 else ("rung", "highest rung")
    groups = sorted({int(t.user_attrs.get(key, 0)) for t in trials})
    colour = {g: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(groups)}
    return {
        t.number: (f"{label} {t.user_attrs.get(key, 0)}", colour[int(t.user_attrs.get(key, 0))])
        for t in trials
    }


def _trial_number(name: str | None) -> int | None:
    if name and name.startswith("Trial") and name[5:].isdigit():
        return int(name[5:])
    return None


def _recolour_plotly(figure: Any, colours: dict[int, tuple[str, str]], spec: StudySpec) -> Any:
    shown: set[str] = set()
    for trace in figure.data:
        number = _trial_number(trace.name)
        if number is None or number not in colours:
            continue
        group, colour = colours[number]
        trace.update(
            line={"color": colour},
            marker={"color": colour},
            legendgroup=group,
            showlegend=group not in shown,
            name=group,
            hovertext=f"trial {number}",
        )
        shown.add(group)
    figure.update_layout(
        title=f"Learning curves of {spec.name} ({spec.objective.metric})",
        xaxis_title=spec.fidelity.resource,
        yaxis_title=spec.objective.metric,
    )
    return figure


def _recolour_matplotlib(axes: Any, colours: dict[int, tuple[str, str]], spec: StudySpec) -> Any:
    handles: dict[str, Any] = {}
    for line in axes.get_lines():
        number = _trial_number(line.get_label())
        if number is None or number not in colours:
            continue
        group, colour = colours[number]
        line.set_color(colour)
        line.set_label(group)
        handles.setdefault(group, line)
    if axes.get_legend() is not None:
        axes.get_legend().remove()
    axes.legend(handles.values(), handles.keys(), loc="best")
    axes.set_title(f"Learning curves of {spec.name} ({spec.objective.metric})")
    axes.set_xlabel(spec.fidelity.resource)
    axes.set_ylabel(spec.objective.metric)
    return axes.figure


def _titled(figure: Any, note: str) -> Any:
    title = figure.layout.title.text or ""
    figure.update_layout(title=f"{title} ({note})" if title else note)
    return figure


def _suptitled(axes: Any, note: str) -> Any:
    import numpy as np

    figure = np.ravel(axes)[0].figure
    figure.suptitle(note, fontsize=9, y=1.02)
    return figure


def _best_points(rows: pd.DataFrame, spec: StudySpec) -> tuple[list[int], list[float]]:
    points = best_so_far(rows, spec.objective.mode)
    if not points:
        raise ValueError("no trial reported a value")
    return [int(p["total_resource"]) for p in points], [float(p["value"]) for p in points]


def _best_plotly(rows: pd.DataFrame, spec: StudySpec) -> Any:
    import plotly.graph_objects as go

    x, y = _best_points(rows, spec)
    figure = go.Figure(go.Scatter(x=x, y=y, mode="lines+markers", line={"shape": "hv"}, name="best so far"))
    figure.update_layout(
        title=f"Best {spec.objective.metric} so far vs budget used ({spec.name})",
        xaxis_title="epochs used by all trials",
        yaxis_title=f"best {spec.objective.metric}",
    )
    return figure


def _best_matplotlib(rows: pd.DataFrame, spec: StudySpec) -> Any:
    import matplotlib.pyplot as plt

    x, y = _best_points(rows, spec)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.step(x, y, where="post", marker="o")
    axes.set_title(f"Best {spec.objective.metric} so far vs budget used ({spec.name})")
    axes.set_xlabel("epochs used by all trials")
    axes.set_ylabel(f"best {spec.objective.metric}")
    axes.grid(alpha=0.3)
    return figure
