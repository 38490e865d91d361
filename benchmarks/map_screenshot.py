"""The README's map picture: the bundled sample's tiles in principal-component colours with a search over them.

    python benchmarks/map_screenshot.py [--out benchmarks/figures]

Extracts the bundled Sentinel-2 sample with the shipped checkpoint into a temporary store, indexes it,
searches for the tiles most like the one at (-75.612, 37.679), and draws the map with the hits and the
query tile outlined: ``map_sample.html`` (the page), ``map_sample.svg`` (the same view as a static
image: text, so it can live in git, where the brief allows no new binaries) and, when Chromium is on
PATH, ``map_sample_browser.png``, the page as a headless browser draws it (not committed). Prints each
file's size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ofa_embed  # noqa: E402
from ofa_embed.indexes import build  # noqa: E402
from ofa_embed.sample import sample_scene  # noqa: E402

QUERY_POINT = (-75.612, 37.679)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "figures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ofa-map-") as tmp:
        store = Path(tmp) / "sample-store"
        ofa_embed.extract(sample_scene(), store)
        build(store)
        hits = ofa_embed.search(store, like_point=QUERY_POINT, k=5)
        hits_file = Path(tmp) / "hits.parquet"
        hits.to_parquet(hits_file, index=False)
        page = args.out / "map_sample.html"
        report = ofa_embed.map(store, page, hits=hits_file, query=hits["id"].iloc[0], png=args.out / "map_sample.svg",
                               title="bundled Sentinel-2 sample: PCA colours, 5 hits of a search")
    print(f"{report.out}: {report.bytes / 1024:.0f} KiB")
    print(f"{report.image}: {report.image_bytes / 1024:.0f} KiB")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("no chromium on PATH: no browser screenshot")
        return
    shot = args.out / "map_sample_browser.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,700",
                        f"--user-data-dir={profile}", "--virtual-time-budget=5000", f"--screenshot={shot}",
                        page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"{shot}: {shot.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
