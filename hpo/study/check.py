"""``agvp-hpo check STUDY``: is a study folder consistent, and what can be repaired?

The folder has three records of one history: the result rows (``results/``, what users read), the
scheduler state (``state.json`` and its backup copy, what a resume continues from, with its journal of rows
not yet stored) and the trials' checkpoints (``trials/``). The driver keeps them in agreement at every
moment it can be killed at; this module verifies that, in plain words, and repairs what can be rebuilt:

* rows: every trial's reports cover epochs 1, 2, ..., its recorded resource, each exactly once (a trainer
  reports every epoch); plain ``pandas.read_parquet`` on the results folder returns what our reader does;
  no part file is missing from the store's numbered sequence;
* state vs rows: the epochs and ASHA rungs the saved state holds are those the rows show;
* checkpoints: a trial that may run again has the checkpoint its resume starts from; a trial stopped early
  or failed has none left (disk space; a completed trial keeps its full-budget checkpoint);
* a finished study has its ``best.yaml``.

:func:`check_study` lists :class:`Problem` s; :func:`repair_study` fixes the repairable ones. Rows that are
gone stay gone: repair records the loss (``lost_parts`` in ``study.json``), after which the problems the
loss explains are warnings and ``resume`` continues the study.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hpo.results import TrialStatus
from hpo.schedulers.brackets import milestones
from hpo.store import StoreError
from hpo.study.folder import StudyFolder
from hpo.study.loader import load_study
from trainers.atomic import atomic_write_text

#: Problems a recorded loss of rows explains.
_LOSS_KINDS = ("parts-missing", "rows-missing", "state-rows-disagree")


@dataclass(frozen=True)
class Problem:
    """One inconsistency: ``kind`` (a stable identifier), a plain-words ``message``, whether
    :func:`repair_study` can fix it, and whether it is only a warning (an acknowledged loss)."""

    kind: str
    message: str
    repairable: bool = False
    warning: bool = False

    def __str__(self) -> str:
        return self.message


def _reports(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty or "status" not in rows:
        return pd.DataFrame(columns=["trial_id", "resource", "status"])
    return rows[rows["status"] != TrialStatus.FAILED.value]


def check_rows(rows: pd.DataFrame) -> list[Problem]:
    """Per trial, reports at epochs 1..n exactly once."""
    problems = []
    for trial_id, group in _reports(rows).groupby("trial_id"):
        epochs = [int(e) for e in group["resource"]]
        duplicated = sorted({e for e in epochs if epochs.count(e) > 1})
        missing = sorted(set(range(1, max(epochs) + 1)) - set(epochs))
        if duplicated:
            problems.append(
                Problem("rows-duplicated", f"trial {trial_id}: epochs {duplicated} are recorded twice")
            )
        if missing:
            problems.append(Problem("rows-missing", f"trial {trial_id}: no row for epochs {missing}"))
    return problems


def check_state(state: Mapping[str, Any], rows: pd.DataFrame, milestone_epochs: list[int]) -> list[Problem]:
    """The trials, epochs and rungs of a saved state against the rows (its journal included)."""
    problems: list[Problem] = []
    journal = pd.DataFrame(state.get("journal", {}).get("rows") or [])
    if not journal.empty and "resource" in journal:
        rows = pd.concat([rows, journal], ignore_index=True, sort=False)
    reports = _reports(rows)
    reached = reports.groupby("trial_id")["resource"].max().to_dict() if not reports.empty else {}
    trials = {int(t): raw for t, raw in state["core"]["trials"]}
    for trial_id, raw in trials.items():
        resource, shown = int(raw["resource"]), int(reached.get(trial_id, 0))
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
            at = set(reports[reports["resource"] == milestone_epochs[k]]["trial_id"].astype(int))
            if set(members) != at:
                problems.append(
                    Problem(
                        "state-rows-disagree",
                        f"ASHA rung {k} ({milestone_epochs[k]} epochs) holds trials {sorted(members)}, the "
                        f"rows show {sorted(at)}",
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
            if not checkpoint or not (folder.path.parent / checkpoint).is_file():
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


def _states(folder: StudyFolder) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The newest readable saved state, and a problem for each damaged copy (repairable from the other)."""
    from hpo.session.driver import backup_file

    found, problems = [], []
    for path in (folder.state_file, backup_file(folder)):
        if not path.exists():
            continue
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            problems.append(Problem("state-unreadable", f"{path}: unreadable ({type(error).__name__})"))
    if not found:
        return None, problems
    if problems:
        problems = [
            Problem(p.kind, p.message + " (the other copy is intact)", repairable=True) for p in problems
        ]
    return max(found, key=lambda s: int(s.get("sequence", 0))), problems


