"""What every command shares: error handling at the edge, logging, progress bars."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ofa_embed.errors import ConfigError, OFAEmbedError
from ofa_embed.progress import ProgressCallback

DEBUG_ENV = "OFA_EMBED_DEBUG"
stderr = Console(stderr=True)
stdout = Console()

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or info messages.")]


def setup_logging(quiet: bool) -> None:
    """Library log lines on stderr, one line each: info and above, or warnings only when ``quiet``."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s", force=True,
        handlers=[RichHandler(console=stderr, show_time=False, show_path=False, markup=False)],
    )
    # libraries' own progress chatter (faiss announces which SIMD build it loaded) is not the user's business
    for noisy in ("faiss", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse_numbers(text: str, count: int, name: str) -> tuple[float, ...]:
    """``count`` comma-separated numbers of option ``name`` (``--bbox``, ``--like-point``).

    Raises:
        ConfigError: not ``count`` numbers; the message names the option and its value.
    """
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise ConfigError(f"{name} {text!r}: expected {count} comma-separated numbers")
    return values


def parse_time(text: str | None, name: str, *, end: bool) -> datetime | None:
    """An ISO date or datetime of option ``name`` (UTC unless given); a plain date given as an ``end`` is the
    start of the next day, so that an exclusive end includes that whole day.

    Raises:
        ConfigError: not a date; the message names the option and its value.
    """
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{name} {text!r}: expected a date like 2024-05-01 or 2024-05-01T10:30") from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value + timedelta(days=1) if end and len(text) == 10 else value


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """Turn library errors into one red line on stderr and exit code 1 (traceback with OFA_EMBED_DEBUG=1)."""
    try:
        yield
    except OFAEmbedError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        stderr.print("[bold red]interrupted[/]: no partial output was left behind")
        raise typer.Exit(130) from None


@contextmanager
def progress_bar(quiet: bool, unit: str) -> Iterator[ProgressCallback | None]:
    """A rich progress bar fed as ``(task_name, done, total)`` counting ``unit``; None when quiet."""
    if quiet:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=False, disable=not sys.stderr.isatty()) as progress:
        tasks: dict[str, TaskID] = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        yield update
