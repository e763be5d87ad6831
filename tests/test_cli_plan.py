"""``agvp-hpo plan`` through the real Typer app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hpo.cli import app

runner = CliRunner()


def test_plan_table() -> None:
    result = runner.invoke(app, ["plan", "--max-epochs", "81", "--eta", "3"])
    assert result.exit_code == 0, result.output
    assert "s_max = 4" in result.output
    assert "1581 epochs = 19.52 FBE" in result.output
    assert "1902 epochs" in result.output


def test_plan_json() -> None:
    result = runner.invoke(app, ["plan", "--max-epochs", "100", "--eta", "3", "--min-epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert [b["configs"] for b in plan["brackets"]] == [81, 34, 15, 8, 5]
    assert [r["resource"] for r in plan["brackets"][0]["rungs"]] == [1, 3, 11, 33, 100]
    assert plan["epochs_resumed"] == sum(b["epochs_resumed"] for b in plan["brackets"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-epochs", "81", "--eta", "1"], "reduction_factor is 1, but must be >= 2"),
        (["--max-epochs", "0"], "max_resource is 0, but must be >= 1"),
        (["--max-epochs", "9", "--min-epochs", "10"], "min_resource is 10, but must be <= max_resource"),
    ],
)
def test_plan_bad_values_are_one_line_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["plan", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