def _with_events(folder: StudyFolder, state: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The snapshot with the events logged after it replayed (the study's current state), or a problem."""
    from hpo.session.driver import StateError, events_file, replayed_state
    from hpo.session.statelog import StateLogError, read_events

    try:
        events = read_events(events_file(folder), int(state.get("sequence", 0)))
        return replayed_state(folder, {**state, "events": events}), []
    except (StateError, StateLogError) as error:
        return None, [Problem("state-log-damaged", f"{error}: the study cannot resume past its snapshot")]


def unrecorded_lost_parts(
    folder: StudyFolder, state: Mapping[str, Any], metadata: Mapping[str, Any]
) -> list[int]:
    """Part numbers the saved state says were stored but the store lacks, and whose loss was not recorded
    (``lost_parts`` in ``study.json``, written by :func:`repair_study`)."""
    recorded = set(metadata.get("lost_parts", []))
    stored = [int(e["part"]) for e in state.get("events", ()) if e.get("e") == "stored"]
    expected_last = max([int(state["journal"]["part"]) - 1, *stored])
    missing = folder.store.missing_numbers(expected_last=expected_last)
    return [n for n in missing if n not in recorded]


def check_study(folder: StudyFolder) -> list[Problem]:
    """Every problem found in ``folder`` (empty: consistent)."""
    problems: list[Problem] = []
    try:
        metadata = folder.store.read_metadata()
    except StoreError as error:
        return [Problem("metadata-unreadable", str(error))]
    rows = folder.store.read()
    if folder.store.results_dir.exists() and any(folder.store.results_dir.glob("*.parquet")):
        plain = len(pd.read_parquet(folder.store.results_dir))
        if plain != len(rows):
            problems.append(
                Problem(
                    "store-duplicates",
                    f"{folder.store.results_dir}: plain pandas reads {plain} rows, the study has {len(rows)} "
                    "(an interrupted compaction of an older agvp-hpo left files holding the same rows)",
                    repairable=True,
                )
            )
    problems += check_rows(rows)
    state, damaged = _states(folder)
    problems += damaged
    if state is None and folder.state_file.exists():
        problems.append(
            Problem("state-lost", f"{folder.path}: no readable scheduler state, it cannot resume")
        )
    if state is not None:
        state, log_problems = _with_events(folder, state)
        problems += log_problems
    if state is not None:
        lost = metadata.get("lost_parts", [])
        unrecorded = unrecorded_lost_parts(folder, state, metadata)
        if unrecorded:
            names = ", ".join(f"part-{n:08d}.parquet" for n in unrecorded)
            problems.append(
                Problem(
                    "parts-missing",
                    f"{names} missing from {folder.store.results_dir}: its rows are lost (repair records the "
                    "loss so the study can resume)",
                    repairable=True,
                )
            )
        spec = load_study(folder.spec_file)
        fidelity = spec.fidelity
        problems += check_state(state, rows, list(milestones(fidelity.max, fidelity.eta, fidelity.min)))
        problems += check_checkpoints(folder, state)
        if lost and not unrecorded:
            problems = [
                Problem(p.kind, f"{p.message} (rows lost, recorded)", warning=True)
                if p.kind in _LOSS_KINDS
                else p
                for p in problems
            ]
    if metadata.get("status") == "finished" and not rows.empty and not folder.best_file.is_file():
        problems.append(
            Problem("best-missing", f"the study finished but {folder.best_file} is missing", repairable=True)
        )
    return problems


def repair_study(folder: StudyFolder) -> list[str]:
    """Fix the repairable problems; returns what was done, one line each."""
    from hpo.session.driver import backup_file
    from hpo.session.lifecycle import write_best_yaml

    done: list[str] = []
    for problem in check_study(folder):
        if not problem.repairable:
            continue
        if problem.kind == "store-duplicates":
            folder.store.compact()
            done.append(f"merged {folder.store.results_dir} so that every row is there once")
        elif problem.kind == "best-missing":
            write_best_yaml(load_study(folder.spec_file), folder)
            done.append(f"wrote {folder.best_file} from the rows")
        elif problem.kind == "checkpoint-orphan":
            trial_id = int(problem.message.split()[1])
            shutil.rmtree(folder.trial_dir(trial_id), ignore_errors=True)
            done.append(f"deleted the checkpoints of trial {trial_id} (it never runs again)")
        elif problem.kind == "state-unreadable":
            state, _ = _states(folder)
            text = json.dumps(state, separators=(",", ":"))
            for path in (folder.state_file, backup_file(folder)):
                atomic_write_text(path, text)
            done.append("rewrote the damaged state copy from the intact one")
        elif problem.kind == "parts-missing":
            state, _ = _states(folder)
            assert state is not None  # a parts-missing problem is only found with a readable state
            state, _ = _with_events(folder, state)
            assert state is not None  # ... and a readable event log
            metadata = folder.store.read_metadata()
            missing = unrecorded_lost_parts(folder, state, metadata)
            folder.store.update_metadata(lost_parts=sorted([*metadata.get("lost_parts", []), *missing]))
            done.append(f"recorded the loss of result part(s) {missing}; the study can resume")
    return done
