"""MFHO's other fidelity (the seed report, Appendix A.4: "fewer epochs or using subsets of data"): a rung can
give a configuration a fraction of the training identities, alone (``data_fraction``: a whole schedule per
rung, promotions retrain) or with the epochs (``epochs+data_fraction``: promotions continue from the
checkpoint with more data), and the budget reaches the trainer as a typed object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpo.ray_backend.runner import run_study
from hpo.schedulers import make_scheduler
from hpo.searchers import make_searcher
from hpo.simulator import simulate
from hpo.space import parse_space
from hpo.study import StudyError, parse_study
from hpo.study.build import core_from_spec, trainer_settings
from hpo.study.folder import StudyFolder
from trainers.protocol import Budget

SPACE = {"x": {"uniform": [0.0, 1.0]}}


def _raw(**fidelity: Any) -> dict[str, Any]:
    return {
        "name": "df",
        "space": SPACE,
        "fidelity": {"min": 1, "max": 9, "eta": 3, **fidelity},
        "scheduler": "hyperband",
        "budget": {"max_trials": 10},
        "trainer": {"name": "synthetic"},
    }


def test_each_resource_maps_a_rung_to_a_typed_budget() -> None:
    epochs = parse_study(_raw()).fidelity
    assert epochs.budget(3) == Budget(3) and not epochs.retrains and epochs.schedule_epochs == 9
    fraction = parse_study(_raw(resource="data_fraction", epochs=40)).fidelity
    assert [fraction.budget(r) for r in (1, 3, 9)] == [Budget(40, 1 / 9), Budget(40, 1 / 3), Budget(40, 1.0)]
    assert fraction.retrains and fraction.schedule_epochs == 40
    both = parse_study(_raw(resource="epochs+data_fraction", min_data_fraction=0.25)).fidelity
    # rungs 1, 3, 9: the fraction grows geometrically from 0.25 to 1 (0.25, 0.5, 1)
    assert [both.budget(r) for r in (1, 3, 9)] == [Budget(1, 0.25), Budget(3, 0.5), Budget(9, 1.0)]
    assert both.budget(2).data_fraction == 0.5  # between rungs: the next rung's fraction
    assert not both.retrains


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"fidelity": {"min": 1, "max": 9, "resource": "data_fraction"}}, "fidelity.epochs", "is required"),
        ({"fidelity": {"min": 1, "max": 9, "epochs": 5}}, "fidelity.epochs", "applies only to resource"),
        (
            {"fidelity": {"min": 1, "max": 9, "resource": "epochs+data_fraction"}},
            "fidelity.min_data_fraction",
            "is required",
        ),
        (
            {"fidelity": {"min": 1, "max": 9, "resource": "epochs+data_fraction", "min_data_fraction": 0}},
            "fidelity.min_data_fraction",
            "must be > 0",
        ),
        (
            {
                "fidelity": {"min": 1, "max": 9, "resource": "data_fraction", "epochs": 4},
                "scheduler": "ray-asha",
            },
            "fidelity.resource",
            "counts only epochs",
        ),
        (
            {
                "fidelity": {"min": 1, "max": 9, "resource": "data_fraction", "epochs": 4},
                "scheduler": "mfho-hedge",
            },
            "fidelity.resource",
            "stops trials in the middle",
        ),
        (
            {
                "fidelity": {"min": 1, "max": 9, "resource": "data_fraction", "epochs": 4},
                "scheduler": {"kind": "asha", "mode": "stopping"},
            },
            "fidelity.resource",
            "stops trials in the middle",
        ),
    ],
)
def test_fidelity_rules(changes: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(StudyError) as caught:
        parse_study({**_raw(), **changes})
    assert caught.value.field == field and rule in str(caught.value), str(caught.value)


def test_the_schedule_spans_the_data_fraction_epochs() -> None:
    raw = _raw(resource="data_fraction", epochs=40)
    raw["trainer"] = {"name": "tfclip", "preset": "tiny-cpu", "data": "data"}
    assert trainer_settings(parse_study(raw))["overrides"]["optim.epochs"] == 40


def _core(retrain: bool, scheduler: str = "hyperband") -> Any:
    searcher = make_searcher("random", parse_space(SPACE), np.random.default_rng(0))
    return make_scheduler(
        scheduler,
        searcher,
        max_resource=9,
        reduction_factor=3,
        min_resource=1,
        max_total_resource=60,
        retrain=retrain,
    )


@pytest.mark.parametrize("scheduler", ["hyperband", "asha", "mfho"])
def test_a_retraining_core_charges_every_promotion_its_whole_target(scheduler: str) -> None:
    """With ``retrain`` a promotion is a RESUME in the core's bookkeeping that trains from scratch: the
    simulator gives it one report (at its target) and the budget pays its whole target, so the same budget
    buys fewer jobs than with checkpoints - and the committed resource never exceeds the budget."""
    curve = lambda config, resource: float(config["x"]) * resource  # noqa: E731
    jobs: list[Any] = []
    core = _core(True, scheduler)
    suggest = core.suggest

    def recording_suggest() -> Any:
        job = suggest()
        if job is not None:
            jobs.append(job)
            assert core.committed_resource <= 60
        return job

    core.suggest = recording_suggest  # type: ignore[method-assign]
    result = simulate(core, curve)
    promotions = [job for job in jobs if job.start > 0]
    assert promotions and all(job.retrain and job.cost == job.resource for job in promotions)
    assert result.total_resource == sum(job.resource for job in jobs) == core.used_resource <= 60
    assert all(row["resource"] in core.milestones for row in result.rows)  # one report per job, at a rung
    resumed = simulate(_core(False, scheduler), curve)
    assert resumed.total_resource <= 60 and len(resumed.rows) >= len(result.rows)


def test_a_retraining_core_restores_its_charges() -> None:
    core = _core(True)
    job = core.suggest()
    assert job is not None
    state = core.state_dict()
    assert state["settings"]["retrain"] is True
    restored = _core(True)
    restored.load_state_dict(state)
    assert restored.committed_resource == core.committed_resource
    with pytest.raises(ValueError, match="settings"):
        _core(False).load_state_dict(state)


@pytest.mark.parametrize(
    ("fidelity", "fractions"),
    [
        ({"resource": "data_fraction", "epochs": 3}, {1: 0.25, 2: 0.5, 4: 1.0}),
        ({"resource": "epochs+data_fraction", "min_data_fraction": 0.25}, {1: 0.25, 2: 0.5, 4: 1.0}),
    ],
)
def test_studies_on_ray_carry_every_fidelity_dimension(
    short_tmp: Path, fidelity: dict[str, Any], fractions: dict[int, float]
) -> None:
    """Through Ray and the trainer protocol: each row says the epochs and the data fraction it was measured
    at; a data-fraction promotion trains the whole schedule again (epochs 1..3 on more identities), the
    combined form continues the checkpoint's epochs."""
    raw = {
        "name": "fractions",
        "space": SPACE,
        "fidelity": {"min": 1, "max": 4, "eta": 2, **fidelity},
        "scheduler": "asha",
        "searcher": {"kind": "random", "seed": 2},
        "budget": {"max_trials": 4},
        "execution": {"cpus": 2},
        "trainer": {"name": "synthetic"},
        "storage": {"root": str(short_tmp / "results")},
    }
    spec = parse_study(raw)
    outcome = run_study(spec)
    assert outcome.status == "finished"
    rows = StudyFolder.of(short_tmp / "results", "fractions").store.read()
    assert set(rows["resource"]) <= {1, 2, 3, 4}
    for _, row in rows.iterrows():
        if fidelity["resource"] == "data_fraction":
            assert row["resource"] in fractions  # one row per job, at its rung
            assert row["metric_fidelity_data_fraction"] == fractions[row["resource"]]
            assert row["metric_fidelity_epochs"] == 3
        else:
            rung = min(r for r in fractions if r >= row["resource"])
            assert row["metric_fidelity_data_fraction"] == fractions[rung]
            assert row["metric_fidelity_epochs"] == row["resource"]
    core = core_from_spec(spec)
    assert core.retrain is (fidelity["resource"] == "data_fraction")
    promoted = rows.groupby("trial_id")["resource"].max()
    assert (promoted > 1).any()


