"""The serve page in Debian's headless Chromium, driven through the DevTools protocol: it loads the tiles and their
imagery, clicks on tiles label them on the server, "Find similar" draws ranked hits, accepting one labels it.
"""

from __future__ import annotations

import pytest

from benchmarks.devtools import BROWSER, Browser
from ofa_embed.labelling.labelbook import LabelBook

pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="SKIPPED LOUDLY: no chromium on PATH, so the serve page's browser test cannot run; install "
                            "Debian's chromium (apt-get install chromium), as CI does")

# yellow hit outlines on the canvas: how many pixels of #ffd400 the page has drawn
HIT_PIXELS = """(() => { const c = document.getElementById('map');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i + 1] === 212 && d[i + 2] === 0) n++; return n; })()"""


def test_label_find_similar_and_accept_in_the_browser(sample_store, served, tmp_path):
    client = served(sample_store)
    with Browser(width=1280, height=800) as browser:
        browser.navigate(client.url)
        browser.wait_for("document.body.dataset.ready === '1'", timeout=60)
        assert browser.evaluate("document.body.dataset.drawn") == "16"
        # zoomed to fit, tiles are large: their quicklooks are fetched and drawn over the embedding colours
        browser.wait_for("[...ofa.state.images.values()].filter(Boolean).length === 16", timeout=60)
        first, second, third = (browser.evaluate(f"ofa.screenOf({i})") for i in (3, 12, 6))
        browser.click(*first)
        browser.wait_for("document.body.dataset.labels === '1'")
        browser.click_element("#sign-negative")
        browser.click(*second)
        browser.wait_for("document.body.dataset.labels === '2'")
        browser.click_element("#sign-positive")
        browser.click(*third)
        browser.wait_for("document.body.dataset.labels === '3'")
        labels = client.get("/api/labels")
        ids = browser.evaluate("[3, 12, 6].map(ofa.idOf)")
        assert [(e["id"], e["class"], e["positive"]) for e in labels["labels"]] == [
            (ids[0], "class 1", True), (ids[1], "class 1", False), (ids[2], "class 1", True)]
        assert browser.evaluate(HIT_PIXELS) == 0
        browser.click_element("#find")
        hits = int(browser.wait_for("document.body.dataset.hits"))
        assert hits == 13  # every other tile, ranked, the labelled ones left out
        assert browser.evaluate("document.querySelectorAll('#hits .hit').length") == 13
        browser.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        assert browser.evaluate(HIT_PIXELS) > 500  # the hits are outlined on the map
        top = browser.evaluate("ofa.state.hits[0].id")
        browser.click_element("#hits [data-accept='0']")
        browser.wait_for("document.body.dataset.labels === '4'")
        browser.screenshot(tmp_path / "page.png")
    book = LabelBook(sample_store)
    assert book.labels[top]["positive"] is True and len(book.labels) == 4
    assert (tmp_path / "page.png").stat().st_size > 10_000
