"""Issue 17, message design: a card whose first post goes out after the copy started says so
itself ("copying the disk (keep writes stopped)"), so the separate "Copying the disk now"
reply is closed without a call; a card first posted after the copy ended shows "writes may
resume" and that reply, never dropped, goes next in its thread. The crash rules hold: no
post repeated, order kept, and a card whose first attempt's outcome is unknown keeps the
reply (what that attempt showed is not known)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.errors import SlackUnavailable
from bot.imaging import jobs
from bot.imaging import messages as render
from bot.slack.notifier import Notifier
from bot.slack.pacing import SlackPacer
from bot.store import AsyncStore, OutboxItem, Store
from tests.bot.test_notifier import NOW, FakeWeb, make

COPYING = ":camera: Copying the disk now — keep writes stopped."
RESUME = ":unlock: The disk is copied. Writes may resume now."


def to_thread(job_id: str, text: str, **flags: Any) -> OutboxItem:
    return OutboxItem(kind="reply", channel="C0OPS", job_id=job_id, thread_key=job_id,
                      payload={"text": text, **flags})


async def job_at(store: AsyncStore, phase: str, server: str = "web-1") -> str:
    """A `--now` job whose card is still unposted, moved to `phase` with the replies the
    engine writes on the way (the copying reply marked `on_card`, as the engine does)."""
    job, _ = await store.run(Store.create_job, server_ref=server, requested_by="U0ALICE",
                             channel="C0OPS", state=jobs.QUEUED,
                             outbox=[OutboxItem(kind="post_parent", channel="C0OPS")])
    if phase == jobs.QUEUED:
        await store.run(Store.update_job, job.id, fields={}, outbox=[
            to_thread(job.id, COPYING, on_card="copy")])  # (a card posted before the copy)
        return job.id
    await store.run(Store.transition, job.id, expected=jobs.QUEUED, target=jobs.SUBMITTING,
                    event="submitting")
    await store.run(Store.transition, job.id, expected=jobs.SUBMITTING,
                    target=jobs.SNAPSHOTTING, event="image_created",
                    fields={"snapshot_started_at": NOW, "image_id": "img-1"},
                    outbox=[to_thread(job.id, COPYING, on_card="copy")])
    if phase == jobs.PENDING_UPLOAD:
        await store.run(Store.transition, job.id, expected=jobs.SNAPSHOTTING,
                        target=jobs.PENDING_UPLOAD, event="phase:pending_upload",
                        fields={"snapshot_ended_at": NOW + timedelta(seconds=30)},
                        outbox=[to_thread(job.id, RESUME, must_reach=True)])
    return job.id


def texts(web: FakeWeb) -> list[str]:
    return [text for _, _, text in web.calls]


async def closed_unsent(store: AsyncStore) -> list[tuple[int, str]]:
    def read(s: Store) -> list[tuple[int, str]]:
        return [(int(r[0]), str(r[1])) for r in s.db.execute(
            "SELECT id, error FROM outbox WHERE error = 'shown on the card'").fetchall()]
    return await store.run(read)


async def test_a_card_first_posted_during_the_copy_says_so_and_no_copying_reply_goes(
        tmp_path: Path) -> None:
    web = FakeWeb()
    store, notifier = await make(tmp_path, web)
    try:
        job_id = await job_at(store, jobs.SNAPSHOTTING)
        assert await notifier.flush() == 1
        assert len(web.calls) == 1 and "copying the disk" in texts(web)[0]  # the card alone
        card = render.parent_message(await store.run(Store.get_job, job_id), NOW)
        assert "keep writes stopped" in str(card["blocks"])
        assert len(await closed_unsent(store)) == 1
        assert await store.run(Store.outbox_depth) == 0
    finally:
        await store.close()


async def test_a_card_first_posted_before_the_copy_keeps_the_copying_reply(
        tmp_path: Path) -> None:
    web = FakeWeb()
    store, notifier = await make(tmp_path, web)
    try:
        await job_at(store, jobs.QUEUED)
        assert await notifier.flush() == 2
        assert texts(web)[1] == COPYING
        assert await closed_unsent(store) == []
    finally:
        await store.close()


async def test_a_card_first_posted_after_the_copy_ended_is_followed_by_writes_may_resume(
        tmp_path: Path) -> None:
    web = FakeWeb()
    store, notifier = await make(tmp_path, web)
    try:
        other = await job_at(store, jobs.QUEUED, server="web-0")  # older, not urgent
        late = await job_at(store, jobs.PENDING_UPLOAD)
        assert await notifier.flush() == 4
        sent = texts(web)
        # Urgent first: the late job's card, then at once its "writes may resume" (the
        # copying reply is closed: its card already showed the copy, and more).
        assert f"job {late}" in sent[0] and sent[1] == RESUME
        card = render.parent_message(await store.run(Store.get_job, late), NOW)
        assert "(writes may resume)" in str(card["blocks"])
        assert f"job {other}" in sent[2] and sent[3] == COPYING
        assert sent.count(COPYING) == 1
    finally:
        await store.close()


async def test_a_crash_between_the_card_and_its_reply_repeats_nothing(tmp_path: Path) -> None:
    # The card went and was recorded (the copying reply closed with it in one transaction);
    # "writes may resume" reached Slack but the bot died before recording it.
    web = FakeWeb(fail={2: SlackUnavailable("connection reset")})
    store, notifier = await make(tmp_path, web)
    try:
        await job_at(store, jobs.PENDING_UPLOAD)
        assert await notifier.flush() == 1
        restarted = Notifier(store, web, clock=lambda: NOW + timedelta(minutes=5),
                             sleep=notifier.sleep, pacer=SlackPacer(scale=1000))  # type: ignore[arg-type]
        assert await restarted.flush() == 1  # found, not posted again
        sent = texts(web)
        assert len(sent) == 2 and sent.count(RESUME) == 1 and COPYING not in sent
        assert web.lookups == 1
        assert await store.run(Store.outbox_depth) == 0
    finally:
        await store.close()


async def test_a_card_whose_first_attempt_is_unknown_keeps_the_copying_reply(
        tmp_path: Path) -> None:
    # The card reached Slack, its answer was lost: what it showed is not known for sure, so
    # the copying reply still goes (once), after the card (found, not posted again).
    web = FakeWeb(fail={1: SlackUnavailable("connection reset")})
    store, notifier = await make(tmp_path, web)
    try:
        await job_at(store, jobs.SNAPSHOTTING)
        assert await notifier.flush() == 0
        notifier.clock = lambda: NOW + timedelta(minutes=5)
        assert await notifier.flush() == 2
        sent = texts(web)
        assert len(sent) == 2 and sent[1] == COPYING and web.lookups == 1
        assert await closed_unsent(store) == []
    finally:
        await store.close()
