"""search_spaces/challenge.yaml: the whole challenge's design space (backbone, X-TFCLIP switches, ACP modules,
loss weights, training sources, the data-fraction fidelity) in one study. The bundled GPU file validates as
written; its CPU variant (tiny towers of both kinds, the tiny dataset, a generic-layout extra source) trains
the space's corners end to end through the trainer protocol."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpo.study import StudyError, load_study, parse_study
from hpo.study.build import trainer_settings
from hpo.study.validate import probe_points, validate_study
from trainers.data.synth import SynthConfig
from trainers.data.synth_sources import generate_source
from trainers.protocol import Budget
from trainers.tfclip.config import ConfigError, trial_config
from trainers.tfclip.trial import TFCLIPTrainer

CHALLENGE = Path(__file__).resolve().parents[1] / "search_spaces" / "challenge.yaml"


def test_the_bundled_challenge_study_validates_as_written() -> None:
    spec = load_study(CHALLENGE)
    validate_study(spec, source=str(CHALLENGE))
    space = spec.space
    for key in ("model.backbone", "model.acp.cross_view", "model.frame_position", "data.use_extra_sources"):
        assert key in space, key
    assert spec.fidelity.resource == "data_fraction" and spec.fidelity.retrains
    # a parameter that exists for one backbone only
    assert not space.is_active("model.stride", {"model.backbone": "EVA02-L-14"})
    assert space.is_active("model.stride", {"model.backbone": "ViT-B-16"})
    # each backbone trains from its own weights file
    settings = trainer_settings(spec)
    for backbone in ("ViT-B-16", "EVA02-L-14"):
        config = trial_config(settings, {"model.backbone": backbone})
        assert config.model.weights is not None and config.model.weights.name == f"{backbone}.pt"
    # a backbone the mapping does not name is one line naming the key, not a random-init trial
    with pytest.raises(
        ConfigError, match=r"trainer.weights names files for ViT-B-16, EVA02-L-14, but not for"
    ):
        trial_config(settings, {"model.backbone": "ViT-L-14"})
    empty = yaml.safe_load(CHALLENGE.read_text(encoding="utf-8"))
    empty["trainer"]["weights"] = {}
    with pytest.raises(StudyError, match=r"trainer\.weights must name at least one backbone"):
        parse_study(empty)


def _cpu_variant(tmp_path: Path, small_root: Path) -> dict[str, Any]:
    raw = yaml.safe_load(CHALLENGE.read_text(encoding="utf-8"))
    cpu = copy.deepcopy(raw)
    space = cpu["space"]
    space["model.backbone"] = {"choice": ["tiny-cpu", "tiny-eva-cpu"]}
    space["model.stride"] = {"choice": [8, 6], "when": {"model.backbone": "tiny-cpu"}}
    space["data.transform.size"] = {"choice": ["64x32", "48x48"]}
    space["optim.lr"] = {"loguniform": [1.0e-4, 1.0e-2]}  # from scratch: the tiny-cpu preset trains at 1e-3
    space["model.acp.memory_slots"] = {"choice": [4, 64], "when": {"model.acp.memory": True}}
    extra = tmp_path / "extra"
    generate_source(
        extra, "generic", SynthConfig(seed=5, train_ids=4, test_ids=2, distractor_ids=1, frames=(4, 6))
    )
    cpu["fidelity"] = {
        "resource": "epochs+data_fraction",
        "min": 1,
        "max": 2,
        "eta": 2,
        "min_data_fraction": 0.5,
    }
    cpu["budget"] = {"max_trials": 4}
    cpu["resources"] = {"cpu": 1}
    cpu["trainer"] = {
        "name": "tfclip",
        "preset": "tiny-cpu",
        "data": str(small_root),
        "overrides": {
            "model.tmd_heads": 2,
            "optim.warmup_epochs": 1,
            "data.batch.p": 4,
            "data.batch.k": 2,
            "data.split.fraction": 0.3,
            "runtime.eval_batch_size": 64,
            "data.extra_sources": [{"root": str(extra), "layout": "generic"}],
        },
    }
    cpu["storage"] = {"root": str(tmp_path / "results")}
    return cpu


def test_the_cpu_variant_trains_the_corners_of_the_space(tmp_path: Path, small_root: Path) -> None:
    spec = parse_study(_cpu_variant(tmp_path, small_root))
    validate_study(spec)
    settings = trainer_settings(spec)
    points = [params for params, varied in probe_points(spec.space) if varied is None][:2]  # the two corners
    assert {p["model.backbone"] for p in points} == {"tiny-cpu", "tiny-eva-cpu"}
    assert any(p["model.acp.cross_view"] and p["model.acp.memory"] for p in points)
    for number, params in enumerate(points):
        reports: list[dict[str, Any]] = []
        TFCLIPTrainer().fit(
            settings,
            params,
            budget=spec.fidelity.budget(1),
            checkpoint_dir=tmp_path / f"trial-{number}",
            resume_from=None,
            report=reports.append,
        )
        assert len(reports) == 1 and 0.0 <= reports[0]["val_map"] <= 1.0, params
        # the first rung trains on half the identities (extra source included when switched on)
        assert spec.fidelity.budget(1) == Budget(1, 0.5)


@pytest.mark.parametrize("backbone", ["tiny-cpu", "tiny-eva-cpu"])
def test_every_acp_module_composes_with_both_tower_kinds(
    backbone: str, tmp_path: Path, small_root: Path
) -> None:
    import torch

    from trainers.engine import build_model

    spec = parse_study(_cpu_variant(tmp_path, small_root))
    params = {
        "model.backbone": backbone,
        **{
            f"model.acp.{m}": True
            for m in ("view_encoding", "memory", "motion_gate", "scale_norm", "cross_view")
        },
        "model.frame_position": True,
        "model.temporal_pool": "attention",
        "model.memory_update": "alpha",
        "data.transform.size": "64x32",
    }
    config = trial_config(trainer_settings(spec), params)
    model = build_model(config, 5, torch.randn(5, 64 if backbone == "tiny-cpu" else 32))
    model.train()
    clips = torch.randn(2, config.data.sampling.seq_len, 3, 64, 32)
    out = model(clips, torch.tensor([0, 4]))
    loss = sum(v.float().mean() for k, v in out.items() if k.startswith("logits") or k == "v2m_logits")
    loss.backward()
    assert out["feat_cls"].shape[0] == 2


def test_the_cpu_variant_runs_as_a_study(short_tmp: Path, small_root: Path) -> None:
    """The CPU variant as a real study: Ray, Hyperband + mf-tpe from the preset's prior, the combined
    fidelity (1 epoch on half the identities, then 2 on all), trials of both tower kinds."""
    from hpo.ray_backend.runner import run_study
    from hpo.study.folder import StudyFolder

    raw = _cpu_variant(short_tmp, small_root)
    raw["budget"] = {"max_trials": 3}
    raw["execution"] = {"cpus": 2}
    outcome = run_study(parse_study(raw))
    assert outcome.status == "finished" and outcome.trials == 3
    rows = StudyFolder.of(short_tmp / "results", raw["name"]).store.read()
    assert (rows["status"] != "failed").all(), rows["error"].tolist()
    assert set(rows["metric_fidelity_data_fraction"]) <= {0.5, 1.0}
    assert (rows["resource"] == 2).any()  # something reached the full budget
