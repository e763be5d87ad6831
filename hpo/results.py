"""The one result-row schema (DESIGN principle 7): column names and trial statuses, in one module.

Every backend (the Ray Tune adapter, the simulator) writes rows with exactly :data:`ROW_COLUMNS`, one row per
report a trial makes, so the store, the service and the benchmarks read results from any backend alike.

Column meanings:

* ``study`` - the study name;
* ``trial_id`` - 0, 1, 2, ... in start order;
* ``config`` - the trial's configuration as a JSON object (sorted keys);
* ``resource`` - epochs the trial had trained in total when it measured ``value`` (the fidelity);
* ``value`` - the objective at that epoch; ``metric`` - its name; ``mode`` - ``max`` or ``min``;
* ``time`` - seconds since the study started: wall-clock in the Ray backend, simulated in the simulator;
* ``total_resource`` - epochs reported by all trials of the study up to and including this row (the x-axis
  of "full-budget equivalents" plots: FBE = total_resource / max_resource);
* ``decision`` - the scheduler's answer to this report (``continue``, ``pause``, ``stop``);
* ``bracket`` - Hyperband bracket s of the trial (starts at R eta^-s epochs; ASHA uses s_max, FIFO 0);
* ``rung`` - index of ``resource`` among the scheduler's milestones, or -1 between milestones;
* ``status`` - the trial's status after this row (:class:`TrialStatus`).

The Ray backend adds :data:`BACKEND_COLUMNS` and one ``metric_<name>`` column per reported metric.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final


class TrialStatus(Enum):
    """Where a trial stands. COMPLETED, STOPPED and FAILED are terminal; a study that ends leaves no RUNNING
    trial, and backends record trials still PAUSED at the end as STOPPED. FAILED: the trainer raised (after
    the retries the study allows) or its loss became non-finite."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (TrialStatus.STOPPED, TrialStatus.COMPLETED, TrialStatus.FAILED)


STUDY: Final = "study"
TRIAL_ID: Final = "trial_id"
CONFIG: Final = "config"
RESOURCE: Final = "resource"
VALUE: Final = "value"
METRIC: Final = "metric"
MODE: Final = "mode"
TIME: Final = "time"
TOTAL_RESOURCE: Final = "total_resource"
DECISION: Final = "decision"
BRACKET: Final = "bracket"
RUNG: Final = "rung"
STATUS: Final = "status"

# Columns only the Ray backend fills (the simulator has no wall clock, node or files):
TIMESTAMP: Final = "timestamp"  # Unix time the driver received the report
NODE: Final = "node"  # the Ray node the trial ran on: "IP/first 8 hex digits of the node id"
CHECKPOINT: Final = "checkpoint"  # the checkpoint file written at this epoch ("" if none)
ERROR: Final = "error"  # why a trial failed ("" otherwise)
#: Reserved keys of a trial's reports to the backend (never stored as metrics; ``make_row`` skips ``agvp_*``):
ERROR_KEY: Final = "agvp_error"  # the trial failed for good and must not be retried
TRIAL_KEY: Final = "agvp_trial"  # the trial id the report belongs to
#: Every metric the trainer reported is also kept, as ``metric_<name>`` (e.g. ``metric_val_a2g_map``).
METRIC_PREFIX: Final = "metric_"
BACKEND_COLUMNS: Final = (TIMESTAMP, NODE, CHECKPOINT, ERROR)

#: Every result row has exactly these keys, in this order.
ROW_COLUMNS: Final = (
    STUDY,
    TRIAL_ID,
    CONFIG,
    RESOURCE,
    VALUE,
    METRIC,
    MODE,
    TIME,
    TOTAL_RESOURCE,
    DECISION,
    BRACKET,
    RUNG,
    STATUS,
)


def config_json(config: Mapping[str, Any]) -> str:
    """The ``config`` column: compact JSON with sorted keys, so equal configurations give equal strings."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"))


def make_row(
    *,
    study: str,
    metric: str,
    mode: str,
    trial_id: int,
    config: Mapping[str, Any],
    resource: int,
    value: float,
    time: float,
    total_resource: int,
    decision: str,
    bracket: int,
    rung: int,
    status: str,
    metrics: Mapping[str, Any],
    node: str,
    error: str,
    timestamp: float,
) -> dict[str, Any]:
    """One result row: :data:`ROW_COLUMNS`, then :data:`BACKEND_COLUMNS` and every numeric metric as
    ``metric_<name>`` (reserved ``agvp_*`` keys, the checkpoint and the epoch are not metrics)."""
    row: dict[str, Any] = {
        STUDY: study,
        TRIAL_ID: trial_id,
        CONFIG: config_json(config),
        RESOURCE: resource,
        VALUE: value,
        METRIC: metric,
        MODE: mode,
        TIME: round(time, 3),
        TOTAL_RESOURCE: total_resource,
        DECISION: decision,
        BRACKET: bracket,
        RUNG: rung,
        STATUS: status,
        TIMESTAMP: timestamp,
        NODE: node,
        CHECKPOINT: str(metrics.get("checkpoint") or ""),
        ERROR: error,
    }
    for name, metric_value in metrics.items():
        if name in ("checkpoint", "epoch") or name.startswith("agvp_"):
            continue
        if isinstance(metric_value, (int, float)) and not isinstance(metric_value, bool):
            row[f"{METRIC_PREFIX}{name}"] = float(metric_value)
    return row
