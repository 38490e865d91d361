"""The formats a result table is written in: search hits (``ofa_embed.search``) and SQL results
(``ofa_embed.sql``). The writers are the CLI's (``ofa_embed.cli.output``), which adds ``table``, its own
rendering on the terminal; ``--format`` choices come from here.
"""

from __future__ import annotations

__all__ = ["GEOMETRY_FORMATS", "RESULT_FORMATS", "TABLE_FORMATS"]

# every file format a result table can be written in
RESULT_FORMATS = ("csv", "json", "geojson", "parquet")
# formats that need a geometry column: search hits (a GeoDataFrame) have one, SQL results (plain columns) do not
GEOMETRY_FORMATS = ("geojson",)
# the formats of any table, geometry or not
TABLE_FORMATS = tuple(f for f in RESULT_FORMATS if f not in GEOMETRY_FORMATS)
