"""The ``ofa-embed`` command line: thin Typer commands over the library API."""
