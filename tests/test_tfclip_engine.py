"""The training engine on a small synthetic dataset: exact resume, NaN handling, the memory cache, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from hpo.cli import app
from trainers import engine
from trainers.data.index import read_dataset
from trainers.data.pipeline import validation_split
from trainers.engine import CHECKPOINT_FILE, CheckpointError, NonFiniteLossError, fit, load_checkpoint
from trainers.tfclip import memory as memory_module
from trainers.tfclip.config import TrainerConfig, resolve_config
from trainers.tfclip.losses import ReIDTask
from trainers.tfclip.memory import identity_memory, memory_key

runner = CliRunner()


def _config(root: Path, **overrides: Any) -> TrainerConfig:
    return resolve_config(
        {
            "preset": "tiny-cpu",
            "data": {"root": str(root), "batch": {"p": 4, "k": 2}, "split": {"fraction": 0.3}},
            "runtime": {"eval_batch_size": 64},
        },
        overrides=overrides,
    )


def test_result_rows_and_files(small_root: Path, tmp_path: Path) -> None:
    reports: list[dict[str, Any]] = []
    results = fit(_config(small_root), max_epochs=2, checkpoint_dir=tmp_path / "run", report=reports.append)
    assert results == reports
    assert [r["epoch"] for r in results] == [1, 2]
    for result in results:
        assert result["val_map"] == pytest.approx((result["val_a2g_map"] + result["val_g2a_map"]) / 2)
        assert 0.0 <= result["val_r1"] <= 1.0 and result["train_loss"] > 0
        assert result["checkpoint"] == str(tmp_path / "run" / CHECKPOINT_FILE)
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"checkpoint.pt", "split.json", "config.yaml"}
    assert load_checkpoint(tmp_path / "run")["epoch"] == 2


def test_resume_is_exact(small_root: Path, tmp_path: Path) -> None:
    # online label smoothing and dropout make the resumed state non-trivial
    config = _config(small_root, **{"loss.online_label_smoothing": True, "model.ssp_dropout": 0.2})
    straight = fit(config, max_epochs=3, checkpoint_dir=tmp_path / "straight")
    fit(config, max_epochs=2, checkpoint_dir=tmp_path / "split")
    resumed = fit(config, max_epochs=3, checkpoint_dir=tmp_path / "split", resume_from=tmp_path / "split")
    assert [r["epoch"] for r in resumed] == [3]
    for key in ("train_loss", "val_map", "val_a2g_map", "val_g2a_r1"):
        assert resumed[0][key] == straight[-1][key], key
    a = load_checkpoint(tmp_path / "straight")["model"]
    b = load_checkpoint(tmp_path / "split")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_another_configuration(small_root: Path, tmp_path: Path) -> None:
    fit(_config(small_root), max_epochs=1, checkpoint_dir=tmp_path / "run")
    with pytest.raises(CheckpointError, match="different configuration"):
        fit(_config(small_root, **{"optim.lr": 0.5}), max_epochs=2, resume_from=tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not exist"):
        fit(_config(small_root), max_epochs=2, resume_from=tmp_path / "nowhere")


def test_training_on_the_cache_gives_the_jpeg_paths_results(small_root: Path, tmp_path: Path) -> None:
    """Whole epochs of `fit` (training through the in-process CacheLoader, validation from the cache) end
    with exactly the losses and metrics of the JPEG path, with or without a worker: no loader draws from
    torch's global generator, which the training's own randomness uses."""

    def run(cache: bool, workers: int = 0) -> list[dict[str, Any]]:
        overrides = {
            "data.frame_cache": cache,
            "data.workers": workers,
            "runtime.cache_dir": str(tmp_path / "cache"),
        }
        return fit(_config(small_root, **overrides), max_epochs=2)

    plain = run(False)
    assert not list((tmp_path / "cache").rglob("frames.npy"))
    for other in (run(True), run(False, workers=1)):
        for a, b in zip(plain, other, strict=True):
            for key in ("train_loss", "val_map", "val_r1"):
                assert a[key] == b[key], key
    assert list((tmp_path / "cache").rglob("frames.npy"))  # the cache was built and used


def test_resume_crosses_the_frame_source_and_worker_count(small_root: Path, tmp_path: Path) -> None:
    """A checkpoint written from the JPEGs resumes from the frame cache with a worker, and continues
    exactly as the uninterrupted run does (the two settings change how frames are read, nothing else)."""
    jpeg = _config(small_root, **{"data.frame_cache": False, "runtime.cache_dir": str(tmp_path / "cache")})
    other = _config(
        small_root,
        **{"data.frame_cache": True, "data.workers": 1, "runtime.cache_dir": str(tmp_path / "cache")},
    )
    straight = fit(jpeg, max_epochs=2)
    fit(jpeg, max_epochs=1, checkpoint_dir=tmp_path / "run")
    resumed = fit(other, max_epochs=2, checkpoint_dir=tmp_path / "run", resume_from=tmp_path / "run")
    assert [r["epoch"] for r in resumed] == [2]
    for key in ("train_loss", "val_map"):
        assert resumed[0][key] == straight[-1][key], key


def test_non_finite_loss_stops_without_a_checkpoint(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ReIDTask.forward
    calls = {"n": 0}

    def poisoned(
        self: ReIDTask, outputs: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        terms = original(self, outputs, labels)
        calls["n"] += 1
        if calls["n"] == 2:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(ReIDTask, "forward", poisoned)
    with pytest.raises(NonFiniteLossError) as caught:
        fit(_config(small_root), max_epochs=2, checkpoint_dir=tmp_path / "run")
    assert (caught.value.epoch, caught.value.step) == (1, 1)
    assert not (tmp_path / "run" / CHECKPOINT_FILE).exists()


def test_memory_cache_is_content_keyed(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(small_root, **{"runtime.cache_dir": str(tmp_path / "cache")})
    index = read_dataset(small_root, splits=["train"])
    split = validation_split(index, config.data)
    base = memory_key(config, index, split)
    changes = {
        "runtime.seed": 1,
        "model.backbone": "ViT-B-16",
        "model.stride": 6,
        "data.transform.height": 48,
        "data.transform.mean": [0.5, 0.5, 0.5],
        "data.sampling.seq_len": 3,
        "model.quick_gelu": False,
    }
    keys = {
        name: memory_key(_config(small_root, **{name: value}), index, split)
        for name, value in changes.items()
    }
    keys["split"] = memory_key(
        config, index, validation_split(index, _config(small_root, **{"data.split.seed": 9}).data)
    )
    with monkeypatch.context() as patch:
        patch.setattr(memory_module, "MEMORY_CODE_VERSION", memory_module.MEMORY_CODE_VERSION + 1)
        keys["code"] = memory_key(config, index, split)
    assert base not in keys.values()
    assert len(set(keys.values())) == len(keys)  # every input gives its own entry
    assert memory_key(_config(small_root, **{"optim.lr": 0.1}), index, split) == base  # training-only setting
    # the memory always uses dense clips (TF-CLIP's stage-1 loader), whatever the test sampling mode
    assert memory_key(_config(small_root, **{"data.sampling.test_mode": "dense"}), index, split) == base

    labels = {pid: label for label, pid in enumerate(sorted(split.train_pids))}
    memory, key = identity_memory(config, index, split, labels, device=torch.device("cpu"))
    assert key == base and memory.shape == (len(labels), 64)
    assert (tmp_path / "cache" / "clip_memory" / f"{key}.pt").is_file()

    def no_encoder(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached memory should have been used")

    monkeypatch.setattr(memory_module, "TokenEncoder", no_encoder)
    again, _ = identity_memory(config, index, split, labels, device=torch.device("cpu"))
    assert torch.equal(again, memory)


def test_runtime_settings_act(small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The validation of this tiny split ranks too coarsely to show flip TTA in mAP; the flag must reach the
    # feature extraction (whose flip averaging tests/test_eval_distance_rerank.py checks).
    flips: list[bool] = []
    extract = engine.extract_features

    def spy(*args: Any, **kwargs: Any) -> Any:
        flips.append(kwargs["flip"])
        return extract(*args, **kwargs)

    monkeypatch.setattr(engine, "extract_features", spy)
    one = fit(_config(small_root, **{"runtime.eval_flip": True, "runtime.threads": 1}), max_epochs=1)
    two = fit(_config(small_root), max_epochs=1)
    assert flips == [True, False]
    assert one[0]["train_loss"] == two[0]["train_loss"]  # flip TTA only changes validation features
    masks: list[dict[str, float]] = []
    views = engine.evaluate_views

    def spy_views(*args: Any, **kwargs: Any) -> Any:
        masks.append(dict(args[3].mask_penalties))
        return views(*args, **kwargs)

    monkeypatch.setattr(engine, "evaluate_views", spy_views)
    masked = fit(_config(small_root, **{"runtime.eval_mask": {"gender": 100.0}}), max_epochs=1)
    assert masks == [{"gender": 100.0}]
    assert masked[0]["train_loss"] == two[0]["train_loss"]
    seeded = fit(_config(small_root, **{"runtime.seed": 5}), max_epochs=1)
    assert seeded[0]["train_loss"] != two[0]["train_loss"]
    with pytest.raises(ValueError, match="max_epochs is 0"):
        fit(_config(small_root), max_epochs=0)


def _write_config(path: Path, root: Path) -> Path:
    path.write_text(
        f"preset: tiny-cpu\ndata:\n  root: {root}\n  batch: {{p: 4, k: 2}}\n  split: {{fraction: 0.3}}\n"
    )
    return path


def test_cli_train_resume_and_evaluate(small_root: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "tiny.yaml", small_root)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "val mAP" in result.output
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert (out / "config.yaml").is_file() and (out / "checkpoint.pt").is_file()

    again = runner.invoke(app, ["train", str(config), "--epochs", "2", "--out", str(out)])
    assert again.exit_code == 2 and "already holds a run" in again.output

    resumed = runner.invoke(
        app, ["train", str(out / "config.yaml"), "--epochs", "3", "--out", str(out), "--resume", str(out)]
    )
    assert resumed.exit_code == 0, resumed.output
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
    ]

    report = tmp_path / "report.json"
    evaluated = runner.invoke(
        app, ["evaluate", str(out), "--data", str(small_root), "--json-out", str(report)]
    )
    assert evaluated.exit_code == 0, evaluated.output
    payload = json.loads(report.read_text())
    assert payload["model"]["checkpoint"] == str(out) and payload["overall"] is not None
    assert payload["options"]["flip"] is False and payload["options"]["mask"] == {}


def test_cli_evaluate_defaults_to_the_models_flip_and_masking(small_root: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "tiny.yaml", small_root)
    out = tmp_path / "run"
    settings = ["--set", "runtime.eval_flip=true", "--set", "runtime.eval_mask={gender: 0.2, age: 0.1}"]
    trained = runner.invoke(app, ["train", str(config), "--epochs", "1", "--out", str(out), *settings])
    assert trained.exit_code == 0, trained.output
    report = tmp_path / "report.json"
    base = ["evaluate", str(out), "--data", str(small_root), "--json-out", str(report)]
    assert runner.invoke(app, base).exit_code == 0
    assert json.loads(report.read_text())["options"] == {
        "sampling": "chunk-first",
        "flip": True,
        "rerank": False,
        "mask": {"gender": 0.2, "age": 0.1},
    }
    assert runner.invoke(app, [*base, "--no-flip", "--mask", "none"]).exit_code == 0
    options = json.loads(report.read_text())["options"]
    assert options["flip"] is False and options["mask"] == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "optim.lrr=0.1"], "did you mean optim.lr?"),
        (["--set", "optim.lr"], "must look like section.key=value"),
        (["--epochs", "0"], "--epochs is 0"),
        (["--resume", "/nowhere"], "checkpoint does not exist"),
    ],
)
def test_cli_train_bad_inputs(small_root: Path, tmp_path: Path, args: list[str], message: str) -> None:
    config = _write_config(tmp_path / "tiny.yaml", small_root)
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_train_missing_config(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.output
