"""The exception hierarchy of agvp-hpo. Catch :class:`AgvpError` to catch every error we raise on purpose."""

from __future__ import annotations

from pathlib import Path


class AgvpError(Exception):
    """Root of every error agvp-hpo raises for a user-facing problem (bad input, bad config)."""


class DataError(AgvpError):
    """A dataset on disk is missing, malformed or unreadable. ``path`` names the offending file or folder."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)
