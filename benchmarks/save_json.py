"""What the benchmarks that print a JSON report share: print it, then save it where ``--json-out`` says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_json(result: dict[str, Any], path: Path) -> None:
    print(json.dumps(result, indent=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
