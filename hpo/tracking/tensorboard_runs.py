"""Each trial one TensorBoard run (see :mod:`hpo.tracking`): ``<dir>/<study>/trial-00007/``, in
TensorBoard's event-file format (tensorboardX's protos and TFRecord framing).

- every ``metric_<name>`` of every row as scalar ``<name>`` at ``global_step`` = the row's epoch;
- the trial's configuration once, as hparams (the HParams tab; the objective is its metric), when the
  run folder is new;
- every decision as text ``decision`` at its epoch (``pause at rung 1, bracket 2: paused``);
- ``best.yaml`` as text ``best.yaml`` of the best trial's run, at the end of the session.

Events are buffered and appended per trial when the recorder flushes (about once a second): no writer
thread and no open file per trial (tensorboardX's ``SummaryWriter`` holds both, and reopening one per job
cost ~2 ms a report). Each session writes its own event file into the run folder (a resumed study too);
TensorBoard merges a run's event files.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo.tracking import Tracker, row_metrics, run_name


class TensorBoardTracker(Tracker):
    """See the module docstring. ``root``: ``tracking.tensorboard.dir``."""

    kind = "TensorBoard"

    def __init__(self, root: Path, *, study: str, metric: str) -> None:
        self.folder = Path(root) / study
        self.metric = metric
        self.file_name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self.pending: dict[int, list[bytes]] = {}
        self._started: set[int] = set()  # trials whose event file this session has begun

    def run_dir(self, trial_id: int) -> Path:
        return self.folder / run_name(trial_id)

    def _add(self, trial_id: int, summary: Any, step: int = 0) -> None:
        from tensorboardX.proto.event_pb2 import Event

        event = Event(wall_time=time.time(), step=step, summary=summary)
        self.pending.setdefault(trial_id, []).append(event.SerializeToString())

    def _begin(self, trial_id: int, config: Mapping[str, Any] | None) -> None:
        """The first event of this session for the trial: the file header, and hparams if the run is new."""
        if trial_id in self._started:
            return
        from tensorboardX.proto.event_pb2 import Event

        self._started.add(trial_id)
        folder = self.run_dir(trial_id)
        new = not folder.is_dir() or not any(folder.glob("events.out.tfevents.*"))
        header = Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
        self.pending.setdefault(trial_id, []).insert(0, header)
        if new and config is not None:
            from tensorboardX.summary import hparams

            for summary in hparams({str(k): _hparam(v) for k, v in config.items()}, {self.metric: 0.0}):
                self._add(trial_id, summary)

    def row(self, row: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        from tensorboardX.summary import scalar, text

        trial_id = int(row["trial_id"])
        self._begin(trial_id, config)
        epoch = int(row["resource"])
        for name, value in row_metrics(row).items():
            self._add(trial_id, scalar(name, value), epoch)
        line = f"{row['decision']} at rung {row['rung']}, bracket {row['bracket']}: {row['status']}"
        if row.get("error"):
            line += f" ({row['error']})"
        self._add(trial_id, text("decision", line), epoch)

    def flush(self) -> None:
        if not self.pending:
            return
        from tensorboardX.record_writer import masked_crc32c

        for trial_id, records in self.pending.items():
            folder = self.run_dir(trial_id)
            folder.mkdir(parents=True, exist_ok=True)
            chunks = []
            for data in records:
                header = struct.pack("<Q", len(data))
                chunks += [header, struct.pack("<I", masked_crc32c(header)), data]
                chunks.append(struct.pack("<I", masked_crc32c(data)))
            with open(folder / self.file_name, "ab") as handle:
                handle.write(b"".join(chunks))
        self.pending = {}

    def close(self, *, finished: bool, best: tuple[int, str] | None) -> None:
        if best is not None and (best[0] in self._started or self.run_dir(best[0]).is_dir()):
            from tensorboardX.summary import text

            self._begin(best[0], None)
            self._add(best[0], text("best.yaml", _markdown_code(best[1])))
        self.flush()

    def discard(self) -> None:
        self.pending = {}


def _hparam(value: Any) -> Any:
    """A configuration value TensorBoard's HParams tab shows (numbers, strings, booleans; others as text)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _markdown_code(text: str) -> str:
    """TensorBoard renders text as Markdown: indent YAML four spaces so it shows as code."""
    return "\n".join(f"    {line}" for line in text.splitlines())
