"""The web view in headless Chromium: type `/image create web-1`, press Start snapshot, see ✅.

Needs Debian's chromium at /usr/bin/chromium and the `playwright` package (its own browser
downloads are not used); skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bot.store import Store
from sandbox.console.run import POLICY
from sandbox.system import running_system
from sandbox.web.app import running_web

CHROMIUM = Path(os.environ.get("IMAGEBOT_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} not found (apt-get install chromium)"),
]


async def test_create_and_start_snapshot_from_the_web_view() -> None:
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="the playwright package is not installed "
                                       "(pip install -e '.[test]')")
    async with running_system(speed=200, loopback=True, policy_path=POLICY,
                              slack_rate_scale=20) as system:
        # Untrusted text, stored the way Slack stores what a person typed.
        system.workspace.post_message(
            "C0OPS", user="U0CAROL",
            text='&lt;img src=x onerror="document.title=\'pwned\'"&gt; hello')
        async with running_web(system, port=0) as url, \
                playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                               headless=True)
            try:
                page = await browser.new_page()
                await page.goto(url)
                messages = page.locator("#messages")
                await messages.get_by_text("hello").wait_for(timeout=10_000)
                # The markup arrived as text: no element was made from it.
                assert await messages.locator("img").count() == 0
                assert "<img src=x" in await messages.inner_text()
                assert await page.title() == "imagebot sandbox"

                await page.fill("#command", "/image create web-1")
                await page.press("#command", "Enter")
                start = page.get_by_role("button", name="Start snapshot")
                await start.wait_for(timeout=15_000)
                await start.click()
                done = messages.get_by_text(re.compile(r"✅ Image `?web-1-"))
                await done.first.wait_for(timeout=30_000)

                text = await messages.inner_text()
                # Always said, in this order (the packaging and uploading replies only for a
                # phase the engine saw: tests/e2e/helpers.py PHASES).
                copy, writes = text.find("Copying the disk now"), text.find(
                    "Writes may resume now")
                assert 0 <= copy < writes < text.find("✅ Image"), text
                job = await system.runtime.store.run(Store.get_job, "J1")
                assert job.state == "succeeded" and job.confirmed_by == "U0ALICE"

                # Bob does not see Alice's ephemeral answer.
                await page.select_option("#user", "bob")
                await page.wait_for_function(
                    "!document.getElementById('messages').innerText.includes('only visible')")
            finally:
                await browser.close()