def test_identity_subsets_are_nested_seeded_and_cover_the_batch() -> None:
    from trainers.data.index import Tracklet
    from trainers.data.naming import Platform
    from trainers.data.split import identity_subset

    def tracklet(pid: int, name: str) -> Tracklet:
        return Tracklet("train", pid, name, (f"{pid}/{name}/f.jpg",), 0, Platform.CCTV, None, pid)

    tracklets = [tracklet(pid, name) for pid in range(20) for name in ("a", "b")]

    def ids(fraction: float, seed: int = 0, min_ids: int = 1) -> set[int]:
        return {t.pid for t in identity_subset(tracklets, fraction, seed=seed, min_ids=min_ids)}

    small, half, full = ids(0.1), ids(0.5), ids(1.0)
    assert len(small) == 2 and len(half) == 10 and len(full) == 20
    assert small <= half <= full  # nested
    assert ids(0.5) == half and ids(0.5, seed=1) != half  # the same for every configuration, by seed
    assert len(ids(0.01, min_ids=4)) == 4  # never fewer than a PK batch's identities
    # a subset keeps every tracklet of its identities
    assert len(identity_subset(tracklets, 0.5, seed=0)) == 20
    with pytest.raises(ValueError, match="fraction"):
        identity_subset(tracklets, 0.0, seed=0)


