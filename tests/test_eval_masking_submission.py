"""Soft-biometric masking and the challenge submission file."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from trainers.evaluation import submission
from trainers.evaluation.masking import DEFAULT_MASK_ATTRIBUTES, apply_attribute_penalty, known_code_mask
from trainers.evaluation.submission import SUBMISSION_HEADER, SubmissionCase, rank_gallery, write_submission

# The tests bring their own table (the data layer owns the real one); the last code means unknown.
UNKNOWN = {"gender": 2, "age": 8, "ethnicity": 4, "body_volume": 3, "height": 4}

# ---------------------------------------------------------------------------------------------- masking


def test_default_attributes() -> None:
    assert DEFAULT_MASK_ATTRIBUTES == ("gender", "age", "ethnicity", "body_volume")


def test_known_code_mask_treats_out_of_table_codes_as_unknown() -> None:
    # gender: 0 male, 1 female, 2 unknown; 3 (found in the real files) and -1 are unknown too.
    np.testing.assert_array_equal(known_code_mask(np.array([0, 1, 2, 3, -1]), 2), [1, 1, 0, 0, 0])


def test_penalty_only_where_both_known_and_different() -> None:
    dist = np.zeros((3, 5), dtype=np.float32)
    query = {"gender": np.array([0, 1, 2])}  # male, female, unknown
    gallery = {"gender": np.array([0, 1, 2, 3, -1])}  # male, female, unknown, out of range, negative
    out = apply_attribute_penalty(dist, query, gallery, penalties={"gender": 0.2}, unknown_codes=UNKNOWN)
    expected = np.array(
        [
            [0.0, 0.2, 0.0, 0.0, 0.0],  # male query: only the female gallery item is penalised
            [0.2, 0.0, 0.0, 0.0, 0.0],  # female query: only the male one
            [0.0, 0.0, 0.0, 0.0, 0.0],  # unknown query: never
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(dist, 0.0)  # the input is left alone


def test_penalties_add_up_and_only_listed_attributes_count() -> None:
    dist = np.full((1, 2), 0.5)
    query = {"gender": np.array([0]), "age": np.array([3]), "height": np.array([1])}
    gallery = {"gender": np.array([1, 0]), "age": np.array([4, 3]), "height": np.array([2, 2])}
    out = apply_attribute_penalty(
        dist, query, gallery, penalties={"gender": 100.0, "age": 0.1}, unknown_codes=UNKNOWN
    )
    # Item 0 differs in gender and age: 0.5 + 100 + 0.1. Item 1 differs only in height, which has no penalty.
    np.testing.assert_allclose(out, [[100.6, 0.5]])


def test_zero_penalty_and_empty_penalties_copy() -> None:
    dist = np.array([[1.0, 2.0]])
    attrs_q, attrs_g = {"gender": np.array([0])}, {"gender": np.array([1, 0])}
    out = apply_attribute_penalty(dist, attrs_q, attrs_g, penalties={"gender": 0.0}, unknown_codes=UNKNOWN)
    np.testing.assert_array_equal(out, dist)
    assert out is not dist
    assert apply_attribute_penalty(dist, {}, {}, penalties={}, unknown_codes={}) is not dist


@pytest.mark.parametrize(
    ("query", "gallery", "penalties", "message"),
    [
        (
            {},
            {"age": np.array([1, 2])},
            {"age": 0.1},
            "'age' has a penalty but is missing from query_attributes",
        ),
        ({"age": np.array([1])}, {}, {"age": 0.1}, "missing from gallery_attributes"),
        ({"age": np.array([1, 2])}, {"age": np.array([1, 2])}, {"age": 0.1}, r"query_attributes\['age'\]"),
        (
            {"age": np.array([1])},
            {"age": np.array([1])},
            {"age": 0.1},
            r"gallery_attributes\['age'\].*length 2",
        ),
        ({"age": np.array([1])}, {"age": np.array([1, 2])}, {"age": -0.1}, r"penalties\['age'\] is -0.1"),
        ({"age": np.array([1])}, {"age": np.array([1, 2])}, {"age": np.inf}, r"penalties\['age'\] is inf"),
        ({"hat": np.array([1])}, {"hat": np.array([1, 2])}, {"hat": 0.1}, "'hat' has a penalty but no entry"),
        ({"age": np.array([1.0])}, {"age": np.array([1, 2])}, {"age": 0.1}, "must hold integer"),
    ],
)
def test_masking_validation(query: dict, gallery: dict, penalties: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_attribute_penalty(np.zeros((1, 2)), query, gallery, penalties=penalties, unknown_codes=UNKNOWN)


def test_masking_rejects_bad_distmat() -> None:
    with pytest.raises(ValueError, match="must be 2-D"):
        apply_attribute_penalty(np.zeros(3), {}, {}, penalties={}, unknown_codes=UNKNOWN)


# ---------------------------------------------------------------------------------------------- submission


def make_case(name: str, queries: list[str], gallery: list[str], seed: int) -> SubmissionCase:
    rng = np.random.default_rng(seed)
    return SubmissionCase(name, tuple(queries), tuple(gallery), rng.random((len(queries), len(gallery))))


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_rank_gallery_order_top_k_and_ties() -> None:
    dist = np.array([[0.3, 0.1, 0.2, 0.1], [0.0, 0.5, 0.4, 0.6]])
    names = ["a", "b", "c", "d"]
    # Row 0: b and d tie at 0.1 -> gallery order keeps b first.
    assert rank_gallery(dist, names, 3) == [["b", "d", "c"], ["a", "c", "b"]]
    assert rank_gallery(dist, names, 10) == [["b", "d", "c", "a"], ["a", "c", "b", "d"]]  # gallery smaller
    with pytest.raises(ValueError, match="top_k is 0"):
        rank_gallery(dist, names, 0)
    with pytest.raises(ValueError, match="one column per gallery name"):
        rank_gallery(dist, names[:3], 2)


def test_write_submission_format_and_order(tmp_path: Path) -> None:
    case1 = SubmissionCase(
        "case1_aerial_to_ground",
        ("tracklet_1", "tracklet_2"),
        ("gA", "gB", "gC"),
        np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]]),
    )
    case2 = SubmissionCase(
        "case2_ground_to_aerial", ("gA",), ("tracklet_7", "tracklet_8"), np.array([[0.4, 0.3]])
    )
    out = write_submission(tmp_path / "sub" / "submission.csv", [case1, case2], top_k=2)
    assert out == tmp_path / "sub" / "submission.csv"
    text = out.read_text(encoding="utf-8")
    assert text == (
        "row_id,query_tracklet,gallery_tracklets\n"
        "1,tracklet_1,gB gC\n"
        "2,tracklet_2,gC gA\n"
        "3,gA,tracklet_8 tracklet_7\n"  # row_id runs on across cases
    )
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # no temporary file left over


def test_write_submission_default_top_k_and_larger_gallery(tmp_path: Path) -> None:
    gallery = [f"g{i:02d}" for i in range(25)]
    case = make_case("c1", ["q1", "q2", "q3"], gallery, seed=0)
    rows = read_rows(write_submission(tmp_path / "s.csv", [case]))
    assert tuple(rows[0]) == SUBMISSION_HEADER
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    for row, dist_row in zip(rows[1:], case.distmat, strict=True):
        names = row[2].split(" ")
        assert len(names) == 10
        assert names == [gallery[i] for i in np.argsort(dist_row, kind="stable")[:10]]
    rows20 = read_rows(write_submission(tmp_path / "s.csv", [case], top_k=20))  # overwrite in place
    assert all(len(r[2].split(" ")) == 20 for r in rows20[1:])


def test_write_submission_failure_mid_write_leaves_nothing(tmp_path: Path) -> None:
    good = make_case("c1", ["q1", "q2"], ["g1", "g2"], seed=1)
    target = tmp_path / "submission.csv"
    with pytest.raises(TypeError, match=r"cases\[1\] is a tuple"):
        write_submission(target, [good, ("c2", ["q"], ["g"], np.zeros((1, 1)))])  # type: ignore[list-item]
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file


def test_write_submission_failure_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "submission.csv"
    target.write_text("previous\n", encoding="utf-8")
    calls = {"n": 0}
    real_rank = submission.rank_gallery

    def failing_rank(*args: object, **kwargs: object) -> list[list[str]]:
        calls["n"] += 1
        if calls["n"] == 2:  # the first case's rows are already in the temporary file
            raise OSError("disk full")
        return real_rank(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(submission, "rank_gallery", failing_rank)
    cases = [make_case("c1", ["q1"], ["g1", "g2"], 2), make_case("c2", ["q2"], ["g3"], 3)]
    with pytest.raises(OSError, match="disk full"):
        write_submission(target, cases)
    assert target.read_text(encoding="utf-8") == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]


def test_write_submission_fsync_failure_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        write_submission(tmp_path / "s.csv", [make_case("c1", ["q1"], ["g1"], 4)])
    assert list(tmp_path.iterdir()) == []


def test_submission_validation(tmp_path: Path) -> None:
    case = make_case("c1", ["q1"], ["g1"], 5)
    with pytest.raises(ValueError, match="top_k is 0"):
        write_submission(tmp_path / "s.csv", [case], top_k=0)
    with pytest.raises(ValueError, match="cases is empty"):
        write_submission(tmp_path / "s.csv", [])
    with pytest.raises(ValueError, match=r"c1.distmat has shape \(1, 2\)"):
        SubmissionCase("c1", ("q1",), ("g1",), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="without whitespace or commas"):
        SubmissionCase("c1", ("q 1",), ("g1",), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="without whitespace or commas"):
        SubmissionCase("c1", ("q1",), ("g,1",), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        SubmissionCase("c1", ("q1",), ("g1",), np.full((1, 1), np.nan))
    with pytest.raises(ValueError, match="gallery_names is empty"):
        SubmissionCase("c1", (), (), np.zeros((0, 0)))
    assert list(tmp_path.iterdir()) == []
    # Lists are accepted and stored as tuples, so a case cannot change after validation.
    assert SubmissionCase("c1", ["q1"], ["g1"], np.zeros((1, 1))).query_names == ("q1",)  # type: ignore[arg-type]
