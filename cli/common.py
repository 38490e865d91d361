"""What every command shares: error handling at the edge, logging, progress bars."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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

from ofa_embed.errors import OFAEmbedError
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
