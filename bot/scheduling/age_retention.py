"""Retention by count and by age (`--keep N`, `--keep-days D`). Pure decisions, no I/O.

Like `retention.select_for_deletion`: only the schedule's own images (tag
`imagebot_schedule_id`), never a protected one (Glance `protected`), and never the newest
*good* image, good meaning ACTIVE and not failed by a restore test (`/image verify`, `--verify`):
whatever the count or the age says, a server keeps one image known to be usable
(shared/reference/scheduling.md: Karbor's retention_protect; qonos 569e42d, prune only after
success).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from bot.scheduling.due import as_utc
from bot.scheduling.retention import RetainableImage


def select_by_count_and_age(images: Sequence[RetainableImage], *, keep: int,
                            keep_days: int | None, schedule_id: str, now: datetime,
                            failed_verify: Collection[str] = ()) -> list[RetainableImage]:
    """The images retention may delete, oldest first.

    Of the schedule's ACTIVE, unprotected images, those beyond the newest `keep` and (with
    `keep_days`) those older than `keep_days` days. The newest good image (ACTIVE, not in
    `failed_verify`) is never selected, and neither is any protected image."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep!r}")
    if keep_days is not None and keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, got {keep_days!r}")
    if not schedule_id:
        raise ValueError("schedule_id is required")

    def created(img: RetainableImage) -> tuple[datetime, str]:
        return as_utc(img.created_at, "created_at"), img.id

    ours = sorted((img for img in images
                   if img.schedule_id == schedule_id and img.status.lower() == "active"),
                  key=created)
    good = [img for img in ours if img.id not in failed_verify]
    newest_good = good[-1].id if good else None
    countable = [img for img in ours if not img.protected]
    doomed = {img.id for img in countable[:-keep]} if len(countable) > keep else set()
    if keep_days is not None:
        cutoff = as_utc(now, "now") - timedelta(days=keep_days)
        doomed |= {img.id for img in countable if created(img)[0] < cutoff}
    doomed.discard(newest_good or "")
    return [img for img in countable if img.id in doomed]


def preview_by_count_and_age(images: Sequence[RetainableImage], *, keep: int,
                             keep_days: int | None, schedule_id: str, now: datetime,
                             failed_verify: Collection[str] = ()) -> list[RetainableImage]:
    """What the next successful run would delete (for approval messages): the new image will
    be the newest good one and counts towards `keep`."""
    ours = [img for img in images if img.schedule_id == schedule_id]
    newest = max((as_utc(img.created_at, "created_at") for img in ours), default=now)
    phantom = RetainableImage(id="\uffff(next run)", status="active",
                              created_at=max(newest, as_utc(now, "now")) + timedelta(seconds=1),
                              schedule_id=schedule_id)
    return [img for img in select_by_count_and_age(
        [*images, phantom], keep=keep, keep_days=keep_days, schedule_id=schedule_id, now=now,
        failed_verify=failed_verify) if img is not phantom]
