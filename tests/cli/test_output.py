"""Result formats: the CLI's choices come from the library's lists."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from ofa_embed.cli.main import app
from ofa_embed.cli.output import FORMATS, SQL_FORMATS, render
from ofa_embed.formats import GEOMETRY_FORMATS, RESULT_FORMATS, TABLE_FORMATS


def test_format_choices_are_the_library_lists_plus_the_terminal_table():
    assert FORMATS == ("table", *RESULT_FORMATS) and SQL_FORMATS == ("table", *TABLE_FORMATS)
    assert set(TABLE_FORMATS) | set(GEOMETRY_FORMATS) == set(RESULT_FORMATS) and "geojson" not in SQL_FORMATS
    with pytest.raises(ValueError, match="choose one of csv, json, geojson, parquet"):
        render(pd.DataFrame({"a": [1]}), "table")


def test_sql_refuses_a_format_that_needs_geometry_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["sql", str(tmp_path), "SELECT 1", "--format", "geojson"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "choose one of table, csv, json, parquet" in " ".join(result.output.split())
