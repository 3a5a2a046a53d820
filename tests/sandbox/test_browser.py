"""The web view in headless Chromium: type `/image create web-1`, press Start snapshot, see ✅.

Needs Debian's chromium at /usr/bin/chromium and the `playwright` package (its own browser
downloads are not used); skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from bot.store import Store
from sandbox.console.run import POLICY
from sandbox.system import running_system
from sandbox.web.app import running_web
from tests.e2e.helpers import approval_message, state_is

CHROMIUM = Path(os.environ.get("IMAGEBOT_CHROMIUM", "/usr/bin/chromium"))
# Screenshots to look at after a run (IMAGEBOT_SHOTS, else the temp dir).
SHOTS = Path(os.environ.get("IMAGEBOT_SHOTS", tempfile.gettempdir()))
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
                # Alice pressed Start (the card told her to stop writes): the thread says
                # "writes may resume", then the result; the phases are card edits.
                writes = text.find("Writes may resume now")
                # (The edited card above the thread shows the outcome too.)
                assert 0 <= writes < text.find("✅ Image", writes), text
                assert "Copying the disk now" not in text and "Packaging the image" not in text
                job = await system.runtime.store.run(Store.get_job, "J1")
                assert job.state == "succeeded" and job.confirmed_by == "U0ALICE"

                # Bob does not see Alice's ephemeral answer.
                await page.select_option("#user", "bob")
                await page.wait_for_function(
                    "!document.getElementById('messages').innerText.includes('only visible')")
            finally:
                await browser.close()


async def test_home_tab_and_dms_in_the_web_view() -> None:
    """The Apps entry opens the Home tab (app_home_opened goes to the bot), and the bot's
    published view shows there: the running job with its phase, the change request waiting
    for the user with Approve, which decides it; a DM from the bot has its own entry, read
    only; another user sees neither."""
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="the playwright package is not installed "
                                       "(pip install -e '.[test]')")
    from slack_sdk.web.async_client import AsyncWebClient

    from sandbox.system import BOT_TOKEN

    async with running_system(speed=200, loopback=True, slack_rate_scale=20) as system:
        ws = system.workspace
        ws.bot_scopes.add("im:write")
        slack = AsyncWebClient(token=BOT_TOKEN, base_url=system.slack_url + "/api/")
        # Bob's job stays in its upload; his change request waits for anyone else in #ops.
        system.world.inject("stuck", server="web-1", task_state="image_uploading")
        await system.command("bob", "#ops", "create web-1 --now")
        await system.command("bob", "#ops", "schedule web-2 daily at 03:00")
        await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        await system.wait_for(lambda: state_is(system, "J1", "uploading"), within=15)
        async with running_web(system, port=0) as url, \
                playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                               headless=True)
            try:
                page = await browser.new_page(viewport={"width": 900, "height": 700})
                await page.goto(url)
                messages = page.locator("#messages")
                await page.locator("#apps").get_by_text("imagebot").click()
                await page.locator("#title", has_text="Home").wait_for()
                assert await page.locator("#command-form").is_hidden()
                # The bot's own view, published for Alice on app_home_opened.
                await messages.get_by_text("Running now").wait_for(timeout=10_000)
                assert ws.events and ws.events[-1]["event"]["user"] == "U0ALICE"
                await messages.get_by_text("uploading the image").wait_for(timeout=10_000)
                assert await messages.locator("b", has_text="J1").count() == 1
                await messages.get_by_text("Waiting for your decision").wait_for()
                await page.screenshot(path=str(SHOTS / "home-tab.png"))
                await page.get_by_role("button", name="Approve").click()
                await messages.get_by_text("You approved R1").wait_for(timeout=10_000)
                row = await system.runtime.store.run(Store.get_change_request, "R1")
                assert row.status == "approved" and row.decided_by == "U0ALICE"
                assert await page.get_by_role("button", name="Approve").count() == 0

                dm = (await slack.conversations_open(users="U0ALICE"))["channel"]["id"]
                await slack.chat_postMessage(channel=dm, text="Request R1 waits for you")
                dms = page.locator("#dms")
                await dms.get_by_text("imagebot").click()
                await messages.get_by_text("Request R1 waits for you").wait_for(timeout=10_000)
                assert await page.locator("#command-form").is_hidden()
                await page.screenshot(path=str(SHOTS / "home-and-dm.png"))

                # Bob: no DM in his sidebar; his Home shows his request, decided, no buttons.
                await page.select_option("#user", "bob")
                await messages.get_by_text("waits for you").first.wait_for(state="hidden")
                assert await dms.locator("a").count() == 0
                await page.locator("#apps").get_by_text("imagebot").click()
                await messages.get_by_text("Your change requests").wait_for(timeout=10_000)
                await messages.get_by_text("approved by").wait_for(timeout=10_000)
                assert await page.get_by_role("button", name="Approve").count() == 0
            finally:
                await browser.close()
