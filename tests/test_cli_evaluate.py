"""``agvp-hpo evaluate`` on a small synthetic dataset with a random tiny backbone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo.cli import app
from trainers.data.index import read_dataset

runner = CliRunner()
FAST = ["--random-init", "--preset", "tiny-cpu"]


def test_full_report_json_and_submission(small_root: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "out" / "report.json"
    submission = tmp_path / "out" / "submission.csv"
    (tmp_path / "out").mkdir()
    result = runner.invoke(
        app,
        [
            *("evaluate", "--data", str(small_root), *FAST, "--flip", "--json-out", str(report_path)),
            *("--submission", str(submission), "--top-k", "3", "--mask", "default", "--rerank", "--k1", "5"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "OVERALL" in result.output
    report = json.loads(report_path.read_text())
    assert set(report["cases"]) == {"a2g", "g2a"}
    assert set(report["cases"]["a2g"]["per_altitude"]) == {"80m", "120m"}
    assert 0.0 <= report["overall"]["mAP"] <= 1.0
    assert report["options"]["mask"] == {"gender": 0.2, "age": 0.2, "ethnicity": 0.2, "body_volume": 0.2}
    index = read_dataset(small_root)
    with submission.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["row_id", "query_tracklet", "gallery_tracklets"]
    n_case1 = len(index.split("case1_query"))
    assert len(rows) - 1 == n_case1 + len(index.split("case2_query"))
    case1_names = {t.name for t in index.split("case1_query")}
    assert all(row[1] in case1_names for row in rows[1 : n_case1 + 1])  # case 1 rows first
    assert all(len(row[2].split()) == 3 for row in rows[1:])


def test_masked_release_writes_only_the_submission(small_root: Path, tmp_path: Path) -> None:
    submission = tmp_path / "s.csv"
    result = runner.invoke(
        app,
        [
            *("evaluate", "--data", str(small_root), *FAST, "--test-ids", "masked", "--case", "a2g"),
            *("--submission", str(submission)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "masked" in result.output
    assert submission.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "tiny-cpu"], "or --random-init"),
        ([*FAST, "--preset", "tiny"], "preset 'tiny' is not one of"),
        ([*FAST, "--case", "a2a"], "--case is 'a2a'"),
        ([*FAST, "--mask", "shoe_size"], "'shoe_size' is not one of"),
        ([*FAST, "--mask", "gender=high"], "is not a number"),
        ([*FAST, "--sampling", "chunk-random"], "is for training"),
        ([*FAST, "--top-k", "0"], "--top-k is 0"),
        ([*FAST, "--rerank", "--k1", "0"], "k1"),
    ],
)
def test_bad_inputs_are_one_line_errors(small_root: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["evaluate", "--data", str(small_root), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_dataset(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "none"), *FAST])
    assert result.exit_code == 2
    assert "dataset folder does not exist" in result.output
