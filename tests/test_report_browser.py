"""The README's main job as a researcher sees it: the console, then report.html in a real browser.

Playwright drives Debian's chromium (`apt install chromium`; never a downloaded browser),
installed by .ci/run after the README's own steps with the `browser` extra. Elsewhere
the test skips and says which part is missing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cxrflow.shortcut import VERDICTS
from workflow_helpers import run_snakemake, tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EXPERIMENT = {"arch": "vgg19", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8,
              "checkpoint_every": 1}  # fmt: skip


def _browser():
    """The playwright module, or a skip saying what is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed (apt install chromium; .ci/run does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[browser]'; .ci/run does it)")
    return sync_playwright


def _show(page, category: str, item: str) -> None:
    """As a reader does: back to the result categories, open one, press an item's view (eye) button."""
    crumb = page.get_by_role("navigation").get_by_text("Results", exact=True)
    if crumb.count():
        crumb.first.click()
    page.locator("nav").first.get_by_text(category, exact=True).first.click()
    page.locator("tr", has_text=item).first.locator("a").first.click()


def test_demo_report_shows_the_verdict_and_forest_plot_in_the_page(tmp_path: Path) -> None:
    sync_playwright = _browser()
    cfg = tiny_config(experiments={"tiny_demo": EXPERIMENT})
    proc = run_snakemake(tmp_path, cfg, "--report", "results/report.html", "--report-after-run")
    console = proc.stdout + proc.stderr
    assert "Shell command: None" not in console
    assert "failed call to cuInit" not in console  # this machine has no GPU device node, or the filter is off
    demo_job = console[console.index("rule demo_data:") :]
    output_line = next(line for line in demo_job.splitlines() if line.strip().startswith("output:"))
    assert re.search(r"\.\.\. and \d+ more$", output_line) and len(output_line) < 400

    report = tmp_path / "results" / "report.html"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(report.as_uri())
            first_page = page.inner_text("body")
            assert re.search(r"Data: 24 images \(12 COVID-19, 12 Normal\) from 2 source\(s\)", first_page)
            assert "Experiments: tiny_demo (vgg19" in first_page

            _show(page, "0. Verdict", "verdict table")
            table = page.frame_locator("iframe").first.locator("#verdict")
            text = table.inner_text(timeout=15_000)
            assert "tiny_demo" in text
            assert any(verdict in text for verdict in VERDICTS), text
            assert re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", text), text  # F1 with its interval
            assert re.search(r"(red|amber|green)", text)

            _show(page, "0. Verdict", "forest plot")
            image = page.locator("img[src^='data:image/png']").first
            image.wait_for(timeout=15_000)
            assert image.evaluate("img => img.complete && img.naturalWidth") > 300

            _show(page, "2. Experiments", "classification report")
            report_text = page.frame_locator("iframe").first.locator("pre").inner_text(timeout=15_000)
            assert "precision" in report_text and "COVID-19" in report_text
        finally:
            browser.close()
    assert errors == []
