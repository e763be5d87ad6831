"""The 15 soft-biometric attributes of AG-VPReID and their CSV files.

Each attribute is an integer code whose last value means "unknown" (see REFERENCE_REID.md). The released
files contain out-of-range codes (e.g. gender 3): those are coerced to the unknown code and counted, so a
report can say how many values were repaired.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trainers.errors import DataError

#: Attribute name -> the code meaning "unknown" (the largest valid code). Order = CSV column order.
UNKNOWN_CODE: dict[str, int] = {
    "gender": 2,
    "age": 8,
    "height": 4,
    "body_volume": 3,
    "ethnicity": 4,
    "hair_color": 6,
    "hairstyle": 5,
    "beard": 2,
    "moustache": 2,
    "glasses": 3,
    "head_accessories": 4,
    "upper_body_clothing": 12,
    "lower_body_clothing": 9,
    "footwear": 6,
    "accessories": 8,
}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(UNKNOWN_CODE)
CSV_COLUMNS: tuple[str, ...] = ("id", *ATTRIBUTE_NAMES)


def coerce_code(attribute: str, value: int) -> tuple[int, bool]:
    """Return ``(code, coerced)``: codes outside ``0..unknown`` become the unknown code."""
    unknown = UNKNOWN_CODE[attribute]
    if 0 <= value <= unknown:
        return value, False
    return unknown, True


@dataclass
class AttributeTable:
    """Attributes of the identities of one split file: folder id -> attribute -> code."""

    rows: dict[int, dict[str, int]] = field(default_factory=dict)
    #: attribute -> how many values were out of range and coerced to unknown
    coerced: Counter[str] = field(default_factory=Counter)

    def get(self, pid: int) -> dict[str, int]:
        """Attributes of ``pid``; an id missing from the file has every attribute unknown."""
        return self.rows.get(pid, dict(UNKNOWN_CODE))

    @property
    def coerced_total(self) -> int:
        return sum(self.coerced.values())


def read_attribute_csv(path: Path) -> AttributeTable:
    """Read one attribute CSV. Malformed files raise :class:`DataError` naming the file and line."""
    table = AttributeTable()
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise DataError(f"cannot read attribute file ({error.strerror})", path=path) from None
    with handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [column for column in CSV_COLUMNS if column not in header]
        if missing:
            raise DataError(f"attribute CSV lacks column(s) {', '.join(missing)}", path=path)
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            try:
                pid = int(row["id"])
                codes = {name: int(float(row[name])) for name in ATTRIBUTE_NAMES}
            except (TypeError, ValueError):
                raise DataError(f"line {line}: non-integer value in {row}", path=path) from None
            if pid in table.rows:
                raise DataError(f"line {line}: id {pid} appears twice", path=path)
            clean: dict[str, int] = {}
            for name, value in codes.items():
                clean[name], was_coerced = coerce_code(name, value)
                if was_coerced:
                    table.coerced[name] += 1
            table.rows[pid] = clean
    return table


def write_attribute_csv(path: Path, rows: Mapping[int, Mapping[str, int]]) -> None:
    """Write an attribute CSV in the dataset's column order (used by the synthetic generator)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for pid in sorted(rows):
            writer.writerow([pid, *(rows[pid][name] for name in ATTRIBUTE_NAMES)])
