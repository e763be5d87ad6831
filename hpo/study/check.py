"""``agvp-hpo check STUDY``: is a study folder consistent, and what can be repaired?

The folder has three records of one history: the result rows (``results/``, what users read), the
scheduler state (``state.json``, what a resume continues from, with its journal of rows not yet stored) and
the trials' checkpoints (``trials/``). They agree after every step the driver takes, whatever the moment it
is killed at; this module verifies that, in plain words, and repairs what can be rebuilt:

* the rows: every trial's reports cover epochs 1, 2, ..., its recorded resource, each exactly once (a
  trainer reports every epoch), the rows read through plain ``pandas.read_parquet`` on the results folder
  equal those our reader returns, and no part number in the store's sequence is missing;
* state vs rows: the epochs, statuses and ASHA rungs ``state.json`` holds are those the rows show;
* checkpoints: a trial that may run again has the checkpoint its resume starts from; a trial stopped early
  or failed has none left (disk space; a completed trial keeps its full-budget checkpoint);
* a finished study has its ``best.yaml``.

:func:`check_study` lists :class:`Problem` s; :func:`repair_study` fixes the repairable ones (rows that are
gone stay gone: it says so).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hpo.results import TrialStatus
from hpo.schedulers.brackets import milestones
from hpo.store import StoreError
from hpo.study.folder import StudyFolder
from hpo.study.loader import load_study


@dataclass(frozen=True)
class Problem:
    """One inconsistency: ``kind`` (a stable identifier), a plain-words ``message``, and whether
    :func:`repair_study` can fix it."""

    kind: str
    message: str
    repairable: bool = False

    def __str__(self) -> str:
        return self.message


def _plain_rows(folder: StudyFolder) -> int | None:
    """Rows a user reading the results folder with plain pandas gets (None: no results folder)."""
    results = folder.store.results_dir
    if not results.exists() or not any(results.glob("*.parquet")):
        return None
    return len(pd.read_parquet(results))


def _load_state(folder: StudyFolder) -> tuple[dict[str, Any] | None, Problem | None]:
    if not folder.state_file.is_file():
        return None, None
    try:
        return json.loads(folder.state_file.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as error:
        return None, Problem("state-unreadable", f"{folder.state_file}: unreadable ({error})")


def _reports(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return rows
    return rows[rows["status"] != TrialStatus.FAILED.value]


def check_rows(rows: pd.DataFrame) -> list[Problem]:
    """Per trial, reports at epochs 1..n exactly once."""
    problems = []
    for trial_id, group in _reports(rows).groupby("trial_id"):
        epochs = list(group["resource"])
        duplicated = sorted({e for e in epochs if epochs.count(e) > 1})
        missing = sorted(set(range(1, max(epochs) + 1)) - set(epochs))
        if duplicated:
            problems.append(
                Problem("rows-duplicated", f"trial {trial_id}: epochs {duplicated} are recorded twice")
            )
        if missing:
            problems.append(Problem("rows-missing", f"trial {trial_id}: no row for epochs {missing}"))
    return problems


def check_state(state: Mapping[str, Any], rows: pd.DataFrame, milestones: list[int]) -> list[Problem]:
    """The trials, epochs and rungs of ``state.json`` against the rows (its journal included)."""
    problems: list[Problem] = []
    journal = pd.DataFrame(state.get("journal", {}).get("rows") or [])
    if not journal.empty and "resource" in journal:
        rows = pd.concat([rows, journal], ignore_index=True, sort=False)
    reports = _reports(rows)
    reached = reports.groupby("trial_id")["resource"].max().to_dict() if not reports.empty else {}
    trials = {int(t): raw for t, raw in state["core"]["trials"]}
    for trial_id, raw in trials.items():
        resource = int(raw["resource"])
        shown = int(reached.get(trial_id, 0))
        if shown != resource:
            problems.append(
                Problem(
                    "state-rows-disagree",
                    f"trial {trial_id}: state.json records {resource} epochs, the rows {shown}",
                )
            )
    extra = sorted(set(reached) - set(trials))
    if extra:
        problems.append(Problem("state-rows-disagree", f"trials {extra} have rows but are not in state.json"))
    total = int(state.get("total_resource", 0))
    if total != sum(int(t["resource"]) for t in trials.values()):
        problems.append(
            Problem("state-inconsistent", f"state.json's total of {total} epochs is not its trials' sum")
        )
    rungs = state["core"].get("extra", {}).get("rungs")
    if rungs is not None and not reports.empty:
        for k, members in enumerate(rungs):
            at = set(reports[reports["resource"] == milestones[k]]["trial_id"].astype(int))
            if set(members) != at:
                problems.append(
                    Problem(
                        "state-rows-disagree",
                        f"ASHA rung {k} ({milestones[k]} epochs) holds trials {sorted(members)}, the rows "
                        f"show {sorted(at)}",
                    )
                )
    return problems


def check_checkpoints(folder: StudyFolder, state: Mapping[str, Any]) -> list[Problem]:
    problems = []
    info = {int(t): raw for t, raw in state.get("trials", [])}
    for trial_id, raw in state["core"]["trials"]:
        status = TrialStatus(raw["status"])
        path = folder.trial_dir(int(trial_id))
        if status in (TrialStatus.PAUSED, TrialStatus.RUNNING) and int(raw["resource"]) > 0:
            checkpoint = (info.get(int(trial_id)) or {}).get("checkpoint")
            if not checkpoint or not Path(checkpoint).is_file():
                problems.append(
                    Problem(
                        "checkpoint-missing",
                        f"trial {trial_id} is {status.value} at {raw['resource']} epochs but its checkpoint "
                        f"{checkpoint or '(none recorded)'} is gone: a resume cannot continue it",
                    )
                )
        elif status in (TrialStatus.STOPPED, TrialStatus.FAILED) and path.exists():
            problems.append(
                Problem(
                    "checkpoint-orphan",
                    f"trial {trial_id} is {status.value} but {path} still holds its checkpoints",
                    repairable=True,
                )
            )
    return problems


def check_study(folder: StudyFolder) -> list[Problem]:
    """Every problem found in ``folder`` (empty: consistent)."""
    problems: list[Problem] = []
    try:
        metadata = folder.store.read_metadata()
    except StoreError as error:
        return [Problem("metadata-unreadable", str(error))]
    rows = folder.store.read()
    plain = _plain_rows(folder)
    if plain is not None and plain != len(rows):
        problems.append(
            Problem(
                "store-duplicates",
                f"{folder.store.results_dir}: plain pandas reads {plain} rows, the study has {len(rows)} "
                "(an interrupted compaction left files that hold the same rows)",
                repairable=True,
            )
        )
    problems += check_rows(rows)
    state, unreadable = _load_state(folder)
    if unreadable is not None:
        problems.append(unreadable)
    if state is not None:
        spec = load_study(folder.spec_file)
        fidelity = spec.fidelity
        problems += check_state(state, rows, milestones(fidelity.max, fidelity.eta, fidelity.min))
        problems += check_checkpoints(folder, state)
    if metadata.get("status") == "finished" and not rows.empty and not folder.best_file.is_file():
        problems.append(
            Problem("best-missing", f"the study finished but {folder.best_file} is missing", repairable=True)
        )
    return problems


def repair_study(folder: StudyFolder) -> list[str]:
    """Fix the repairable problems; returns what was done, one line each."""
    from hpo.ray_backend.runner import write_best_yaml

    done: list[str] = []
    for problem in check_study(folder):
        if problem.kind == "store-duplicates":
            folder.store.compact()
            done.append(f"finished the interrupted compaction of {folder.store.results_dir}")
        elif problem.kind == "best-missing":
            write_best_yaml(load_study(folder.spec_file), folder)
            done.append(f"wrote {folder.best_file} from the rows")
        elif problem.kind == "checkpoint-orphan":
            trial_id = int(problem.message.split()[1])
            shutil.rmtree(folder.trial_dir(trial_id), ignore_errors=True)
            done.append(f"deleted the checkpoints of trial {trial_id} (it never runs again)")
    return done
