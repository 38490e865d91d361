"""``ofa-embed serve``: the labelling page of a store on a local web server."""

from __future__ import annotations

from typing import Annotated

import typer

import ofa_embed
from ofa_embed.cli.common import Quiet, errors_to_exit, setup_logging, stderr, stdout
from ofa_embed.errors import OFAEmbedError
from ofa_embed.labelling import DEFAULT_HOST, DEFAULT_PORT, ServeInfo, open_warning


def serve(
    store: Annotated[str, typer.Argument(help="Store directory (from ofa-embed extract).")],
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free one).")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(
        help="Address to listen on. The default is this machine only; any other lets anyone on that network read "
             "the store and write labels.")] = DEFAULT_HOST,
    no_index_build: Annotated[bool, typer.Option(
        "--no-index-build", help="Refuse a store without a fresh index instead of building one.")] = False,
    quiet: Quiet = False,
) -> None:
    """Label a store in the browser: find similar tiles, accept or reject them, train a probe, see its predictions."""
    setup_logging(quiet)
    warning = open_warning(host)
    if warning:
        stderr.print(f"[bold yellow]warning:[/] {warning}", highlight=False)

    def ready(info: ServeInfo) -> None:
        stdout.print(f"serving {store} ({info.tiles:,} tiles) at {info.url}  (Ctrl-C stops; labels are saved as you go)",
                     highlight=False)

    with errors_to_exit():
        try:
            ofa_embed.serve(store, host=host, port=port, build_index=not no_index_build, ready=ready)
        except OFAEmbedError:
            raise
        except OSError as exc:  # the port is taken, or the address is not this machine's
            stderr.print(f"[bold red]error:[/] cannot listen on {host}:{port} ({exc.strerror or exc})", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            stdout.print(f"stopped; the labels are in {store}/_labels/labels.json")
