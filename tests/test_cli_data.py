"""``agvp-hpo data synth`` and ``agvp-hpo data inspect`` through the real Typer app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from hpo.cli import app

runner = CliRunner()
SMALL_ARGS = ["--ids", "4", "--test-ids", "2", "--distractors", "1", "--min-frames", "2", "--max-frames", "4"]


def test_synth_then_inspect_json(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = runner.invoke(app, ["data", "synth", str(out), *SMALL_ARGS, "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "frames in" in result.output
    result = runner.invoke(app, ["data", "inspect", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["splits"]["train"]["identities"] == 4
    assert report["splits"]["case2_gallery"]["identities"] == 3
    assert report["test_ids"] == "mapping"
    assert set(report["splits"]["train"]["platforms"]) <= {"aerial", "cctv", "wearable"}
    assert report["problems"] == []


def test_inspect_table_output(small_root: Path) -> None:
    result = runner.invoke(app, ["data", "inspect", str(small_root)])
    assert result.exit_code == 0, result.output
    assert "attribute coverage" in result.output
    assert "no problems found" in result.output


def test_inspect_lists_all_problems_and_exits_1(small_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    shutil.copytree(small_root, root)
    (root / "train" / "abc" / "t").mkdir(parents=True)
    (root / "train" / "1" / "empty").mkdir()
    result = runner.invoke(app, ["data", "inspect", str(root), "--json", "--no-check-images"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["problem_counts"] == {"bad-id-folder": 1, "empty-tracklet": 1}


def test_inspect_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "dataset folder does not exist" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_synth_bad_inputs(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    cases = [
        ([str(busy)], "not empty"),
        ([str(tmp_path / "a"), "--id-mode", "open"], "id_mode"),
        ([str(tmp_path / "b"), "--min-frames", "5", "--max-frames", "2"], "frames"),
        ([str(tmp_path / "c"), "--ids", "1"], "train_ids"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["data", "synth", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_inspect_bad_test_ids_option(small_root: Path) -> None:
    result = runner.invoke(app, ["data", "inspect", str(small_root), "--test-ids", "guess"])
    assert result.exit_code == 2
    assert "--test-ids" in result.output
