"""The Parquet results store: atomic parts, exactly-once reads through compaction, metadata, export."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from hpo import store as store_module
from hpo.store import ResultStore, StoreError, flatten_row
from trainers.atomic import atomic_write_bytes


def _rows(trial: int, epochs: int, start: int = 1) -> list[dict[str, object]]:
    return [
        {
            "study": "s",
            "trial_id": trial,
            "config": {"optim.lr": 0.001 * (trial + 1), "model.neck": "bn"},
            "resource": epoch,
            "value": epoch / 10 + trial,
            "status": "running",
        }
        for epoch in range(start, start + epochs)
    ]


def test_append_read_round_trip_with_param_columns(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "study")
    assert store.read().empty
    store.append(_rows(0, 3))
    store.append(_rows(1, 2))
    assert store.append([]) is None
    frame = store.read()
    assert len(frame) == 5
    assert list(frame["trial_id"]) == [0, 0, 0, 1, 1]  # append order
    assert list(frame["param_optim.lr"]) == [0.001] * 3 + [0.002] * 2
    assert json.loads(frame["config"][0]) == {"model.neck": "bn", "optim.lr": 0.001}
    assert sorted(p.name for p in (tmp_path / "study" / "results").iterdir()) == [
        "part-00000000.parquet",
        "part-00000001.parquet",
    ]


def test_new_metric_columns_may_appear_later(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.append(_rows(0, 1))
    store.append([{**_rows(1, 1)[0], "val_a2g_map": 0.4}])
    frame = store.read()
    assert frame["val_a2g_map"].isna().tolist() == [True, False]


def test_compaction_keeps_every_row_exactly_once(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    for trial in range(5):
        store.append(_rows(trial, 2))
    before = store.read()
    target = store.compact()
    assert target is not None and target.name == "compacted-00000004.parquet"
    assert [p.name for p in store.files()] == ["compacted-00000004.parquet"]
    pd.testing.assert_frame_equal(store.read(), before)
    store.append(_rows(9, 1))
    assert len(store.read()) == 11
    assert store.compact() is not None
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["compacted-00000005.parquet"]
    assert len(store.read()) == 11
    assert store.compact() is None  # nothing new


def test_reader_ignores_parts_already_compacted_and_stray_temp_files(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    for trial in range(3):
        store.append(_rows(trial, 1))
    # the moment after a compaction wrote its file but before it deleted the parts it covers
    frame = store.read()
    frame.to_parquet(tmp_path / "results" / "compacted-00000002.parquet", index=False)
    (tmp_path / "results" / ".part-00000003.parquet.123.tmp").write_bytes(b"torn")
    assert len(store.read()) == 3
    store.append(_rows(7, 1))
    assert len(store.read()) == 4


def test_killed_compaction_never_duplicates_and_converges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ResultStore(tmp_path)
    for trial in range(4):
        store.append(_rows(trial, 2))

    def killed(point: str) -> None:
        if point == "compaction":
            raise SystemExit("killed inside the compaction")

    monkeypatch.setattr(store_module, "fault_point", killed)
    with pytest.raises(SystemExit):
        store.compact()
    # the merged version exists but the link was not swapped: every reader still sees each row once
    assert len(pd.read_parquet(tmp_path / "results")) == len(store.read()) == 8
    store.append(_rows(9, 1))
    monkeypatch.setattr(store_module, "fault_point", lambda point: None)
    assert store.compact() is not None
    assert len(pd.read_parquet(tmp_path / "results")) == len(store.read()) == 9
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["compacted-00000004.parquet"]
    versions = sorted(p.name for p in (tmp_path / ".store").iterdir())
    assert versions == ["v00000000", "v00000001"]  # the unlinked leftover is gone, the previous kept


def test_numbered_appends_are_idempotent_and_gaps_are_visible(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    assert store.append(_rows(0, 1), number=0) is not None
    assert store.append(_rows(0, 1), number=0) is None  # already stored
    store.append(_rows(1, 1), number=1)
    store.append(_rows(2, 1), number=2)
    store.compact()
    assert store.covers(2) and not store.covers(3)
    assert store.append(_rows(1, 1), number=1) is None  # inside the compacted file
    store.append(_rows(3, 1), number=3)
    store.append(_rows(4, 1), number=4)
    (store.results_dir / "part-00000003.parquet").unlink()
    assert store.missing_numbers() == [3]
    assert store.missing_numbers(expected_last=5) == [3, 5]
    assert len(store.read()) == 4


def test_legacy_plain_results_folder_is_migrated_by_the_first_write(tmp_path: Path) -> None:
    legacy = tmp_path / "results"
    legacy.mkdir()
    first = pd.DataFrame([flatten_row(r) for r in _rows(0, 2)])
    first.to_parquet(legacy / "part-00000000.parquet", index=False)
    first.to_parquet(legacy / "compacted-00000000.parquet", index=False)  # an old interrupted compaction
    store = ResultStore(tmp_path)
    assert len(store.read()) == 2 and len(pd.read_parquet(legacy)) == 4
    store.compact()
    assert (tmp_path / "results").is_symlink()
    assert len(pd.read_parquet(tmp_path / "results")) == len(store.read()) == 2


def _append_many(path: str, start: int) -> None:
    store = ResultStore(path)
    for trial in range(start, start + 20):
        store.append(_rows(trial, 2))
        if trial % 7 == 0:
            store.compact()


def test_concurrent_reader_never_sees_a_torn_or_duplicated_state(tmp_path: Path) -> None:
    writer = multiprocessing.get_context("spawn").Process(target=_append_many, args=(str(tmp_path), 0))
    writer.start()
    store = ResultStore(tmp_path)
    seen = 0

    def check() -> int:
        frame = store.read()
        keys = list(zip(frame.get("trial_id", []), frame.get("resource", []), strict=True))
        assert len(keys) == len(set(keys))  # no row twice
        assert len(keys) % 2 == 0  # parts are all-or-nothing (2 rows each)
        assert len(keys) >= seen  # rows never disappear
        return len(keys)

    def check_plain() -> None:
        # what a user gets from plain pandas on the folder: never a duplicate, never a torn file
        try:
            frame = pd.read_parquet(tmp_path / "results")
        except (FileNotFoundError, OSError):
            return  # not created yet, or a version two compactions old vanished under a slow reader
        if frame.empty:
            return
        keys = list(zip(frame["trial_id"], frame["resource"], strict=True))
        assert len(keys) == len(set(keys)) and len(keys) % 2 == 0

    while writer.is_alive():
        seen = check()
        check_plain()
    writer.join(timeout=60)
    assert writer.exitcode == 0
    assert check() == 40
    assert len(store.read()) == 40


def test_metadata_and_export(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "study")
    with pytest.raises(StoreError, match="not a study folder"):
        store.read_metadata()
    store.write_metadata({"name": "study", "status": "running"})
    assert store.update_metadata(status="finished")["status"] == "finished"
    assert store.read_metadata() == {"name": "study", "status": "finished"}
    with pytest.raises(StoreError, match="no results to export"):
        store.export(tmp_path / "out.parquet")
    store.append(_rows(0, 2))
    store.append(_rows(1, 2))
    exported = store.export(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(exported), store.read())
    (tmp_path / "study" / "study.json").write_text("{broken")
    with pytest.raises(StoreError, match="unreadable study metadata"):
        store.read_metadata()


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("trainers.atomic.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_flatten_row_accepts_json_configs() -> None:
    row = flatten_row({"config": '{"b": 2, "a": 1}', "value": 1.0})
    assert row["config"] == '{"a":1,"b":2}'
    assert (row["param_a"], row["param_b"]) == (1, 2)


def test_a_study_folder_copied_without_links_keeps_working(tmp_path: Path) -> None:
    import shutil

    store = ResultStore(tmp_path / "a")
    store.append(_rows(0, 2))
    store.append(_rows(1, 1))
    store.compact()
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=False)  # results/ becomes a plain folder
    copy = ResultStore(tmp_path / "b")
    assert len(copy.read()) == 3
    copy.append(_rows(2, 1))
    assert (tmp_path / "b" / "results").is_symlink()
    assert len(pd.read_parquet(tmp_path / "b" / "results")) == len(copy.read()) == 4
