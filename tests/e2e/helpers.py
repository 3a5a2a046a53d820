"""What the end-to-end tests read off a running `System` (sandbox/system.py), in one place.

Every helper reads the emulators' or the store's state; none changes it."""

from __future__ import annotations

from pathlib import Path

from bot.store import Store
from sandbox.cloud.model import Image
from sandbox.slack.model import Message
from sandbox.system import System

OPS = "C0OPS"  # #ops in the seeded workspace: alice, bob, carol and the bot


def parents(system: System, channel: str = OPS) -> list[Message]:
    """The channel's top-level messages (a job's card, a change request), oldest first."""
    return [m for m in system.workspace.channel_messages(channel) if not m.thread_ts]


def thread_texts(system: System, parent_ts: str, channel: str = OPS) -> list[str]:
    """The texts of a thread's replies, oldest first."""
    return [m.text or "" for m in system.workspace.thread(channel, parent_ts)]


def images_of_job(system: System, job_id: str) -> list[Image]:
    """The cloud's images that carry the job's id (what the bot tags its snapshots with)."""
    return [i for i in system.world.images.values()
            if i.properties.get("imagebot_job_id") == job_id]


async def state_is(system: System, job_id: str, state: str) -> bool:
    """Whether the store holds the job in `state` (for `system.wait_for`)."""
    return (await system.runtime.store.run(Store.get_job, job_id)).state == state


def approval_message(system: System, request_id: str, channel: str = OPS) -> Message | None:
    """The channel message asking to approve change request `request_id`, if posted."""
    for message in system.workspace.channel_messages(channel):
        if f"Schedule change {request_id} " in (message.text or ""):
            return message
    return None


def policy_file(tmp_path: Path, text: str) -> Path:
    """An `imagebot.toml` policy with `text`, for `running_system(policy_path=...)`."""
    path = tmp_path / "imagebot.toml"
    path.write_text(text)
    return path


# A job thread's replies, in the order they must come: only what a person must or may act on
# (issue #17). The disk copy is said for a job nobody started with Start snapshot (whoever
# pressed it read "stop writes" on the card) whose card was first posted before the copy
# began (a card first posted later shows the copy itself); "writes may resume" and the result
# always. Packaging and uploading are card edits, never replies.
PHASES = ("Copying the disk", "Writes may resume", ":white_check_mark:")


def phase_order(replies: list[str]) -> list[int]:
    """The index in PHASES of each reply (a reply that is none of them fails the lookup)."""
    return [next(i for i, p in enumerate(PHASES) if p in r) for r in replies]


async def assert_thread_follows_the_job(system: System, job_id: str,
                                        replies: list[str]) -> None:
    """The thread says each message a person acts on once, in order, and nothing else."""
    events = [event.event for event in
              await system.runtime.store.run(Store.job_events, job_id)]
    on_card = await system.runtime.store.run(_copy_shown_on_card, job_id)
    expected = [*([] if "confirmed" in events or on_card else [0]), 1, 2]
    assert phase_order(replies) == expected, (replies, events, on_card)


def _copy_shown_on_card(store: Store, job_id: str) -> bool:
    """The job's "copying now" reply was closed unsent: its card's first post showed the
    copy under way (`Store.card_posted`)."""
    return store.db.execute("SELECT 1 FROM outbox WHERE job_id = ? AND error = "
                            "'shown on the card'", [job_id]).fetchone() is not None
