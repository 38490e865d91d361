"""The README's quoted outputs against a fresh run of the commands it shows (``benchmarks/readme_examples.py``).

The sample example runs the installed ``ofa-embed`` on the bundled sample (a few seconds); examples on
fetched data run only where that data is present. A failure means the README is stale: regenerate it
with ``python benchmarks/readme_examples.py``.
"""

from __future__ import annotations

import difflib

import pytest

from benchmarks import readme_examples as examples

QUOTED = examples.readme_blocks(examples.README.read_text())


def _assert_quoted_equals_fresh(name: str, fresh: str) -> None:
    quoted = QUOTED[name]
    diff = "\n".join(difflib.unified_diff(quoted.splitlines(), fresh.splitlines(), "README.md", "fresh run",
                                          lineterm=""))
    assert examples.same_to_printed_precision(quoted, fresh), (
        f"README.md's {name!r} example is stale; run python benchmarks/readme_examples.py\n{diff}")


def test_every_example_has_its_markers_in_the_readme_and_no_marker_is_unknown():
    assert set(QUOTED) == set(examples.EXAMPLES)


def test_readme_sample_example_equals_a_fresh_run(tmp_path):
    fresh = examples.run_example(examples.SAMPLE, tmp_path)
    for command in examples.SAMPLE.commands:
        assert examples.command_text(command) in QUOTED["sample"]  # the commands shown are the ones run
    _assert_quoted_equals_fresh("sample", fresh)


@pytest.mark.slow
@pytest.mark.skipif(bool(examples.missing(examples.PROBE)),
                    reason=f"needs the fetched Landsat scene and labels: {examples.PROBE.setup}")
def test_readme_probe_example_equals_a_fresh_run(tmp_path):
    _assert_quoted_equals_fresh("probe-landsat", examples.run_example(examples.PROBE, tmp_path))


def test_a_changed_figure_is_stale_and_a_last_digit_rounded_the_other_way_is_not():
    block = "│    2 │ 8a2fa4b5b6fc9810 │     0.9630 │ -75.61196 │\n│ 8a2fa4b5b6fc9810 │ 0.963029 │\n"
    assert examples.same_to_printed_precision(block, block.replace("│\n", "│   \n"))
    assert not examples.same_to_printed_precision(block, block.replace(" 0.9630 ", " 0.9945 "))
    assert not examples.same_to_printed_precision(block, block.replace("0.963029", "0.963"))
    assert not examples.same_to_printed_precision(block, block.replace("8a2fa4b5b6fc9810", "f086f9622e9158bc"))
    assert examples.same_to_printed_precision(block, block.replace(" 0.9630 ", " 0.9631 "))
    assert not examples.same_to_printed_precision(block, block.replace(" 0.9630 ", " 0.9632 "))


def test_commands_are_shown_as_the_shell_reads_them_back():
    import shlex

    sql = examples.SAMPLE.commands[-1]
    assert shlex.split(examples.command_text(sql)[2:]) == list(sql)
    assert examples.shell_text("it's $HOME") == "'it'\"'\"'s $HOME'"


def test_blocks_are_replaced_between_their_markers_only():
    text = "a\n<!-- example:x -->\n```text\nold\n```\n<!-- /example:x -->\nb\n"
    new = examples.replace_blocks(text, {"x": "```text\nnew\n```\n"})
    assert new == text.replace("old", "new")
    assert examples.readme_blocks(new) == {"x": "```text\nnew\n```\n"}