def test_tfclip_trains_on_a_fraction_and_continues_on_more_data(small_root: Path, tmp_path: Path) -> None:
    """TF-CLIP at a data-fraction rung: fewer identities per epoch (fewer steps), the same classifier, and a
    promotion of the combined form continues the checkpoint on more identities (more data, same schedule)."""
    from trainers.engine import fit
    from trainers.tfclip.config import resolve_config
    from trainers.tfclip.trial import TFCLIPTrainer

    config = resolve_config(
        {
            "preset": "tiny-cpu",
            "data": {"root": str(small_root), "batch": {"p": 4, "k": 2}, "split": {"fraction": 0.3}},
            "runtime": {"eval_batch_size": 64},
        }
    )
    run = tmp_path / "run"
    low = fit(config, max_epochs=1, data_fraction=0.4, checkpoint_dir=run)
    full = fit(config, max_epochs=1, checkpoint_dir=tmp_path / "full")
    assert 4 <= low[0]["train_ids"] < full[0]["train_ids"]
    assert low[0]["train_seconds"] < full[0]["train_seconds"] * 1.5  # fewer steps (not a timing assertion)
    more = fit(config, max_epochs=2, data_fraction=1.0, checkpoint_dir=run, resume_from=run)
    assert [r["epoch"] for r in more] == [2] and more[0]["train_ids"] == full[0]["train_ids"]
    with pytest.raises(ValueError, match="data_fraction"):
        fit(config, max_epochs=1, data_fraction=1.5)
    # the protocol's typed budget reaches the engine
    reports: list[dict[str, Any]] = []
    settings = {
        "preset": "tiny-cpu",
        "data": str(small_root),
        "overrides": {"data.batch.p": 4, "data.batch.k": 2, "data.split.fraction": 0.3},
    }
    TFCLIPTrainer().fit(
        settings,
        {},
        budget=Budget(1, 0.4),
        checkpoint_dir=tmp_path / "p",
        resume_from=None,
        report=reports.append,
    )
    assert reports[0]["train_ids"] == low[0]["train_ids"]


def test_validate_shows_what_each_rung_trains(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from hpo.cli import app

    raw = {**_raw(resource="data_fraction", epochs=40), "storage": {"root": str(tmp_path / "results")}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 = 40 epochs on 11% of the identities" in text and "9 = 40 epochs on 100%" in text
    assert "retrains from scratch" in text
