"""The README's picture of ``ofa-embed serve``: the bundled Sentinel-2 sample labelled and searched in the page.

    python benchmarks/serve_screenshot.py [--out benchmarks/figures]

Extracts the bundled sample with the shipped checkpoint into a temporary store, indexes it, serves it on a free
loopback port and drives Debian's headless Chromium through the DevTools protocol (``benchmarks/devtools.py``)
as a user would: a class named "fields", two tiles of farmland clicked as positives, one of beach and sea as a
negative, "Find similar", the best hit accepted. The page as drawn is saved as ``serve_sample.png``, reduced to
a 96-colour palette so that it stays small enough for git (< 200 KB). Needs chromium on PATH.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ofa_embed  # noqa: E402
from benchmarks.devtools import BROWSER, Browser  # noqa: E402
from ofa_embed.indexes import build  # noqa: E402
from ofa_embed.labelling import Server  # noqa: E402
from ofa_embed.sample import sample_scene  # noqa: E402

# tiles of the sample's 4 x 4 grid, by store position (rows of the store file, Z-order): farmland; beach and sea
POSITIVES, NEGATIVE = (4, 5), 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "figures")
    args = parser.parse_args()
    if BROWSER is None:
        raise SystemExit("no chromium on PATH: install Debian's chromium to draw the page")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ofa-serve-shot-") as tmp:
        store = Path(tmp) / "sample-store"
        ofa_embed.extract(sample_scene(), store)
        build(store)
        server = Server(store, port=0)
        info = server.start()
        try:
            with Browser(1100, 720) as browser:
                browser.navigate(info.url)
                browser.wait_for("document.body.dataset.ready === '1'")
                browser.wait_for("[...ofa.state.images.values()].filter(Boolean).length === 16")
                browser.evaluate("document.getElementById('new-class').value = 'fields'")
                browser.click_element("#add-class")
                browser.wait_for("ofa.state.current === 'fields'")
                for count, position in enumerate(POSITIVES, 1):
                    browser.click(*browser.evaluate(f"ofa.screenOf({position})"))
                    browser.wait_for(f"document.body.dataset.labels === '{count}'")
                browser.click_element("#sign-negative")
                browser.click(*browser.evaluate(f"ofa.screenOf({NEGATIVE})"))
                browser.wait_for("document.body.dataset.labels === '3'")
                browser.click_element("#find")
                browser.wait_for("document.body.dataset.hits")
                browser.click_element("#hits [data-accept='0']")
                browser.wait_for("document.body.dataset.labels === '4'")
                browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=150, y=700)  # no tooltip in the picture
                time.sleep(0.5)
                raw = browser.screenshot(Path(tmp) / "page.png")
        finally:
            server.stop()
        from PIL import Image

        shot = args.out / "serve_sample.png"
        Image.open(raw).convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(shot, optimize=True)
    print(f"{shot}: {shot.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
