"""The page at / in a real headless browser (Debian's chromium driven by Playwright): pick a photo,
see the label, the probabilities, the heat map and the activation maps; on a phone-sized screen too.

Slow, and needs `apt-get install chromium` and `pip install playwright`:
    python -m pytest -m slow tests/test_serve_page.py
Set CATDOG_SCREENSHOTS=DIR to keep the screenshots.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import test_serve

# The same run and server fixtures as the API tests.
served_run, server = test_serve.served_run, test_serve.server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium: apt-get install chromium")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.mark.parametrize("viewport", [{"width": 1200, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_pick_a_photo_and_see_label_and_heat_map(browser, server, served_run, viewport, tmp_path):
    photo = sorted(served_run[1].rglob("*.jpg"))[0]
    page = browser.new_page(viewport=viewport)
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('about').textContent.includes('parameters')")
    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.getElementById('result').style.display === 'block'", timeout=60_000)
    label = page.inner_text("#label")
    assert label.split(" ")[0] in ("cats", "dogs")
    assert len(page.query_selector_all("#bars .bar")) == 2
    for image in ("#photo", "#heatmap", "#activations"):
        page.wait_for_function(f"document.querySelector('{image}').complete && "
                               f"document.querySelector('{image}').naturalWidth > 0")
        box = page.query_selector(image).bounding_box()
        assert box["width"] > 50 and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    about, drop = page.query_selector("#about").bounding_box(), page.query_selector("#drop").bounding_box()
    assert about["y"] + about["height"] <= drop["y"]  # the model line is not hidden under the drop zone
    # Nothing wider than the screen: no sideways scrolling on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    out = Path(os.environ.get("CATDOG_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"page-{viewport['width']}.png"), full_page=True)
    page.close()


def test_a_bad_file_shows_the_servers_error(browser, server, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    page = browser.new_page()
    page.goto(server.url + "/")
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
    assert "not an image" in page.inner_text("#error")
    assert not page.is_visible("#result")
    page.close()


def test_without_explain_the_page_shows_label_and_bars(browser, served_run):
    from test_serve import Server

    s = Server(served_run[0], "--no-explain")
    try:
        page = browser.new_page()
        page.goto(s.url + "/")
        page.wait_for_function("document.getElementById('about').textContent.includes('parameters')")
        page.set_input_files("#file", str(sorted(served_run[1].rglob("*.jpg"))[0]))
        page.wait_for_function("document.getElementById('result').style.display === 'block'", timeout=60_000)
        assert page.inner_text("#label").split(" ")[0] in ("cats", "dogs")
        assert len(page.query_selector_all("#bars .bar")) == 2
        assert not page.is_visible(".pictures") and page.inner_text("#error") == ""
        page.close()
    finally:
        s.stop()
