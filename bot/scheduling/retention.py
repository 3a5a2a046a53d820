"""Retention: which of a server's images a schedule may delete. Pure decisions, no I/O.

Only the schedule's own ACTIVE, unprotected images count (tagged `imagebot_schedule_id`), sorted
by `created_at` (never by name), and only after a successful run; the newest `keep` stay
(shared/reference/scheduling.md: qonos 8888ca0, pterodactyl#2800, Karbor's retention_protect).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.cloud.models import Image
from bot.scheduling.due import as_utc


@dataclass(frozen=True, slots=True)
class RetainableImage:
    """What retention needs to know about one image."""

    id: str
    status: str  # Glance status, lower case ("active", "saving", "killed", ...)
    created_at: datetime  # aware
    protected: bool = False
    schedule_id: str | None = None  # image metadata imagebot_schedule_id
    name: str = ""


_GLANCE_TIME = re.compile(r"Z$")


def retainable_from_image(image: Image) -> RetainableImage | None:
    """Adapt a cloud `Image`; None when its created_at cannot be parsed.

    An image whose age is unknown is never a deletion candidate, so dropping it is the safe side.
    """
    try:
        when = datetime.fromisoformat(_GLANCE_TIME.sub("+00:00", image.created_at or ""))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    schedule_id = image.properties.get("imagebot_schedule_id")
    return RetainableImage(
        id=image.id, status=image.status.lower(), created_at=when, protected=image.protected,
        schedule_id=str(schedule_id) if schedule_id else None, name=image.name)


def select_for_deletion(images: Sequence[RetainableImage], keep: int,
                        schedule_id: str) -> list[RetainableImage]:
    """The images retention may delete, oldest first.

    Counts only ACTIVE, unprotected images made by `schedule_id`; protected (pinned) images,
    other schedules' images, manual images and images that are not active are never counted and
    never selected. Ordered by `created_at` (never by name), the newest `keep` are kept, so the
    newest image is never selected. Call it only after a successful run.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep!r}")
    if not schedule_id:
        raise ValueError("schedule_id is required")
    ours = [img for img in images
            if img.schedule_id == schedule_id and img.status.lower() == "active"
            and not img.protected]
    ours.sort(key=lambda img: (as_utc(img.created_at, "created_at"), img.id))
    return ours[:-keep] if len(ours) > keep else []


def would_delete_at_next_success(images: Sequence[RetainableImage], keep: int,
                                 schedule_id: str) -> list[RetainableImage]:
    """What the next successful run would prune with retention `keep` (for approval messages).

    The new image will be the newest and count towards `keep`, so among today's images only
    `keep - 1` survive.
    """
    if not images:
        return []
    newest = max(as_utc(img.created_at, "created_at") for img in images)
    phantom = RetainableImage(id="\uffff(next run)", status="active",
                              created_at=newest + timedelta(seconds=1), schedule_id=schedule_id)
    return [img for img in select_for_deletion([*images, phantom], keep, schedule_id)
            if img is not phantom]


def kept_because_protected(images: Sequence[RetainableImage],
                           schedule_id: str) -> list[RetainableImage]:
    """The schedule's own ACTIVE images that retention would count were they not protected
    (Glance `protected`): never counted, never deleted; the approval message lists them as kept
    because protected. Oldest first."""
    kept = [img for img in images
            if img.schedule_id == schedule_id and img.status.lower() == "active"
            and img.protected]
    kept.sort(key=lambda img: (as_utc(img.created_at, "created_at"), img.id))
    return kept
