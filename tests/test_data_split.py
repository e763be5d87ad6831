from __future__ import annotations

from pathlib import Path

import pytest

from trainers.data.index import read_dataset
from trainers.data.split import (
    ValidationSplit,
    check_split_matches,
    label_map,
    make_validation_split,
    protocol_views,
    training_tracklets,
    validation_views,
)
from trainers.errors import DataError


@pytest.fixture(scope="module")
def index(small_root: Path):  # type: ignore[no-untyped-def]
    return read_dataset(small_root)


def test_identity_disjoint_and_complete(index) -> None:  # type: ignore[no-untyped-def]
    split = make_validation_split(index, seed=3, fraction=0.3)
    assert set(split.train_pids).isdisjoint(split.val_pids)
    assert set(split.train_pids) | set(split.val_pids) == {t.pid for t in index.split("train")}
    assert len(split.val_pids) == 3  # round(0.3 * 10)
    assert {t.pid for t in training_tracklets(index, split)} == set(split.train_pids)


def test_pure_function_of_index_seed_fraction(index, small_root: Path) -> None:  # type: ignore[no-untyped-def]
    again = read_dataset(small_root)
    assert make_validation_split(index, seed=1, fraction=0.2) == make_validation_split(
        again, seed=1, fraction=0.2
    )
    seeds = {make_validation_split(index, seed=s, fraction=0.2).val_pids for s in range(8)}
    assert len(seeds) > 1


def test_views_are_cross_platform(index) -> None:  # type: ignore[no-untyped-def]
    split = make_validation_split(index, seed=0, fraction=0.3)
    views = validation_views(index, split)
    assert all(t.is_aerial for t in views["a2g"].query)
    assert not any(t.is_aerial for t in views["a2g"].gallery)
    assert views["g2a"].query == views["a2g"].gallery
    assert views["g2a"].gallery == views["a2g"].query
    assert {t.pid for t in views["a2g"].query} == set(split.val_pids)  # every val id has both platforms


def test_protocol_views_follow_the_cases(index) -> None:  # type: ignore[no-untyped-def]
    views = protocol_views(index)
    assert [v.name for v in views.values()] == ["a2g", "g2a"]
    assert views["a2g"].query == index.split("case1_query")
    assert views["g2a"].gallery == index.split("case2_gallery")


def test_save_load_round_trip_and_fingerprint_check(index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    split = make_validation_split(index, seed=5, fraction=0.2)
    split.save(tmp_path / "split.json")
    loaded = ValidationSplit.load(tmp_path / "split.json")
    assert loaded == split
    check_split_matches(index, loaded)
    other = ValidationSplit(**{**loaded.__dict__, "index_fingerprint": "0" * 16})
    with pytest.raises(DataError, match="was made for dataset 0000"):
        check_split_matches(index, other)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a validation split file"):
        ValidationSplit.load(tmp_path / "bad.json")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_must_be_open_unit_interval(index, fraction: float) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="fraction"):
        make_validation_split(index, fraction=fraction)


def test_too_large_fraction_is_a_clear_error(index) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="validation needs"):
        make_validation_split(index, fraction=0.99)


def test_label_map_is_contiguous(index) -> None:  # type: ignore[no-untyped-def]
    labels = label_map(index.split("train"))
    assert sorted(labels.values()) == list(range(len(labels)))
    assert list(labels) == sorted(labels)
