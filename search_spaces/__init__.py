"""Bundled study files (YAML). Shipped with the package so ``agvp-hpo run search_spaces/NAME.yaml`` works
from any directory."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent
