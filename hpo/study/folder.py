"""One study's folder: where the spec, results, scheduler state, checkpoints and best config live.

``<storage.root>/<study name>/``::

    study.yaml       the study file as run (resume reads it back, so edits to the original do not leak in)
    study.json       metadata: status, start/end, budget used, driver pid (hpo.store.ResultStore)
    state.json       scheduler + searcher snapshot and the row journal (and state.backup.json, the same)
    state.events.jsonl  one line per decision since that snapshot (hpo.session.statelog)
    results/         Parquet result rows (hpo.store.ResultStore)
    trials/00007/    one trial's checkpoints: work/ (the trainer's folder) and epoch-NNNN.pt links
    ray/             Ray Tune's experiment folder (its own bookkeeping, small pointer checkpoints)
    best.yaml        the best configuration as a trainer config that ``agvp-hpo train`` accepts
    STOP             written by ``agvp-hpo stop`` / the REST API: the driver stops at its next step
    .lock            held (fcntl.flock) by the one driver running the study (hpo.study.lock)
"""

from __future__ import annotations

from pathlib import Path

from hpo.store import METADATA_FILE, ResultStore, StoreError

SPEC_FILE = "study.yaml"
STATE_FILE = "state.json"
TRIALS_DIR = "trials"
RAY_DIR = "ray"
BEST_FILE = "best.yaml"
STOP_FILE = "STOP"


class StudyFolder:
    """Paths inside one study folder, and the store that reads and writes its results."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.store = ResultStore(self.path)

    @classmethod
    def of(cls, root: Path | str, name: str) -> StudyFolder:
        return cls(Path(root) / name)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def spec_file(self) -> Path:
        return self.path / SPEC_FILE

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def metadata_file(self) -> Path:
        return self.path / METADATA_FILE

    @property
    def ray_dir(self) -> Path:
        return self.path / RAY_DIR

    @property
    def best_file(self) -> Path:
        return self.path / BEST_FILE

    @property
    def stop_file(self) -> Path:
        return self.path / STOP_FILE

    def trial_dir(self, trial_id: int) -> Path:
        return self.path / TRIALS_DIR / f"{trial_id:05d}"

    def exists(self) -> bool:
        return self.metadata_file.is_file()


def find_study(reference: str | Path, root: Path | str = "results") -> StudyFolder:
    """A study folder from a path (``results/demo``) or a name under ``root`` (``demo``)."""
    candidates = [Path(reference), Path(root) / str(reference)]
    for candidate in candidates:
        if (candidate / METADATA_FILE).is_file():
            return StudyFolder(candidate)
    for candidate in candidates:
        if (candidate / SPEC_FILE).is_file():
            raise StoreError(
                f"{candidate}: not a study yet (its run was stopped before the study was created): "
                "start it again with `agvp-hpo run`"
            )
    looked = " or ".join(str(c) for c in dict.fromkeys(candidates))
    raise StoreError(f"no study at {looked} (a study folder holds {METADATA_FILE})")


def list_studies(root: Path | str) -> list[StudyFolder]:
    """Every study folder directly under ``root``, by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [StudyFolder(p) for p in sorted(root.iterdir()) if (p / METADATA_FILE).is_file()]


def study_status(folder: StudyFolder, metadata: dict[str, object]) -> str:
    """The status a reader should show: ``interrupted`` for a study marked running that no driver holds
    (its driver died without closing it: resume it), else the recorded status."""
    from hpo.study.lock import lock_holder

    status = str(metadata.get("status", "unknown"))
    if status == "running" and lock_holder(folder.path) is None:
        return "interrupted"
    return status
