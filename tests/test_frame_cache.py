"""The shared frame cache (trainers/data/frame_cache.py): identical tensors, built once, keyed by content,
atomic, and its CLI."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hpo.cli import app
from trainers.data import frame_cache as fc
from trainers.data.config import DataConfig, TransformConfig
from trainers.data.index import DatasetIndex, read_dataset
from trainers.data.pipeline import eval_dataset, train_loader, validation_split
from trainers.data.sampling import SamplingMode
from trainers.errors import DataError

runner = CliRunner()
BASE: dict[str, Any] = {
    "transform": {"height": 32, "width": 16},
    "sampling": {"seq_len": 4},
    "batch": {"p": 2, "k": 2},
    "split": {"seed": 0, "fraction": 0.3},
}


@pytest.fixture(scope="module")
def index(small_root: Path) -> DatasetIndex:
    return read_dataset(small_root, splits=["train"])


def _config(cache: bool, **transform: Any) -> DataConfig:
    return DataConfig(**{**BASE, "transform": {**BASE["transform"], **transform}, "frame_cache": cache})


def _entries(root: Path) -> list[Path]:
    base = root / "frames"
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def _two_epochs(index: DatasetIndex, config: DataConfig, cache_dir: Path) -> list[dict[str, Any]]:
    loader, dataset, sampler = train_loader(
        index, validation_split(index, config), config, seed=3, cache_dir=cache_dir
    )
    assert (dataset.frame_cache is not None) == config.frame_cache
    batches = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        batches.append(next(iter(loader)))
    return batches


def test_training_batches_are_identical_with_the_cache_and_persistent_workers(
    index: DatasetIndex, tmp_path: Path
) -> None:
    reference = _two_epochs(index, _config(False), tmp_path)
    assert not torch.equal(reference[0]["clip"], reference[1]["clip"])  # the epochs differ
    for workers in (0, 1):  # a persistent worker keeps its dataset copy: the batches carry the epoch
        config = _config(True).model_copy(update={"workers": workers})
        for plain, cached in zip(reference, _two_epochs(index, config, tmp_path), strict=True):
            assert plain["clip"].dtype == torch.uint8  # normalised on the device (to_model_input)
            assert torch.equal(plain["clip"], cached["clip"])
            assert torch.equal(plain["erase"], cached["erase"])  # the same erasing decisions too
            assert plain["label"].tolist() == cached["label"].tolist()
    assert len(_entries(tmp_path)) == 1


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_eval_clips_are_identical_with_the_cache(
    index: DatasetIndex, tmp_path: Path, interpolation: str
) -> None:
    tracklets = list(index.tracklets[:6])
    for mode in (SamplingMode.CHUNK_FIRST, SamplingMode.DENSE):
        plain = eval_dataset(index, tracklets, _config(False, interpolation=interpolation), mode=mode)
        cached = eval_dataset(
            index, tracklets, _config(True, interpolation=interpolation), mode=mode, cache_dir=tmp_path
        )
        assert cached.frame_cache is not None
        for i in range(len(tracklets)):
            assert torch.equal(plain[i]["clip"], cached[i]["clip"])


def test_cached_frames_are_the_resized_jpegs(index: DatasetIndex, tmp_path: Path) -> None:
    entry = fc.ensure_frame_cache(index, TransformConfig(height=32, width=16), tmp_path)
    tracklet = index.tracklets[0]
    frames = entry.lookup(tracklet)
    assert frames is not None and frames.shape == (len(tracklet.frames), 32, 16, 3)
    assert frames.dtype == np.uint8 and not frames.flags.writeable
    assert frames.std() > 0  # real pixels, not the zero-filled array
    assert entry.lookup(tracklet.__class__(**{**tracklet.__dict__, "name": "absent"})) is None


def test_the_key_changes_with_size_interpolation_and_dataset(
    index: DatasetIndex, small_root: Path, tmp_path: Path
) -> None:
    key = fc.frame_cache_key(index, 32, 16, "bilinear")
    assert fc.frame_cache_key(index, 32, 16, "bilinear") == key
    assert fc.frame_cache_key(index, 48, 16, "bilinear") != key
    assert fc.frame_cache_key(index, 32, 24, "bilinear") != key
    assert fc.frame_cache_key(index, 32, 16, "bicubic") != key
    other = read_dataset(small_root, splits=["train", "case1_query"])
    assert fc.frame_cache_key(other, 32, 16, "bilinear") != key
    fewer = DatasetIndex(root=index.root, tracklets=index.tracklets[1:])
    assert fc.frame_cache_key(fewer, 32, 16, "bilinear") != key
    moved = DatasetIndex(root=tmp_path, tracklets=index.tracklets)  # same shape, other pixels
    assert fc.frame_cache_key(moved, 32, 16, "bilinear") != key
    fc.ensure_frame_cache(index, TransformConfig(height=32, width=16), tmp_path)
    fc.ensure_frame_cache(index, TransformConfig(height=32, width=16, interpolation="nearest"), tmp_path)
    assert len(_entries(tmp_path)) == 2


def _race(root: str, cache: str, counter: str, start: Any) -> None:
    built = fc.build_entry

    def counting(*args: Any, **kwargs: Any) -> None:
        with open(counter, "a") as handle:
            handle.write("built\n")
        built(*args, **kwargs)

    fc.build_entry = counting  # type: ignore[assignment]
    index = read_dataset(root, splits=["train"])
    start.wait()
    entry = fc.ensure_frame_cache(index, TransformConfig(height=32, width=16), cache, threads=1)
    assert entry.lookup(index.tracklets[-1]) is not None


def test_concurrent_builders_build_once(small_root: Path, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # fresh processes: no shared in-process state
    start = context.Event()
    counter = tmp_path / "builds.txt"
    args = (str(small_root), str(tmp_path / "cache"), str(counter), start)
    workers = [context.Process(target=_race, args=args) for _ in range(3)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert counter.read_text().splitlines() == ["built"]
    assert len(_entries(tmp_path / "cache")) == 1


def test_an_interrupted_build_leaves_no_usable_entry(
    index: DatasetIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = fc._decode_tracklet

    def failing(*args: Any) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(fc, "_decode_tracklet", failing)
    transform = TransformConfig(height=32, width=16)
    with pytest.raises(KeyboardInterrupt):
        fc.ensure_frame_cache(index, transform, tmp_path, threads=1)
    assert _entries(tmp_path) == []
    assert not [p for p in (tmp_path / "frames").iterdir() if p.is_dir()]  # no staging leftover
    assert fc.list_entries(tmp_path) == []
    monkeypatch.setattr(fc, "_decode_tracklet", original)
    entry = fc.ensure_frame_cache(index, transform, tmp_path, threads=1)
    assert entry.lookup(index.tracklets[-1]) is not None


def test_a_damaged_entry_is_a_one_line_error(index: DatasetIndex, tmp_path: Path) -> None:
    entry = fc.ensure_frame_cache(index, TransformConfig(height=32, width=16), tmp_path)
    meta = json.loads((entry.folder / fc.INDEX_FILE).read_text())
    (entry.folder / fc.INDEX_FILE).write_text(json.dumps({**meta, "frames": meta["frames"] + 1}))
    with pytest.raises(DataError, match=r"frames\.npy: frame cache array has shape") as error:
        fc.FrameCache.open(entry.folder)
    assert "\n" not in str(error.value)
    (entry.folder / fc.INDEX_FILE).write_text("{")
    with pytest.raises(DataError, match=r"index\.json: frame cache index is unreadable"):
        fc.FrameCache.open(entry.folder)


def test_a_cache_of_another_size_is_refused(index: DatasetIndex, tmp_path: Path) -> None:
    from trainers.data.transforms import ClipTransform
    from trainers.data.video_dataset import TrackletDataset

    entry = fc.ensure_frame_cache(index, TransformConfig(height=32, width=16), tmp_path)
    transform = ClipTransform(TransformConfig(height=48, width=16), train=False)
    with pytest.raises(ValueError, match="holds 32x16 bilinear frames, but the transform needs 48x16"):
        TrackletDataset(index.root, index.tracklets, seq_len=2, mode="chunk-first", transform=transform,
                        frame_cache=entry)  # fmt: skip


def test_cli_build_info_clear(small_root: Path, tmp_path: Path) -> None:
    cache = ["--cache-dir", str(tmp_path)]
    result = runner.invoke(app, ["data", "cache", "info", *cache])
    assert result.exit_code == 0 and "no frame cache entries" in result.output
    result = runner.invoke(app, ["data", "cache", "build", str(small_root), "--size", "32x16", *cache])
    assert result.exit_code == 0, result.output
    assert "frames 32x16 bilinear" in result.output
    index = read_dataset(small_root, splits=["train"])
    key = fc.frame_cache_key(index, 32, 16, "bilinear")
    assert [p.name for p in _entries(tmp_path)] == [key]
    result = runner.invoke(app, ["data", "cache", "info", *cache])
    assert result.exit_code == 0 and key in result.output.replace("\n", "")
    result = runner.invoke(app, ["data", "cache", "clear", "nope", *cache])
    assert result.exit_code == 2 and "frame cache has no entry 'nope'" in result.output
    result = runner.invoke(app, ["data", "cache", "clear", *cache])
    assert result.exit_code == 0 and "removed 1 frame cache entry" in result.output
    assert _entries(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "32by16"], "size is '32by16', but must look like 256x128"),
        (["--interpolation", "lanczos"], "--interpolation is 'lanczos', but must be one of"),
        (["--split", "nope"], "nope"),
    ],
)
def test_cli_build_errors_are_one_line(
    small_root: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(
        app, ["data", "cache", "build", str(small_root), *args, "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_build_of_a_missing_dataset_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["data", "cache", "build", str(missing), "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "nowhere" in result.output and "does not exist" in result.output


def test_synth_scale_option() -> None:
    from hpo.cli.data import SYNTH_SCALES

    ids, (low, high) = SYNTH_SCALES["agvp"]
    assert ids == 689 and 5_000 < ids * 2 * (low + high) / 2 < 5_700  # AG-VPReID: 689 ids, 5,317 tracklets
    result = runner.invoke(app, ["data", "synth", "unused", "--scale", "huge"])
    assert result.exit_code == 2 and "--scale is 'huge', but must be one of demo, agvp" in result.output


def test_a_full_disk_is_refused_before_building(
    index: DatasetIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fc.shutil, "disk_usage", lambda path: SimpleNamespace(free=1))
    with pytest.raises(DataError, match=r"frame cache needs .* GiB for \d+ frames but the disk has 0\.0 GiB"):
        fc.ensure_frame_cache(index, TransformConfig(height=32, width=16), tmp_path)
    assert _entries(tmp_path) == []


def test_auto_is_the_default_and_builds_when_the_entry_fits(index: DatasetIndex, tmp_path: Path) -> None:
    assert DataConfig().frame_cache == "auto"
    entry = fc.auto_frame_cache(index, TransformConfig(height=32, width=16), tmp_path)
    assert entry is not None and [e.key for e in fc.list_entries(tmp_path)] == [entry.folder.name]


def test_auto_decodes_the_jpegs_when_the_entry_would_not_fit(
    index: DatasetIndex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    transform = TransformConfig(height=32, width=16)
    needed = fc.entry_bytes(fc.cached_tracklets(index), transform)
    # free space just under four times the entry: more than a quarter of it
    monkeypatch.setattr(fc.shutil, "disk_usage", lambda path: SimpleNamespace(free=4 * needed - 1))
    with caplog.at_level("WARNING", logger=fc.__name__):
        assert fc.auto_frame_cache(index, transform, tmp_path / "new" / "root") is None
        assert fc.auto_frame_cache(index, transform, tmp_path / "new" / "root") is None
    warnings = [r.getMessage() for r in caplog.records if r.name == fc.__name__]
    assert len(warnings) == 1 and "decoding the JPEGs instead" in warnings[0], warnings
    assert not (tmp_path / "new").exists()  # nothing written
    monkeypatch.setattr(fc.shutil, "disk_usage", lambda path: SimpleNamespace(free=4 * needed))
    assert fc.auto_frame_cache(index, transform, tmp_path / "new" / "root") is not None


def test_auto_uses_an_entry_that_exists_whatever_the_free_space(
    index: DatasetIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transform = TransformConfig(height=32, width=16)
    built = fc.ensure_frame_cache(index, transform, tmp_path)
    monkeypatch.setattr(fc.shutil, "disk_usage", lambda path: SimpleNamespace(free=1))
    entry = fc.auto_frame_cache(index, transform, tmp_path)
    assert entry is not None and entry.folder == built.folder


def test_a_disk_that_fills_up_mid_build_is_a_one_line_error(
    index: DatasetIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes, not stores into a memory map: a full disk or quota is an OSError (a map would SIGBUS), and
    it leaves no entry and no staging folder."""
    import errno

    real_open = Path.open

    class Filling:
        def __init__(self, handle: Any) -> None:
            self.handle, self.written = handle, 0

        def __enter__(self) -> Filling:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: Any) -> int:
            self.written += 1
            if self.written > 3:
                raise OSError(errno.EDQUOT, "Disk quota exceeded")
            return self.handle.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

    def opening(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(path, mode, *args, **kwargs)
        return Filling(handle) if path.name == fc.FRAMES_FILE and "w" in mode else handle

    monkeypatch.setattr(Path, "open", opening)
    with pytest.raises(DataError, match=r"frame cache build failed: Disk quota exceeded \(set runtime"):
        fc.ensure_frame_cache(index, TransformConfig(height=32, width=16), tmp_path)
    assert _entries(tmp_path) == []
    assert not [p for p in (tmp_path / "frames").iterdir() if p.is_dir()]
