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
                # Always said, in this order (the packaging and uploading replies only for a
                # phase the engine saw: tests/e2e/helpers.py PHASES).
                copy = text.find("Copying the disk now")
                writes = text.find("Writes may resume now", copy)
                assert copy >= 0 and writes > copy, text
                assert text.find("✅ Image", writes) > writes, text  # the reply, after the card
                job = await system.runtime.store.run(Store.get_job, "J1")
                assert job.state == "succeeded" and job.confirmed_by == "U0ALICE"

                # Bob does not see Alice's ephemeral answer.
                await page.select_option("#user", "bob")
                # (locator waits, not wait_for_function: polling a string predicate needs eval,
                # which the page's Content-Security-Policy refuses)
                await messages.get_by_text("only visible").first.wait_for(state="hidden")
            finally:
                await browser.close()


async def test_home_tab_and_dms_in_the_web_view() -> None:
    """The Apps entry opens the Home tab (app_home_opened goes to the bot); what is published
    for the user shows there with working buttons; a DM from the bot has its own entry, read
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
        async with running_web(system, port=0) as url, \
                playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                               headless=True)
            try:
                page = await browser.new_page(viewport={"width": 900, "height": 700})
                await page.goto(url)
                messages = page.locator("#messages")
                await page.locator("#apps").get_by_text("imagebot").click()
                await messages.get_by_text("has not published a Home tab").wait_for(
                    timeout=10_000)
                await page.locator("#title", has_text="Home").wait_for()
                assert await page.locator("#command-form").is_hidden()
                assert ws.events and ws.events[-1]["event"]["user"] == "U0ALICE"

                await slack.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "Running now"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "*J7* web-1"}},
                    {"type": "actions", "elements": [
                        {"type": "button", "action_id": "approve", "value": "R1",
                         "text": {"type": "plain_text", "text": "Approve"}}]}]})
                await messages.get_by_text("Running now").wait_for(timeout=10_000)
                assert await messages.locator("b", has_text="J7").count() == 1
                await page.screenshot(path=str(SHOTS / "home-tab.png"))
                before = len(system.deliverer.deliveries)
                await page.get_by_role("button", name="Approve").click()
                await system.wait_for(lambda: len(system.deliverer.deliveries) > before,
                                      within=10)
                assert system.deliverer.last.kind == "block_actions"

                dm = (await slack.conversations_open(users="U0ALICE"))["channel"]["id"]
                await slack.chat_postMessage(channel=dm, text="Request R1 waits for you")
                dms = page.locator("#dms")
                await dms.get_by_text("imagebot").click()
                await messages.get_by_text("Request R1 waits for you").wait_for(timeout=10_000)
                assert await page.locator("#command-form").is_hidden()
                await page.screenshot(path=str(SHOTS / "home-and-dm.png"))

                # Bob: no Home tab published for him, no DM in his sidebar.
                await page.select_option("#user", "bob")
                await messages.get_by_text("waits for you").first.wait_for(state="hidden")
                assert await dms.locator("a").count() == 0
                await page.locator("#apps").get_by_text("imagebot").click()
                await messages.get_by_text("has not published a Home tab").wait_for(
                    timeout=10_000)
            finally:
                await browser.close()


async def test_mrkdwn_newest_message_and_a_420px_window() -> None:
    """At a phone's 420 px: Slack's mrkdwn as Slack shows it (`*bold*` around `` `code` ``,
    no italics from underscores inside words, `>` quotes; docs.slack.dev/messaging/
    formatting-message-text), a channel opened at its newest message, no sideways scrolling,
    and the command box still works."""
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="the playwright package is not installed "
                                       "(pip install -e '.[test]')")
    async with running_system(speed=200, loopback=True, policy_path=POLICY,
                              slack_rate_scale=20) as system:
        ws = system.workspace
        for n in range(40):  # enough to scroll #ops-alerts
            ws.post_message("C0ALERTS", text=f"older message {n}")
        ws.post_message("C0ALERTS", text="*State:* :x: *failed in `image_uploading`* "
                        "on web_1 server_name\n> Stuck in image_uploading\n> past the deadline"
                        "\nafter the quote _italic_ ~gone~\n```raw *not bold*```")
        async with running_web(system, port=0) as url, \
                playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                               headless=True)
            try:
                page = await browser.new_page(viewport={"width": 420, "height": 740})
                await page.goto(url)
                messages = page.locator("#messages")
                await page.locator("#channels").get_by_text("ops-alerts").click()
                last = messages.locator(".msg").last
                await last.get_by_text("after the quote").wait_for(timeout=10_000)

                bold = last.locator(".block b")  # not the author in the head
                assert await bold.count() == 2
                assert await bold.nth(1).locator("code").inner_text() == "image_uploading"
                assert await last.locator("i").all_inner_texts() == ["italic"]  # not web_1's
                assert "web_1 server_name" in await last.inner_text()
                assert await last.locator("s").all_inner_texts() == ["gone"]
                quote = last.locator("blockquote")
                assert await quote.count() == 1
                assert await quote.inner_text() == "Stuck in image_uploading\npast the deadline"
                assert await last.locator("pre").inner_text() == "raw *not bold*"

                # Opened at its newest message, and nothing wider than the window.
                at_bottom = await page.evaluate(
                    "(() => { const b = document.getElementById('messages');"
                    " return b.scrollHeight - b.scrollTop - b.clientHeight < 2; })()")
                assert at_bottom
                assert await page.evaluate("document.documentElement.scrollWidth") <= 420
                box = await page.locator("#command").bounding_box()
                assert box is not None and box["width"] > 200
                assert box["x"] >= 0 and box["x"] + box["width"] <= 420
                assert box["y"] + box["height"] <= 740
                await page.screenshot(path=str(SHOTS / "narrow-420.png"))

                await page.locator("#channels a").first.click()  # #ops
                await page.fill("#command", "/image help")
                await page.press("#command", "Enter")
                await messages.get_by_text("only visible to you").first.wait_for(timeout=15_000)
                assert await page.evaluate("document.documentElement.scrollWidth") <= 420
            finally:
                await browser.close()
