"""What every command shares: consoles, and turning user mistakes into one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from trainers.errors import AgvpError

console = Console()
err_console = Console(stderr=True)

#: Exit code for bad input (a user mistake), as opposed to 1 for "ran fine, found problems".
EXIT_BAD_INPUT = 2


def progress_bar(*, eta: bool = False) -> Progress:
    """The one progress bar style of the CLI: description, bar, done/total, elapsed time or ETA."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn() if eta else TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    # escaped: a message may hold "[low, high]", which rich would otherwise eat as a markup tag
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _pydantic_message(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {first['msg']}"


@contextmanager
def user_errors() -> Iterator[None]:
    """Report our own errors (and invalid settings) as one line with exit code 2, never a traceback."""
    try:
        yield
    except AgvpError as error:
        raise fail(str(error)) from None
    except ValidationError as error:
        raise fail(_pydantic_message(error)) from None
    except ValueError as error:
        raise fail(str(error)) from None
