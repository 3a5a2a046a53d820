"""The notifier's DM copies (`bot.slack.direct.post_copy`) through the real Slack edge against
the emulator: conversations.open first, the DM channel kept on the copy's row, a transient
failure retried without a second post, a request decided before its copy went not sent, a user
Slack cannot DM dropped once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import SlackUnavailable
from bot.slack.notifier import Notifier
from bot.slack.pacing import SlackPacer
from bot.slack.web import SlackWeb, make_web_client
from bot.store import AsyncStore, OutboxItem, RequestPlan, Store
from bot.vocabulary import OutboxKind, RequestStatus
from sandbox.slack.model import ApiFault, SlackWorkspace
from sandbox.slack.serve import running_slack
from tests.helpers import Clock

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
TOKEN = "xoxb-sandbox"
CARD = {"text": "Schedule change R1 for `web-1` waits for approval (in <#C0OPS>)",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "R1"}}]}


@pytest.fixture
async def slack() -> AsyncIterator[tuple[SlackWorkspace, str]]:
    ws = SlackWorkspace()
    ws.limits.enabled = False
    async with running_slack(ws, bot_token=TOKEN) as url:
        yield ws, url


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def rig(tmp_path: Path, slack: tuple[SlackWorkspace, str],
              clock: Clock) -> AsyncIterator[tuple[SlackWorkspace, AsyncStore, Notifier]]:
    ws, url = slack
    store = await AsyncStore.open(tmp_path / "n.db", clock=clock)

    async def no_sleep(_: float) -> None:
        return None

    web = SlackWeb(make_web_client(TOKEN, url + "/api/", rate_limit_retries=0))
    notifier = Notifier(store, web, clock=clock, sleep=no_sleep, pacer=SlackPacer(scale=1000))
    yield ws, store, notifier
    await store.close()


async def request_with_copies(store: AsyncStore, users: list[str]) -> str:
    def build(request_id: str) -> RequestPlan:
        return RequestPlan(
            values={"kind": "off", "server_id": "srv-1", "server_ref": "web-1",
                    "requested_by": "U0ALICE", "channel": "C0OPS",
                    "expires_at": START + timedelta(hours=24),
                    "status": RequestStatus.PENDING},
            copies=users,
            outbox=[OutboxItem(kind=OutboxKind.DM_COPY, channel=u,
                               thread_key=f"{request_id}:dm:{u}",
                               payload={"request_id": request_id, "user": u, **CARD})
                    for u in users])
    return (await store.run(Store.add_change_request, build)).id


async def drain(notifier: Notifier, clock: Clock, store: AsyncStore) -> None:
    for _ in range(8):
        await notifier.flush()
        if await store.run(Store.outbox_depth) == 0:
            return
        clock.now += timedelta(minutes=10)  # past any back-off


async def test_the_dm_is_opened_then_the_copy_posted_and_recorded(
        rig: tuple[SlackWorkspace, AsyncStore, Notifier], clock: Clock) -> None:
    ws, store, notifier = rig
    await request_with_copies(store, ["U0BOB", "U0CAROL"])
    await drain(notifier, clock, store)
    for user, dm in (("U0BOB", "D0BOB"), ("U0CAROL", "D0CAROL")):
        [message] = ws.channel_messages(dm)
        assert message.text == CARD["text"]
        copy = await store.run(Store.request_copy, "R1", user)
        assert copy is not None and copy.dm_channel == dm and copy.ts == message.ts
        assert copy.shown_status == "pending"
    assert [c.params["users"] for c in ws.calls("conversations.open")] == ["U0BOB", "U0CAROL"]


async def test_an_unreadable_answer_is_looked_up_before_the_retry(
        rig: tuple[SlackWorkspace, AsyncStore, Notifier], clock: Clock) -> None:
    """A non-JSON answer may hide a post that went through: the retry reads the DM's history
    for the item's metadata first (here the post had not happened: it goes once). The found
    case is tests/e2e/test_direct_approvals.py's crash test."""
    ws, store, notifier = rig
    await request_with_copies(store, ["U0BOB"])
    ws.add_fault(ApiFault("chat.postMessage", "internal_error", body="html"))
    await drain(notifier, clock, store)
    assert len(ws.channel_messages("D0BOB")) == 1
    assert [c.params["channel"] for c in ws.calls("conversations.history")] == ["D0BOB"]
    opened = ws.calls("conversations.open")
    assert len(opened) == 1  # the DM channel was kept on the row, not asked again


async def test_a_request_decided_before_its_copy_went_is_not_sent(
        rig: tuple[SlackWorkspace, AsyncStore, Notifier], clock: Clock) -> None:
    ws, store, notifier = rig
    await request_with_copies(store, ["U0BOB"])
    await store.run(Store.update_change_request, "R1", expected=RequestStatus.PENDING,
                    fields={"status": RequestStatus.REJECTED, "decided_by": "U0ALICE",
                            "decided_at": START})
    await drain(notifier, clock, store)
    assert "D0BOB" not in ws.channels and ws.calls("conversations.open") == []
    copy = await store.run(Store.request_copy, "R1", "U0BOB")
    assert copy is not None and not copy.posted


async def test_a_user_slack_cannot_dm_is_dropped_once(
        rig: tuple[SlackWorkspace, AsyncStore, Notifier], clock: Clock) -> None:
    ws, store, notifier = rig
    await request_with_copies(store, ["U0NOBODY", "U0BOB"])
    await drain(notifier, clock, store)
    assert [c.error for c in ws.calls("conversations.open")
            if c.params.get("users") == "U0NOBODY"] == ["user_not_found"]
    assert len(ws.channel_messages("D0BOB")) == 1  # the others' copies are not held back
    assert await store.run(Store.outbox_depth) == 0


async def test_decided_after_a_post_whose_answer_was_lost(
        rig: tuple[SlackWorkspace, AsyncStore, Notifier], clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob's copy reached Slack but the answer did not reach us; then the request was decided.
    The copy is not posted again, but found and recorded (so the loop rewrites it); Carol's,
    never attempted, is not sent at all."""
    ws, store, notifier = rig
    await request_with_copies(store, ["U0BOB", "U0CAROL"])
    real_post = notifier.web.post
    calls: list[str] = []

    async def post_then_lose(channel: str, text: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(channel)
        await real_post(channel, text, *args, **kwargs)
        raise SlackUnavailable("answer lost", retry_after=60, answered=False)

    monkeypatch.setattr(notifier.web, "post", post_then_lose)
    # Bob's item is tried alone first.
    [bob_item, carol_item] = await store.run(Store.pending_outbox, START)
    await notifier._send(bob_item)
    assert calls == ["D0BOB"] and len(ws.channel_messages("D0BOB")) == 1
    await store.run(Store.update_change_request, "R1", expected=RequestStatus.PENDING,
                    fields={"status": RequestStatus.APPROVED, "decided_by": "U0CAROL",
                            "decided_at": START})
    version = (await store.run(Store.get_change_request, "R1")).message_dirty
    assert await store.run(Store.mark_request_clean, "R1", version)  # the loop ran meanwhile
    monkeypatch.undo()
    await drain(notifier, clock, store)
    assert len(ws.channel_messages("D0BOB")) == 1 and "D0CAROL" not in ws.channels
    bob = await store.run(Store.request_copy, "R1", "U0BOB")
    assert bob is not None and bob.ts == ws.channel_messages("D0BOB")[0].ts
    assert [r.id for r in await store.run(Store.dirty_requests)] == ["R1"]  # to be rewritten
    assert carol_item.thread_key == "R1:dm:U0CAROL"
