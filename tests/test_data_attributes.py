from __future__ import annotations

from pathlib import Path

import pytest

from trainers.data.attributes import (
    ATTRIBUTE_NAMES,
    CSV_COLUMNS,
    UNKNOWN_CODE,
    coerce_code,
    read_attribute_csv,
    write_attribute_csv,
)
from trainers.errors import DataError


def test_fifteen_attributes_with_reference_unknown_codes() -> None:
    assert len(ATTRIBUTE_NAMES) == 15
    assert UNKNOWN_CODE["gender"] == 2
    assert UNKNOWN_CODE["upper_body_clothing"] == 12
    assert UNKNOWN_CODE["accessories"] == 8


@pytest.mark.parametrize(
    ("value", "expected"), [(0, (0, False)), (2, (2, False)), (3, (2, True)), (-1, (2, True))]
)
def test_coerce_gender(value: int, expected: tuple[int, bool]) -> None:
    assert coerce_code("gender", value) == expected


def _row(pid: int, **codes: int) -> dict[str, int]:
    row = {name: 0 for name in ATTRIBUTE_NAMES}
    row.update(codes)
    return row


def test_out_of_range_codes_are_coerced_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    write_attribute_csv(path, {1: _row(1, gender=3, hairstyle=6), 2: _row(2, hairstyle=6), 3: _row(3)})
    table = read_attribute_csv(path)
    assert table.rows[1]["gender"] == 2
    assert table.rows[1]["hairstyle"] == 5
    assert table.coerced == {"gender": 1, "hairstyle": 2}
    assert table.coerced_total == 3
    assert table.get(99) == UNKNOWN_CODE  # an id without a row: everything unknown


def test_missing_column_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,gender\n1,0\n")
    with pytest.raises(DataError, match=r"bad\.csv: attribute CSV lacks column\(s\) age"):
        read_attribute_csv(path)


def test_non_integer_value_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(",".join(CSV_COLUMNS) + "\n" + ",".join(["1"] * 16) + "\n" + ",".join(["x"] * 16) + "\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 3: non-integer"):
        read_attribute_csv(path)


def test_duplicate_id_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(",".join(CSV_COLUMNS) + "\n" + ("1," + ",".join(["0"] * 15) + "\n") * 2)
    with pytest.raises(DataError, match="id 1 appears twice"):
        read_attribute_csv(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read attribute file"):
        read_attribute_csv(tmp_path / "absent.csv")
