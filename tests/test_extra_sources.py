"""Extra training sources (``data.extra_sources``): the G2A-VReID and generic readers on synthesized folders,
the camera mapping, identity renumbering after AG-VPReID's ids (recorded), validation from AG-VPReID only,
one-line errors naming the field, the CLI (synth --layout, inspect of every source) and a short fit."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from hpo.cli import app
from trainers.data.config import DataConfig, ExtraSourceConfig
from trainers.data.index import read_dataset
from trainers.data.layout import G2A_TRACK_FILES, GENERIC_TRACKLETS_FILE
from trainers.data.matfile import read_mat, write_mat
from trainers.data.pipeline import eval_dataset, read_training_index, validation_split
from trainers.data.sources import (
    first_extra_pid,
    natural_key,
    read_extra_sources,
    save_sources,
    scan_source,
)
from trainers.data.split import label_map, make_validation_split, training_tracklets
from trainers.data.synth import SynthConfig
from trainers.data.synth_sources import generate_source
from trainers.engine import SOURCES_FILE, SPLIT_FILE, fit, load_checkpoint
from trainers.errors import DataError
from trainers.tfclip.config import ConfigError, resolve_config

runner = CliRunner()
SMALL = SynthConfig(seed=4, train_ids=4, test_ids=2, distractor_ids=1, frames=(2, 4))


@pytest.fixture(scope="module")
def g2a_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("g2a") / "G2A-VReID"
    generate_source(root, "g2a-vreid", SMALL)
    return root


@pytest.fixture(scope="module")
def generic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generic") / "extra"
    generate_source(
        root, "generic", SynthConfig(seed=5, train_ids=4, test_ids=2, distractor_ids=1, frames=(9, 11))
    )
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / root.name
    shutil.copytree(root, copy)
    return copy


# --- MAT v5 ------------------------------------------------------------------------------------------------


def test_mat_round_trip_and_bad_files(tmp_path: Path) -> None:
    table = np.array([[1, 4, 7, 1], [5, 9, -1, 2]])
    write_mat(tmp_path / "t.mat", {"track_train_info": table, "query_IDX": np.array([2])})
    arrays = read_mat(tmp_path / "t.mat")
    assert np.array_equal(arrays["track_train_info"], table)
    assert arrays["query_IDX"].shape == (1, 1)
    (tmp_path / "v73.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(128, b" "))
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match=r"v7\.3"):
        read_mat(tmp_path / "v73.mat")
    with pytest.raises(DataError, match="not a MAT v5 file"):
        read_mat(tmp_path / "junk.mat")


def test_mat_reader_agrees_with_scipy(tmp_path: Path) -> None:
    """The authors' loader reads these files with scipy.io.loadmat (FHR-L/VSLA-CLIP
    datasets/data_manager.py L30-33); our reader must read what scipy writes, compressed or not, and scipy
    must read what we write."""
    sio = pytest.importorskip("scipy.io")
    table = np.array([[1, 10, 3, 1], [11, 20, 3, 2], [21, 25, -1, 1]], dtype=np.int32)
    for compressed in (False, True):
        sio.savemat(tmp_path / "s.mat", {"track_test_info": table, "x": "text"}, do_compression=compressed)
        arrays = read_mat(tmp_path / "s.mat")
        assert set(arrays) == {"track_test_info"} and np.array_equal(arrays["track_test_info"], table)
    write_mat(tmp_path / "ours.mat", {"track_test_info": table})
    assert np.array_equal(sio.loadmat(tmp_path / "ours.mat")["track_test_info"], table)


# --- readers -----------------------------------------------------------------------------------------------


def test_g2a_reader_follows_the_authors_loader(g2a_root: Path) -> None:
    """G2A-VReID as FHR-L/VSLA-CLIP datasets/data_manager.py (class G2A) reads it: info/ name lists and track
    tables (L19-23), query rows = query_IDX - 1 and the gallery the other test rows (L34-36), rows
    (first, last, pid, camid) over the 1-based name list (L122), identity -1 skipped (L117), frames at
    bbox_<split>/<name[:4]>/<name> (L133), two cameras (L77)."""
    source, problems = scan_source(
        ExtraSourceConfig(root=g2a_root, layout="g2a-vreid"), position=0, first_pid=100
    )
    assert problems == []
    by_split = {s: [t for t in source.tracklets if t.split == s] for s in ("train", "query", "gallery")}
    names = (g2a_root / "info" / "test_name.txt").read_text().splitlines()
    test_rows = read_mat(g2a_root / "info" / "tracks_test_info.mat")["track_test_info"].astype(int)
    query_rows = read_mat(g2a_root / "info" / "query_IDX.mat")["query_IDX"].astype(int).ravel() - 1
    assert len(by_split["query"]) == len(query_rows)
    assert len(by_split["gallery"]) == len(test_rows) - len(query_rows) - 1  # the junk row (-1) is skipped
    assert all(not t.is_aerial for t in by_split["query"]) and all(t.is_aerial for t in by_split["gallery"])
    first, last, _, camid = test_rows[query_rows[0]]
    query = next(t for t in by_split["query"] if t.name == f"{first}-{last}")
    assert [Path(f).name for f in query.frames] == names[first - 1 : last]
    assert query.frames[0] == f"bbox_test/{names[first - 1][:4]}/{names[first - 1]}"
    assert query.camera == {1: 0, 2: 4}[camid]
    assert all(t.frame_path(0, Path("/elsewhere")).is_file() for t in source.tracklets)
    assert source.cameras == {"1": 0, "2": 4}
    # train and test identity numbers are separate spaces; new ids are consecutive in sorted order
    assert {k.split("/")[0] for k in source.identities} == {"train", "test"}
    assert sorted(source.identities.values()) == list(range(100, 100 + len(source.identities)))
    order = sorted(source.identities, key=natural_key)
    assert source.identities == {identity: 100 + rank for rank, identity in enumerate(order)}


def test_generic_reader_and_natural_frame_order(generic_root: Path) -> None:
    source, problems = scan_source(
        ExtraSourceConfig(root=generic_root, layout="generic", splits=("train",)), position=1, first_pid=7
    )
    assert problems == [] and source.splits == ("train",) and source.label == "extra1"
    with (generic_root / GENERIC_TRACKLETS_FILE).open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train"]
    assert len(source.tracklets) == len(rows)
    platforms = {(r["identity"], r["tracklet"]): r["platform"] for r in rows}
    for tracklet in source.tracklets:
        identity = next(k for k, v in source.identities.items() if v == tracklet.pid)
        assert tracklet.platform.value == platforms[(identity, tracklet.name)]
        numbers = [int(Path(f).stem.split("_")[1]) for f in tracklet.frames]
        assert numbers == list(range(1, len(numbers) + 1))  # frame_2 before frame_10
        assert tracklet.key.startswith("extra1:train/")
    assert set(source.cameras.items()) <= {("body_1", 2), ("cam_a", 0), ("uav_1", 4)}


def test_camera_mapping_is_configurable_and_checked(
    g2a_root: Path, generic_root: Path, tmp_path: Path
) -> None:
    moved, _ = scan_source(
        ExtraSourceConfig(root=g2a_root, layout="g2a-vreid", cameras={2: 5}), position=0, first_pid=1
    )
    assert {t.camera for t in moved.tracklets if t.is_aerial} == {5}
    with pytest.raises(
        DataError, match=r"camera 'uav_1' is aerial but data\.extra_sources\.0\.cameras maps it"
    ):
        scan_source(
            ExtraSourceConfig(root=generic_root, layout="generic", cameras={"uav_1": 0}),
            position=0,
            first_pid=1,
            stop_at_first=True,
        )
    root = _copy(g2a_root, tmp_path)
    path, key = G2A_TRACK_FILES["train"]
    table = read_mat(root / path)[key]
    table[0, 3] = 3
    write_mat(root / path, {key: table})
    with pytest.raises(
        DataError, match=r"camera '3' has no AG-VPReID camera: add it to data\.extra_sources\.0"
    ):
        scan_source(
            ExtraSourceConfig(root=root, layout="g2a-vreid"), position=0, first_pid=1, stop_at_first=True
        )
    with pytest.raises(ValueError, match="less than or equal to 5"):
        ExtraSourceConfig(root=root, layout="g2a-vreid", cameras={"1": 6})


# --- renumbering, validation, training ---------------------------------------------------------------------


def test_identities_continue_after_the_largest_agvp_id_and_are_recorded(
    small_root: Path, g2a_root: Path, generic_root: Path, tmp_path: Path
) -> None:
    """Report appendix A.2 (seed report L266): new ids continue sequentially after the maximum AG-VPReID id;
    a second source continues after the first."""
    agvp = read_dataset(small_root, splits=["train"])
    config = DataConfig(
        extra_sources=(
            ExtraSourceConfig(root=g2a_root, layout="g2a-vreid"),
            ExtraSourceConfig(root=generic_root, layout="generic"),
        )
    )
    index = read_training_index(small_root, config)
    largest = max(t.pid for t in agvp.split("train"))
    first, second = index.sources
    assert first_extra_pid(index) == largest + 1
    assert first.first_pid == largest + 1 and second.first_pid == first.last_pid + 1
    assert {t.pid for t in first.tracklets} == set(range(first.first_pid, first.last_pid + 1))
    assert not {t.pid for t in index.extra_tracklets} & {t.pid for t in agvp.tracklets}
    assert index.tracklets == agvp.tracklets  # extras never enter the AG-VPReID splits
    assert agvp.fingerprint() == read_extra_sources(agvp, ()).fingerprint() != index.fingerprint()
    save_sources(index, tmp_path / "sources.json")
    record = json.loads((tmp_path / "sources.json").read_text())
    assert record["agvp_max_train_pid"] == largest and record["index_fingerprint"] == index.fingerprint()
    assert [(s["first_pid"], s["last_pid"], s["layout"]) for s in record["sources"]] == [
        (first.first_pid, first.last_pid, "g2a-vreid"),
        (second.first_pid, second.last_pid, "generic"),
    ]
    assert record["sources"][0]["identities"] == first.identities


def test_validation_is_agvp_only_and_training_adds_every_extra_tracklet(
    small_root: Path, g2a_root: Path
) -> None:
    source = ExtraSourceConfig(root=g2a_root, layout="g2a-vreid")
    config = DataConfig(split={"fraction": 0.3}, extra_sources=(source,))  # type: ignore[arg-type]
    agvp = read_dataset(small_root, splits=["train"])
    index = read_training_index(small_root, config)
    split = validation_split(index, config)
    alone = make_validation_split(agvp, fraction=0.3)
    assert split.val_pids == alone.val_pids and split.train_pids == alone.train_pids
    assert set(split.val_pids) <= {t.pid for t in agvp.tracklets}
    train = training_tracklets(index, split)
    assert set(index.extra_tracklets) <= set(train)
    assert not {t.pid for t in train} & set(split.val_pids)
    assert len(train) == len(training_tracklets(agvp, alone)) + len(index.extra_tracklets)
    labels = label_map(train)
    assert sorted(labels.values()) == list(range(len(labels)))
    # frames of an extra source load although they live under another root than the index's
    extra = index.extra_tracklets[0]
    item = eval_dataset(index, [extra], config)[0]
    assert item["clip"].shape[0] == config.sampling.seq_len and item["camera"] == extra.camera
    assert extra.root == g2a_root and not (index.root / extra.frames[0]).exists()
    # data.use_extra_sources: false trains on AG-VPReID alone (a scalar switch a study can search)
    off = DataConfig(split={"fraction": 0.3}, extra_sources=(source,), use_extra_sources=False)  # type: ignore[arg-type]
    assert not read_training_index(small_root, off).extra_tracklets


# --- errors ------------------------------------------------------------------------------------------------


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text
    return text


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    for entry, message in [
        ({"root": "x", "layout": "mars"}, "data.extra_sources.0.layout"),
        (
            {"root": "x", "layout": "g2a-vreid", "splits": ["test"]},
            "g2a-vreid splits are train, query, gallery",
        ),
        ({"root": "x", "layout": "generic", "colour": 1}, "unknown key data.extra_sources.0.colour"),
        ({"layout": "generic"}, "data.extra_sources.0.root"),
    ]:
        with pytest.raises(ConfigError) as caught:
            resolve_config({"preset": "tiny-cpu", "data": {"extra_sources": [entry]}})
        assert message in _one_line(caught.value)


def test_data_errors_are_one_line_naming_the_source(
    small_root: Path, generic_root: Path, tmp_path: Path
) -> None:
    agvp = read_dataset(small_root, splits=["train"])
    missing = ExtraSourceConfig(root=tmp_path / "nowhere", layout="g2a-vreid")
    with pytest.raises(DataError) as caught:
        read_extra_sources(agvp, [missing])
    assert f"{tmp_path / 'nowhere'}: data.extra_sources.0.root: folder does not exist" in _one_line(
        caught.value
    )
    with pytest.raises(
        DataError, match=r"data\.extra_sources\.0\.splits names val, but the source has test, train"
    ):
        read_extra_sources(agvp, [ExtraSourceConfig(root=generic_root, layout="generic", splits=("val",))])
    with pytest.raises(
        DataError, match=r"info/train_name.txt: data\.extra_sources\.0 \(g2a-vreid\): file does"
    ):
        read_extra_sources(agvp, [ExtraSourceConfig(root=generic_root, layout="g2a-vreid")])
    cases = [
        ("split,identity,tracklet,camera\n", "needs columns split, identity, tracklet, camera, platform"),
        ("split,identity,tracklet,camera,platform\ntrain,p001,t1,uav_1,sky\n", "line 2: platform 'sky'"),
        ("split,identity,tracklet,camera,platform\n", "tracklet has no row in"),
    ]
    for number, (text, message) in enumerate(cases):
        root = _copy(generic_root, tmp_path / f"case{number}")
        (root / GENERIC_TRACKLETS_FILE).write_text(text)
        with pytest.raises(DataError) as caught:
            read_extra_sources(agvp, [ExtraSourceConfig(root=root, layout="generic")])
        assert message in _one_line(caught.value)


# --- CLI ---------------------------------------------------------------------------------------------------

SMALL_ARGS = ["--ids", "4", "--test-ids", "2", "--distractors", "1", "--min-frames", "2", "--max-frames", "3"]


def _inspect(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["data", "inspect", *args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.output)


def test_cli_synth_every_layout_then_inspect_every_source(tmp_path: Path) -> None:
    for layout in ("agvp", "g2a-vreid", "generic"):
        result = runner.invoke(
            app, ["data", "synth", str(tmp_path / layout), "--layout", layout, *SMALL_ARGS]
        )
        assert result.exit_code == 0, result.output
    assert (tmp_path / "g2a-vreid" / "info" / "query_IDX.mat").is_file()
    assert (tmp_path / "generic" / "tracklets.csv").is_file()
    (tmp_path / "trainer.yaml").write_text(
        f"preset: tiny-cpu\ndata:\n  extra_sources:\n    - {{root: {tmp_path / 'generic'}, layout: generic, "
        f"splits: [train]}}\n"
    )
    code, report = _inspect(
        str(tmp_path / "agvp"),
        "--extra",
        f"g2a-vreid:{tmp_path / 'g2a-vreid'}",
        "--config",
        str(tmp_path / "trainer.yaml"),
    )
    assert code == 0 and report["problems"] == []
    largest = 4  # the agvp synth numbers its 4 train identities 1..4
    g2a, generic = report["sources"]
    assert (g2a["layout"], g2a["first_pid"], g2a["total"]["identities"]) == ("g2a-vreid", largest + 1, 7)
    assert generic["first_pid"] == g2a["last_pid"] + 1 and generic["splits"] == ["train"]
    assert (
        set(g2a["per_split"]) == {"train", "query", "gallery"}
        and g2a["per_split"]["train"]["identities"] == 4
    )
    assert set(g2a["platforms"]) == {"aerial", "cctv"} and g2a["camera_map"] == {"1": 0, "2": 4}
    table = runner.invoke(
        app, ["data", "inspect", str(tmp_path / "agvp"), "--extra", f"generic:{tmp_path / 'generic'}"]
    )
    assert table.exit_code == 0 and "extra training sources" in table.output
    # one source alone, and a broken one: problems listed, exit 1
    code, alone = _inspect(str(tmp_path / "g2a-vreid"), "--layout", "g2a-vreid")
    assert code == 0 and alone["splits"] == {} and alone["sources"][0]["first_pid"] == 1
    csv_path = tmp_path / "generic" / "tracklets.csv"
    csv_path.write_text("".join(csv_path.read_text().splitlines(keepends=True)[:-1]))
    code, broken = _inspect(str(tmp_path / "generic"), "--layout", "generic", "--no-check-images")
    assert code == 1 and broken["problem_counts"] == {"unlisted-tracklet": 1}


def test_cli_bad_layouts_are_one_line_errors(tmp_path: Path, small_root: Path) -> None:
    for args, message in [
        (["synth", str(tmp_path / "a"), "--layout", "mars"], "--layout is 'mars'"),
        (["inspect", str(small_root), "--extra", "mars:/x"], "--extra layout is 'mars'"),
        (["inspect", str(small_root), "--extra", "generic"], "must look like LAYOUT:PATH"),
        (
            ["inspect", str(small_root), "--extra", f"generic:{tmp_path / 'none'}"],
            "data.extra_sources.0.root",
        ),
    ]:
        result = runner.invoke(app, ["data", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


# --- training ----------------------------------------------------------------------------------------------


def test_fit_trains_on_an_extra_source(small_root: Path, generic_root: Path, tmp_path: Path) -> None:
    config = resolve_config(
        {
            "preset": "tiny-cpu",
            "data": {
                "root": str(small_root),
                "batch": {"p": 4, "k": 2},
                "split": {"fraction": 0.3},
                "extra_sources": [{"root": str(generic_root), "layout": "generic", "cameras": {"body_1": 3}}],
            },
            "runtime": {"eval_batch_size": 64},
        }
    )
    results = fit(config, max_epochs=1, checkpoint_dir=tmp_path / "run")
    assert np.isfinite(results[0]["val_map"]) and results[0]["train_loss"] > 0
    record = json.loads((tmp_path / "run" / SOURCES_FILE).read_text())
    split = json.loads((tmp_path / "run" / SPLIT_FILE).read_text())
    source = record["sources"][0]
    assert source["first_pid"] == record["agvp_max_train_pid"] + 1 and source["cameras"]["body_1"] == 3
    payload = load_checkpoint(tmp_path / "run")
    extra_ids = set(range(source["first_pid"], source["last_pid"] + 1))
    assert payload["num_classes"] == len(split["train_pids"]) + len(extra_ids)
    assert extra_ids <= set(payload["labels"]) and not extra_ids & set(split["val_pids"])
