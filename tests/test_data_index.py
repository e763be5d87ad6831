"""The reader on a generated dataset, and on broken copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trainers.data.index import read_dataset, scan_dataset
from trainers.data.layout import SPLIT_DIRS, TRUE_IDS_FILE
from trainers.data.naming import parse_frame_name
from trainers.data.synth import SynthSummary
from trainers.errors import DataError


def test_reads_back_what_synth_wrote(small_dataset: tuple[Path, SynthSummary]) -> None:
    root, summary = small_dataset
    index = read_dataset(root)
    for split, count in summary.tracklets.items():
        assert len(index.split(split)) == count
    assert sum(len(t.frames) for t in index.tracklets) == summary.frames
    assert index.test_ids == "mapping"


def test_frames_are_in_temporal_order_and_metadata_is_parsed(small_root: Path) -> None:
    index = read_dataset(small_root, splits=["train"])
    for tracklet in index.tracklets:
        numbers = [parse_frame_name(f).frame_number for f in tracklet.frames]
        assert numbers == sorted(numbers)
        assert tracklet.is_aerial == (tracklet.camera in (4, 5))
        assert (tracklet.altitude_m in (80, 120)) == tracklet.is_aerial
        assert tracklet.true_pid == tracklet.pid
        assert tracklet.name.startswith("tracklet_") == tracklet.is_aerial


def test_true_ids_link_query_and_gallery_while_folder_ids_are_masked(small_root: Path) -> None:
    index = read_dataset(small_root)
    query = index.split("case1_query")
    gallery = index.split("case1_gallery")
    assert {t.true_pid for t in query} == {t.true_pid for t in gallery}
    # masked: folder ids are per-split permutations, so they disagree with the true identities somewhere
    assert any(t.pid != t.true_pid for t in (*query, *gallery))
    # the case-1 gallery and the case-2 query hold the same ground tracklets
    assert {(t.name, t.true_pid) for t in gallery} == {
        (t.name, t.true_pid) for t in index.split("case2_query")
    }
    # the case-2 gallery adds distractors to the aerial test tracklets
    case2_gallery = index.split("case2_gallery")
    assert {t.name for t in query} < {t.name for t in case2_gallery}
    assert all(t.is_aerial for t in case2_gallery)


def test_masked_mode_ignores_the_mapping(small_root: Path) -> None:
    index = read_dataset(small_root, test_ids="masked")
    assert not index.test_ids_known
    assert all(t.true_pid is None for t in index.split("case2_gallery"))
    assert all(t.true_pid == t.pid for t in index.split("train"))


def test_true_mode_takes_folder_ids_as_identities(small_root: Path) -> None:
    index = read_dataset(small_root, test_ids="true")
    assert all(t.true_pid == t.pid for t in index.tracklets)


def test_fingerprint_is_stable_and_content_sensitive(small_root: Path, tmp_path: Path) -> None:
    first = read_dataset(small_root).fingerprint()
    assert read_dataset(small_root).fingerprint() == first
    copy = tmp_path / "copy"
    shutil.copytree(small_root, copy)
    assert read_dataset(copy).fingerprint() == first  # location does not matter
    victim = next((copy / "train").glob("*/*/*.jpg"))
    victim.unlink()
    assert read_dataset(copy).fingerprint() != first


@pytest.fixture
def broken_root(small_root: Path, tmp_path: Path) -> Path:
    """A copy with five different problems."""
    root = tmp_path / "broken"
    shutil.copytree(small_root, root)
    train = root / SPLIT_DIRS["train"]
    (train / "not_an_id" / "trk").mkdir(parents=True)
    (train / "1" / "empty_tracklet").mkdir()
    bad_name = train / "1" / "bad_names"
    bad_name.mkdir()
    (bad_name / "frame_0001.jpg").write_bytes(b"whatever")
    first_frame = next(iter(sorted((train / "2").glob("*/*.jpg"))))
    first_frame.write_bytes(b"not a jpeg")
    (root / "attributes" / "train.csv").write_text("id,gender\n1,0\n")
    return root


def test_scan_lists_every_problem(broken_root: Path) -> None:
    _, problems = scan_dataset(broken_root, check_images=True)
    kinds = sorted(p.kind for p in problems)
    assert kinds == [
        "bad-attributes",
        "bad-frame-name",
        "bad-id-folder",
        "empty-tracklet",
        "unreadable-image",
    ]
    by_kind = {p.kind: p for p in problems}
    assert by_kind["unreadable-image"].path.endswith(".jpg")
    assert by_kind["empty-tracklet"].path.endswith("empty_tracklet")
    assert "no camera code" in by_kind["bad-frame-name"].message


def test_images_are_only_decoded_when_asked(broken_root: Path) -> None:
    _, problems = scan_dataset(broken_root, check_images=False)
    assert "unreadable-image" not in {p.kind for p in problems}


def test_read_dataset_stops_at_the_first_problem_naming_the_path(broken_root: Path) -> None:
    with pytest.raises(DataError) as caught:
        read_dataset(broken_root)
    assert caught.value.path is not None
    assert str(broken_root) in str(caught.value)


def test_missing_root_and_missing_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset folder does not exist"):
        read_dataset(tmp_path / "nowhere")
    (tmp_path / "train").mkdir()
    with pytest.raises(
        DataError, match="case1_aerial_to_ground/query: split folder for 'case1_query' does not exist"
    ):
        read_dataset(tmp_path)


def test_unknown_split_and_mode_are_value_errors(small_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown split"):
        read_dataset(small_root, splits=["validation"])
    with pytest.raises(ValueError, match="test_ids"):
        read_dataset(small_root, test_ids="maybe")  # type: ignore[arg-type]


def test_mapping_must_cover_every_test_tracklet(small_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "partial"
    shutil.copytree(small_root, root)
    lines = (root / TRUE_IDS_FILE).read_text().splitlines()
    (root / TRUE_IDS_FILE).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=r"not listed in true_ids\.csv"):
        read_dataset(root)
