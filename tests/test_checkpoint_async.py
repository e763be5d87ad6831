"""Checkpoints written in the background while validation runs (trainers/checkpoint_writer.py, engine.fit),
and pretrained weights read memory-mapped (trainers/tfclip/backbone.py)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers import engine
from trainers.checkpoint_writer import CheckpointWriter, snapshot
from trainers.engine import CHECKPOINT_FILE, fit, load_checkpoint
from trainers.tfclip.backbone import _visual_state_dict
from trainers.tfclip.config import TrainerConfig, resolve_config


def _config(root: Path) -> TrainerConfig:
    return resolve_config(
        {
            "preset": "tiny-cpu",
            "data": {"root": str(root), "batch": {"p": 4, "k": 2}, "split": {"fraction": 0.3}},
            "runtime": {"eval_batch_size": 64},
        }
    )


def _writer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "agvp-checkpoint"]


def test_snapshot_is_a_cpu_copy_training_cannot_change() -> None:
    weight = torch.ones(3)
    state = {"model": {"w": weight}, "groups": [{"lr": 0.1, "m": (weight,)}], "step": 4}
    copy = snapshot(state)
    weight.add_(1.0)
    assert torch.equal(copy["model"]["w"], torch.ones(3)) and torch.equal(
        copy["groups"][0]["m"][0], torch.ones(3)
    )
    assert copy["groups"][0]["lr"] == 0.1 and copy["step"] == 4


def test_validation_changes_no_state_so_the_write_may_read_the_live_tensors(small_root: Path) -> None:
    # fit writes the live state dicts while evaluate_model runs (no copy): that is sound only while
    # validation leaves model, task (center-loss centers) and optimizer state exactly as they are.
    from trainers.data.pipeline import read_training_index, validation_split
    from trainers.data.split import validation_views
    from trainers.tfclip.memory import identity_memory
    from trainers.tfclip.optim import build_optimizer

    config = _config(small_root)
    index = read_training_index(config.data.root, config.data)
    split = validation_split(index, config.data)
    labels = {pid: n for n, pid in enumerate(sorted(split.train_pids))}
    memory, _ = identity_memory(config, index, split, labels, device=torch.device("cpu"))
    model = engine.build_model(config, len(labels), memory)
    task = engine.build_task(config, model, len(labels))
    optimizer = build_optimizer(model, config.optim, task=task)
    before = snapshot({"m": model.state_dict(), "t": task.state_dict(), "o": optimizer.state_dict()})
    engine.evaluate_model(model, config, index, validation_views(index, split), torch.device("cpu"))
    after = {"m": model.state_dict(), "t": task.state_dict(), "o": optimizer.state_dict()}
    for part in ("m", "t"):
        assert before[part].keys() == after[part].keys()
        assert all(torch.equal(before[part][k], after[part][k]) for k in before[part]), part
    assert before["o"]["param_groups"] == after["o"]["param_groups"]


def test_one_write_in_flight_and_its_error_surfaces_in_wait(tmp_path: Path) -> None:
    release = threading.Event()
    order: list[str] = []

    def slow(payload: dict[str, Any], path: Path) -> None:
        release.wait(5)
        order.append(payload["name"])
        if payload["name"] == "bad":
            raise OSError("No space left on device")
        torch.save(payload, path)

    writer = CheckpointWriter(slow)
    writer.submit(tmp_path / "a.pt", {"name": "first"})
    assert writer.busy and not (tmp_path / "a.pt").exists()
    release.set()
    writer.submit(tmp_path / "a.pt", {"name": "second"})  # waits for the first: never two at once
    assert order[0] == "first"
    writer.wait()
    assert order == ["first", "second"] and torch.load(tmp_path / "a.pt")["name"] == "second"
    writer.submit(tmp_path / "a.pt", {"name": "bad"})
    with pytest.raises(OSError, match="No space"):
        writer.wait()
    assert torch.load(tmp_path / "a.pt")["name"] == "second"  # atomic: the old file stays whole
    assert not list(tmp_path.glob(".a.pt.*"))  # no temporary left
    writer.submit(tmp_path / "a.pt", {"name": "bad"})
    writer.close(failing=True)  # another error is on its way: the write's is dropped, the thread joined
    assert not writer.busy


def test_the_write_overlaps_validation_and_is_complete_before_the_report(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    validating = threading.Event()
    overlapped: list[bool] = []
    original_save, original_evaluate = engine._save, engine.evaluate_model

    def save(payload: dict[str, Any], path: Path) -> None:
        # a synchronous write before validation would time out here; the background one sees it start
        overlapped.append(validating.wait(30))
        original_save(payload, path)

    def evaluate(*args: Any, **kwargs: Any) -> dict[str, float]:
        validating.set()
        try:
            return original_evaluate(*args, **kwargs)
        finally:
            validating.clear()

    seen: list[int] = []

    def report(result: dict[str, Any]) -> None:
        assert not _writer_threads()
        seen.append(int(load_checkpoint(result["checkpoint"])["epoch"]))

    monkeypatch.setattr(engine, "_save", save)
    monkeypatch.setattr(engine, "evaluate_model", evaluate)
    fit(_config(small_root), max_epochs=2, checkpoint_dir=tmp_path / "run", report=report)
    assert overlapped == [True, True]
    assert seen == [1, 2]  # each report's file holds that very epoch


def test_a_failed_write_surfaces_in_fit_and_the_run_resumes_from_the_last_good_file(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(small_root)
    straight = fit(config, max_epochs=3, checkpoint_dir=tmp_path / "straight")
    original_save = engine._save

    def full_disk(payload: dict[str, Any], path: Path) -> None:
        if payload["epoch"] == 2:
            raise OSError("No space left on device")
        original_save(payload, path)

    reports: list[dict[str, Any]] = []
    monkeypatch.setattr(engine, "_save", full_disk)
    with pytest.raises(OSError, match="No space"):
        fit(config, max_epochs=3, checkpoint_dir=tmp_path / "run", report=reports.append)
    assert [r["epoch"] for r in reports] == [1]  # epoch 2 is never reported without its file
    assert not _writer_threads()
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1
    monkeypatch.setattr(engine, "_save", original_save)
    resumed = fit(config, max_epochs=3, checkpoint_dir=tmp_path / "run", resume_from=tmp_path / "run")
    assert [r["epoch"] for r in resumed] == [2, 3]
    for key in ("train_loss", "val_map"):
        assert [r[key] for r in resumed] == [r[key] for r in straight[1:]], key


def test_a_validation_error_waits_for_the_write_in_flight(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original_save = engine._save

    def slow(payload: dict[str, Any], path: Path) -> None:
        threading.Event().wait(0.5)
        original_save(payload, path)

    def broken(*args: Any, **kwargs: Any) -> dict[str, float]:
        raise RuntimeError("validation broke")

    monkeypatch.setattr(engine, "_save", slow)
    monkeypatch.setattr(engine, "evaluate_model", broken)
    with pytest.raises(RuntimeError, match="validation broke"):
        fit(_config(small_root), max_epochs=2, checkpoint_dir=tmp_path / "run")
    assert not _writer_threads()  # fit waited for the write before raising
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["epoch"] == 1  # complete, resumable


def _mapped(path: Path) -> bool:
    return str(path.resolve()) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_weights_are_read_memory_mapped(tmp_path: Path) -> None:
    visual = {"visual.conv1.weight": torch.randn(8, 3, 4, 4), "visual.ln_pre.weight": torch.ones(8)}
    path = tmp_path / "open_clip.pt"
    torch.save({"state_dict": visual}, path)
    state = _visual_state_dict(path)
    assert _mapped(path)  # the tensors are the file's pages, shared with every trial on the node
    assert torch.equal(state["conv1.weight"], visual["visual.conv1.weight"])
    del state
    legacy = tmp_path / "legacy.pt"  # the pre-zip format cannot be mapped: it is read whole, as before
    torch.save(visual, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(_visual_state_dict(legacy)["ln_pre.weight"], torch.ones(8))
