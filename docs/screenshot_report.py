"""Screenshot the monitoring report as the Dagster UI shows it (headless Chromium).

Needs a running `dagster dev` with a materialized `<model>/monitoring_report`, Debian's chromium
(`apt-get install chromium`) and playwright in the venv (`pip install playwright`; its own
browser download is not needed). Used to check the report in a real browser:

    .venv/bin/python docs/screenshot_report.py http://127.0.0.1:3000 breast_cancer docs/monitoring_report
"""

import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


def main(base_url: str, model: str, prefix: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base_url}/assets/{model}/monitoring_report", wait_until="networkidle")
        time.sleep(3)
        if page.locator("button:has-text('Skip')").count():  # the first-visit community dialog
            page.locator("button:has-text('Skip')").first.click()
        page.locator("text=Show Markdown").first.click()
        time.sleep(2)
        # The dialog may open scrolled down: start the first picture at the report's top.
        page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop > 0) e.scrollTop = 0; })")
        time.sleep(0.5)
        images = page.locator("img[src^='data:image/svg']")
        sizes = [images.nth(i).evaluate("e => [e.naturalWidth, e.naturalHeight]") for i in range(images.count())]
        print(f"charts rendered (natural width x height): {sizes}")
        page.screenshot(path=f"{prefix}_top.png")
        page.mouse.move(700, 600)
        page.mouse.wheel(0, 1200)
        time.sleep(1)
        page.screenshot(path=f"{prefix}_bottom.png")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
