"""The trainer config: presets, YAML round trip, clear errors, and every key live."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel

from trainers.engine import _autocast, build_model
from trainers.tfclip.config import ConfigError, TrainerConfig, config_to_yaml, load_config, resolve_config
from trainers.tfclip.losses import ReIDTask
from trainers.tfclip.optim import (
    build_optimizer,
    centralize_gradients,
    lr_factor,
    set_epoch_lr,
)


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _probe(config: TrainerConfig) -> str:
    """Fingerprint of the computation a config drives: two training steps on a fixed batch, the test
    features, and the lr schedule over 100 epochs."""
    torch.manual_seed(0)
    classes, frames = 4, config.data.sampling.seq_len
    embed = 64
    rows = torch.Generator().manual_seed(1)
    memory = torch.randn(classes, embed, generator=rows) if config.uses_memory else None
    model = build_model(config, classes, memory)
    task = ReIDTask(config.loss, num_classes=classes, parts=model.parts, seq_len=frames, dims=model.dims)
    optimizer = build_optimizer(model, config.optim, task=task)
    generator = torch.Generator().manual_seed(2)
    clips = torch.randn(
        4, frames, 3, config.data.transform.height, config.data.transform.width, generator=generator
    )
    cameras, labels = torch.tensor([0, 1, 4, 5]), torch.tensor([0, 0, 1, 1])
    values = []
    for epoch in range(2):
        set_epoch_lr(optimizer, epoch + 12, config.optim)
        with _autocast(config, torch.device("cpu")):
            terms = task(model(clips, cameras), labels)
        optimizer.zero_grad()
        terms["loss"].backward()
        if config.optim.grad_centralization:
            centralize_gradients(model)
        if config.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        task.next_epoch()
        values += [float(v.detach()) for v in terms.values()]
    model.eval()
    values += model.test_features(clips, cameras).flatten().tolist()
    values += [lr_factor(e, config.optim) for e in range(100)]
    return hashlib.sha256(repr([round(v, 6) for v in values]).encode()).hexdigest()


BASE: dict[str, Any] = {"preset": "tiny-cpu"}
# key -> (value that must change the probe, extra settings both sides need for the key to matter)
LIVE: dict[str, tuple[Any, dict[str, Any]]] = {
    "model.stride": (6, {}),
    "model.sie_coef": (0.5, {}),
    "model.frame_position": (True, {}),
    "model.tmd": (
        False,
        {"model.test_features": ["cls", "proj"], "loss.frame_weight": 0.0, "optim.classifier_lr_parts": []},
    ),
    "model.quick_gelu": (False, {}),
    "model.neck_feat": ("after", {}),
    "model.tmd_heads": (4, {}),
    "model.ssp_layers": (2, {}),
    "model.ssp_heads": (4, {}),
    "model.ssp_dropout": (0.5, {}),
    "model.memory_update": ("alpha", {}),
    "model.temporal_pool": ("attention", {}),
    "model.neck": ("in", {}),
    "model.test_features": (["cls"], {}),
    "model.acp.view_encoding": (True, {}),
    "model.acp.memory": (True, {}),
    "model.acp.memory_slots": (1, {"model.acp.memory": True}),
    "model.acp.motion_gate": (True, {}),
    "model.acp.scale_norm": (True, {}),
    "model.acp.cross_view": (True, {}),
    "model.acp.cross_view_layers": (2, {"model.acp.cross_view": True}),
    "model.acp.heads": (4, {"model.acp.cross_view": True}),
    "model.acp.dropout": (0.5, {"model.acp.view_encoding": True}),
    "loss.id_weight": (1.0, {}),
    "loss.label_smoothing": (0.3, {}),
    "loss.online_label_smoothing": (True, {}),
    "loss.ols_alpha": (0.9, {"loss.online_label_smoothing": True}),
    "loss.triplet_weight": (0.5, {}),
    "loss.triplet_margin": (3.0, {}),
    "loss.v2m_weight": (0.0, {}),
    "loss.frame_weight": (0.2, {}),
    "loss.center_weight": (0.1, {}),
    "loss.contrastive_weight": (0.5, {}),
    "loss.contrastive_temperature": (0.5, {"loss.contrastive_weight": 0.5}),
    "optim.name": ("sgd", {}),
    "optim.lr": (1e-2, {}),
    "optim.weight_decay": (0.5, {"optim.name": "sgd"}),
    "optim.weight_decay_bias": (0.5, {"optim.name": "sgd"}),
    "optim.bias_lr_factor": (10.0, {}),
    "optim.classifier_lr_factor": (100.0, {}),
    "optim.classifier_lr_parts": (["cls", "proj", "tmd"], {}),
    "optim.momentum": (0.5, {"optim.name": "sgd"}),
    "optim.epochs": (60, {"optim.schedule": "cosine"}),
    "optim.warmup_epochs": (5, {}),
    "optim.warmup_factor": (0.5, {}),
    "optim.schedule": ("cosine", {}),
    "optim.milestones": ([10], {}),
    "optim.gamma": (0.5, {}),
    "optim.grad_centralization": (True, {}),
    "optim.grad_clip": (1e-3, {}),
    "optim.precision": ("bf16", {}),
    "data.transform.height": (48, {}),
    "data.transform.width": (24, {}),
    "data.sampling.seq_len": (3, {}),
}
# key -> a value that must be rejected. These keys act outside the probe; each has its own behaviour test
# (data.* in tests/test_data_pipeline.py and test_data_transforms.py, weights/pos_interpolation in
# test_tfclip_model.py, runtime.* and data.root in test_tfclip_engine.py).
VALIDATED: dict[str, Any] = {
    "preset": "tiny",
    "model.backbone": "ViT-B-61",
    "model.weights": 3,
    "model.pos_interpolation": "area",
    "data.root": None,
    "data.workers": -1,
    "data.extra_sources": [{"root": "g2a", "layout": "mars"}],  # tests/test_extra_sources.py
    "data.transform.interpolation": "lanczos",
    "data.transform.flip_p": 2.0,
    "data.transform.erase_p": -0.1,
    "data.transform.erase_area": [0.5, 0.1],
    "data.transform.erase_aspect": [0, 1],
    "data.transform.erase_fill": "zeros",
    "data.transform.mean": [0.5],
    "data.transform.std": [0, 1, 1],
    "data.sampling.train_mode": "random",
    "data.sampling.test_mode": "middle",
    "data.batch.p": 1,
    "data.batch.k": 0,
    "data.split.seed": "x",
    "data.split.fraction": 1.0,
    "data.split.subset_seed": "x",  # tests/test_data_fraction_fidelity.py
    "data.use_extra_sources": "sometimes",  # tests/test_extra_sources.py
    "data.frame_cache": "sometimes",  # tests/test_frame_cache.py
    "runtime.seed": "x",
    "runtime.device": 5,
    "runtime.threads": 0,
    "runtime.eval_batch_size": 0,
    "runtime.eval_flip": "sometimes",
    "runtime.eval_mask": {"gendr": 0.2},
    "runtime.cache_dir": 3,
}


def test_every_key_is_covered() -> None:
    keys = set(_leaf_keys(TrainerConfig))
    assert set(LIVE) | set(VALIDATED) == keys
    assert not set(LIVE) & set(VALIDATED)


BASE_PROBES: dict[str, str] = {}


@pytest.mark.parametrize("key", sorted(LIVE))
def test_live_key_changes_the_computation(key: str) -> None:
    value, context = LIVE[key]
    base = resolve_config(BASE, overrides=context)
    changed = resolve_config(BASE, overrides={**context, key: value})
    assert base != changed
    assert _probe(base) != _probe(changed), f"{key}={value!r} did not change the computation"


@pytest.mark.parametrize("key", sorted(VALIDATED))
def test_validated_key_rejects_bad_values(key: str) -> None:
    if key == "model.backbone":
        with pytest.raises(ValueError, match="did you mean"):
            build_model(resolve_config(BASE, overrides={key: VALIDATED[key]}), 2, None)
        return
    with pytest.raises(ConfigError) as caught:
        resolve_config(BASE, overrides={key: VALIDATED[key]})
    assert key.split(".")[-1] in str(caught.value) or key == "preset"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optim.lrr": 1e-3}, "unknown key optim.lrr (did you mean optim.lr?)"),
        ({"modle.neck": "bn"}, "unknown key modle (did you mean model?)"),
        ({"data.transform.hieght": 10}, "did you mean data.transform.height?"),
        ({"optim.warmup_epochs": 50}, "warmup_epochs is 50, but must be < epochs (40)"),
        ({"optim.milestones": [20, 10]}, "milestones"),
        ({"model.test_features": ["tmd"], "model.tmd": False}, "test_features uses 'tmd'"),
    ],
)
def test_errors_name_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(BASE, overrides=overrides)
    assert message in str(caught.value)


def test_presets_differ_as_documented() -> None:
    tfclip, xtfclip, tiny = (resolve_config({"preset": p}) for p in ("tfclip", "x-tfclip", "tiny-cpu"))
    assert (tfclip.data.transform.height, tfclip.data.batch.p, tfclip.optim.lr) == (256, 4, 5e-6)
    assert xtfclip.model.temporal_pool == "attention" and xtfclip.model.neck == "in"
    assert xtfclip.loss.online_label_smoothing and xtfclip.optim.grad_centralization
    assert (xtfclip.data.transform.height, xtfclip.data.batch.k) == (288, 6)
    assert tiny.model.backbone == "tiny-cpu"
    with pytest.raises(ConfigError, match=r"preset .xtfclip. is not one of .* \(did you mean x-tfclip\?\)"):
        resolve_config({"preset": "xtfclip"})


def test_yaml_round_trip_and_file_errors(tmp_path: Path) -> None:
    config = resolve_config({"preset": "x-tfclip", "optim": {"lr": 2e-5}})
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    assert load_config(path) == config
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
