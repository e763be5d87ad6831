"""Answers from a study's result rows: one line per trial, the best k configurations, the best one as a
trainer config. Used by the CLI (``status``, ``best``) and the REST service alike.

"Best" ranks trials by the highest fidelity they reached first (a value after 9 epochs beats any value
after 3), then by their value at that fidelity; failed trials and NaN values never rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import yaml

from hpo.results import (
    BRACKET,
    CONFIG,
    ERROR,
    RESOURCE,
    RUNG,
    STATUS,
    TOTAL_RESOURCE,
    TRIAL_ID,
    VALUE,
    TrialStatus,
)
from hpo.study.spec import StudySpec

TRIAL_COLUMNS = ("trial_id", "status", "resource", "value", "bracket", "reports", "params")


def trial_table(rows: pd.DataFrame, *, finished: bool = False, live: bool = True) -> pd.DataFrame:
    """One row per trial: its latest status, the highest epoch it reported, its value there, its bracket,
    how many rows it wrote and its parameters (a dict). With ``finished``, trials still paused count as
    stopped (a finished study never resumes them); with ``live`` False (a study no driver runs: stopped,
    interrupted, failed), nothing is running - a trial that was is paused, to be resumed."""
    if rows.empty:
        return pd.DataFrame(columns=list(TRIAL_COLUMNS))
    ordered = rows.reset_index(drop=True)
    last = ordered.groupby(TRIAL_ID, sort=True).tail(1).set_index(TRIAL_ID)
    scored = ordered[ordered[VALUE].notna()]
    top = (
        scored.loc[scored.groupby(TRIAL_ID)[RESOURCE].idxmax()].set_index(TRIAL_ID)
        if not scored.empty
        else None
    )
    table = pd.DataFrame(index=last.index)
    table["status"] = last[STATUS]
    if not live:
        table.loc[table["status"] == TrialStatus.RUNNING.value, "status"] = TrialStatus.PAUSED.value
    if finished:
        table.loc[table["status"] == TrialStatus.PAUSED.value, "status"] = TrialStatus.STOPPED.value
    table["resource"] = top[RESOURCE].reindex(table.index).fillna(0).astype(int) if top is not None else 0
    table["value"] = top[VALUE].reindex(table.index) if top is not None else math.nan
    table["bracket"] = last["bracket"]
    table["reports"] = ordered.groupby(TRIAL_ID).size()
    table["params"] = [json.loads(text) for text in last[CONFIG]]
    return table.reset_index()[list(TRIAL_COLUMNS)]


def failures(rows: pd.DataFrame, *, limit: int = 5) -> dict[str, Any]:
    """How many trials failed, and the first ``limit`` distinct error messages (with how many trials each)."""
    if rows.empty or STATUS not in rows:
        return {"count": 0, "errors": []}
    failed = rows[rows[STATUS] == TrialStatus.FAILED.value]
    errors: dict[str, int] = {}
    for message in failed.get(ERROR, pd.Series(dtype=str)).fillna("").astype(str):
        errors[message or "failed (no message)"] = errors.get(message or "failed (no message)", 0) + 1
    return {
        "count": int(failed[TRIAL_ID].nunique()),
        "errors": [{"message": m, "trials": n} for m, n in list(errors.items())[:limit]],
    }


def improves(best: tuple[float, int, int] | None, epoch: int, value: float, mode: str) -> bool:
    """Whether ``value`` after ``epoch`` epochs beats ``best`` = (value, trial, epoch): the best is the best
    value at the highest fidelity reached so far (more epochs always win; NaN never does) - the rule
    :func:`best_trials` ranks by, one report at a time."""
    if math.isnan(value):
        return False
    if best is None or epoch > best[2]:
        return True
    if epoch < best[2]:
        return False
    return value > best[0] if mode == "max" else value < best[0]


def best_so_far(rows: pd.DataFrame, mode: str) -> list[dict[str, float]]:
    """(epochs used so far, best value so far) at every report that changed the best (:func:`improves`),
    plus the last report's epochs used, so a plot runs to the end of the study."""
    points: list[dict[str, float]] = []
    if rows.empty:
        return points
    best: tuple[float, int, int] | None = None
    for total, trial, epoch, value in zip(
        rows[TOTAL_RESOURCE], rows[TRIAL_ID], rows[RESOURCE], rows[VALUE], strict=True
    ):
        if value is None or not improves(best, int(epoch), float(value), mode):
            continue
        best = (float(value), int(trial), int(epoch))
        points.append({"total_resource": int(total), "value": best[0]})
    if points:
        points.append({"total_resource": int(rows[TOTAL_RESOURCE].max()), "value": points[-1]["value"]})
    return points


def rung_table(rows: pd.DataFrame) -> list[dict[str, int]]:
    """Per bracket and rung: its epochs, the trials that reported there, and how many went further."""
    if rows.empty:
        return []
    at_rungs = rows[rows[RUNG] >= 0]
    answer = []
    for (bracket, rung), group in at_rungs.groupby([BRACKET, RUNG], sort=True):
        resource = int(group[RESOURCE].iloc[0])
        ids = group[TRIAL_ID].unique()
        further = rows[rows[TRIAL_ID].isin(ids) & (rows[RESOURCE] > resource)]
        answer.append(
            {
                "bracket": int(bracket),
                "rung": int(rung),
                "resource": resource,
                "trials": len(ids),
                "advanced": int(further[TRIAL_ID].nunique()),
            }
        )
    return answer


def best_trials(rows: pd.DataFrame, mode: str, k: int = 5) -> pd.DataFrame:
    """The ``k`` best trials (see the module docstring), best first."""
    table = trial_table(rows)
    table = table[table["value"].notna() & (table["status"] != TrialStatus.FAILED.value)]
    if table.empty:
        return table
    key = -table["value"] if mode == "max" else table["value"]
    ranked = table.assign(_fidelity=-table["resource"], _key=key)
    ranked = ranked.sort_values(["_fidelity", "_key", "trial_id"], kind="stable")
    return ranked.drop(columns=["_fidelity", "_key"]).head(k).reset_index(drop=True)


def best_config_yaml(spec: StudySpec, params: Mapping[str, Any]) -> str:
    """The best configuration as a file ``agvp-hpo train`` accepts as is (``tfclip``: the full resolved
    trainer config at the full schedule's epochs; other trainers: the study's trainer section and
    parameters)."""
    header = (
        f"# best configuration of study {spec.name} ({spec.objective.metric}, {spec.objective.mode})\n"
        f"# train it at full budget: agvp-hpo train THIS.yaml --epochs {spec.fidelity.schedule_epochs}\n"
    )
    if spec.trainer.name == "tfclip":
        from hpo.study.build import trainer_settings
        from trainers.tfclip.config import config_to_yaml, trial_config

        settings = trainer_settings(spec)
        settings["overrides"] = {
            key: value for key, value in settings["overrides"].items() if key != "runtime.threads"
        }
        return header + config_to_yaml(trial_config(settings, params))
    body = {"trainer": spec.trainer.model_dump(mode="json"), "params": dict(params)}
    return header + yaml.safe_dump(body, sort_keys=False)
