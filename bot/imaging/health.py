"""Cloud health for the engine: which clouds failed this tick, and the once-only reports.

A cloud that fails (refuses our credentials, answers garbage, drips) delays only its own jobs.
After `DOWN_AFTER_TICKS` failing ticks in a row it is reported once in the notification channel
of those jobs' channel policies, and once more when it answers again. The report lives in the
store's meta table, so a restart neither repeats nor forgets it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from bot.blocks import escape, user_text
from bot.errors import CloudError, ConfigError
from bot.imaging.jobs import Job
from bot.scheduling.messages import alert
from bot.store import AsyncStore, OutboxItem, Store
from bot.vocabulary import OutboxKind

CLOUD_DOWN_KEY = "cloud_down"  # meta key prefix: a cloud reported as failing, and where
DOWN_AFTER_TICKS = 2  # consecutive failing ticks before a cloud is reported (one blip is not)
MAX_LISTED_JOBS = 10  # waiting jobs named in the report


class CloudHealth:
    """This tick's trouble per cloud (None: the default cloud) and the failing streaks."""

    def __init__(self, store: AsyncStore, *, clock: Callable[[], datetime],
                 alerts_for: Callable[[Job], tuple[str | None, str | None]],
                 on_change: Callable[[], None]) -> None:
        self.store = store
        self.clock = clock
        self.alerts_for = alerts_for  # (notification channel, mention) of a job's policy
        self.on_change = on_change
        self._trouble: dict[str | None, CloudError | ConfigError] = {}  # this tick's
        self._failing: dict[str | None, int] = {}  # consecutive failing ticks per cloud

    def begin(self, cloud: str | None) -> None:
        """A new pass over the cloud starts: forget last tick's trouble."""
        self._trouble.pop(cloud, None)

    def troubled(self, cloud: str | None, exc: CloudError | ConfigError) -> None:
        """Note a cloud problem (the jobs wait) for this tick's report."""
        self._trouble[cloud] = exc

    def level(self, cloud: str | None, first: int = logging.WARNING) -> int:
        """`first` for a cloud's first failing tick, INFO while the streak lasts (said once)."""
        return logging.INFO if self._failing.get(cloud) else first

    async def report(self, cloud: str | None, name: str, group: Sequence[Job]) -> None:
        """Say once that cloud `name` is failing (after DOWN_AFTER_TICKS ticks in a row), and
        once that it is back."""
        key = f"{CLOUD_DOWN_KEY}:{name}"
        raw = await self.store.run(Store.get_meta, key)
        reported = json.loads(raw) if raw else None
        exc = self._trouble.get(cloud)
        if exc is None:
            self._failing.pop(cloud, None)
            if reported and reported.get("channels"):
                text = (f"Cloud {escape(name)} answers again; the jobs that waited "
                        "for it go on.")
                await self._post({channel: None for channel in reported["channels"]}, text)
                await self.store.run(Store.set_meta, key, "")
                self.on_change()
            return
        self._failing[cloud] = self._failing.get(cloud, 0) + 1
        if reported or self._failing[cloud] < DOWN_AFTER_TICKS or not group:
            return
        targets: dict[str, str | None] = {}
        for job in group:
            notify, mention = self.alerts_for(job)
            targets.setdefault(notify or job.channel, mention)
        waiting = ", ".join(j.id for j in group[:MAX_LISTED_JOBS]) + (
            " …" if len(group) > MAX_LISTED_JOBS else "")
        message = exc.user_message() if isinstance(exc, CloudError) else str(exc)
        text = (f"Cloud {escape(name)} is failing, so its jobs wait ({waiting}): "
                f"{user_text(message)} Jobs on other clouds are not affected; I will say "
                "here when it is back.")
        await self._post(targets, text)
        await self.store.run(Store.set_meta, key, json.dumps({"channels": sorted(targets),
                                                              "since": self.clock().isoformat()}))
        self.on_change()

    async def _post(self, targets: dict[str, str | None], text: str) -> None:
        """One alert per channel (with that channel's mention, if any)."""
        await self.store.run(Store.enqueue, [
            OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=channel,
                       payload=alert(text, mention))
            for channel, mention in targets.items()])
