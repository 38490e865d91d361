"""What importing costs: the CLI loads no heavy library, and no module changes process state on import."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "faiss", "sklearn", "pandas", "geopandas", "rasterio", "pyarrow", "duckdb", "timm", "torchvision")


def _after_import(code: str) -> dict:
    probe = code + "\nimport json, os, sys\nprint(json.dumps({'modules': sorted(sys.modules), " \
        "'gdal_cachemax': os.environ.get('GDAL_CACHEMAX')}))"
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_cli_imports_no_heavy_library_until_a_command_needs_it():
    loaded = set(_after_import("import ofa_embed.cli.main")["modules"])
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.slow
def test_importing_the_library_leaves_gdal_and_matplotlib_alone():
    state = _after_import(
        "import ofa_embed.raster.scene, ofa_embed.downstream, ofa_embed.downstream.plots, ofa_embed.embedding.extract\n"
        "import matplotlib\nassert matplotlib.rcParams._get('backend') is matplotlib.rcsetup._auto_backend_sentinel"
    )
    assert state["gdal_cachemax"] is None
    assert "matplotlib.pyplot" not in state["modules"]


@pytest.mark.slow
def test_extracting_writes_the_store_without_importing_pandas(tmp_path):
    """pyarrow's pa.array() imports pandas (0.47 s of the CLI's start-up); the writer builds columns from buffers."""
    state = _after_import(
        f"import ofa_embed\nfrom ofa_embed.sample import sample_scene\n"
        f"ofa_embed.extract(sample_scene(), {str(tmp_path / 'store')!r}, model='ofa_test', tile_size=128)"
    )
    assert "pandas" not in state["modules"]
