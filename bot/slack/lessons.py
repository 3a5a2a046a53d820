"""The learnt workspace post limit (`bot.slack.pacing`), kept in the job database so that a
restart starts from it instead of learning it again from Slack's 429s: recalled at start while
younger than the pacer keeps a lesson (FORGET_AFTER), saved whenever the pacer learns.

The lesson's time is kept as wall-clock time: the pacer's clock (monotonic) starts again with
each process."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.errors import StoreError
from bot.slack.pacing import SlackPacer
from bot.store import AsyncStore, Store

log = logging.getLogger(__name__)

LESSON_KEY = "slack_workspace_post_limit"  # in the meta table


@dataclass
class KeptLesson:
    """Recalls and saves one pacer's lesson; `wall` is the wall clock (seconds)."""

    store: AsyncStore
    wall: Callable[[], float] = time.time
    _kept: int | None = None  # the pacer's `lessons` when last saved or recalled; None: not yet

    async def sync(self, pacer: SlackPacer, now: float) -> None:
        """The first time, give `pacer` (its clock at `now`) the lesson saved last, if one is
        young enough and the pacer has learnt none of its own yet; from then on, save its
        lesson whenever it learnt a new one (a store write only then). The saved lesson is a
        hint: a value that does not read is ignored."""
        if self._kept is None:
            self._kept = 0
            if pacer.lessons == 0:
                try:
                    raw = await self.store.run(Store.get_meta, LESSON_KEY)
                except StoreError as exc:
                    log.warning("could not read the saved Slack post limit: %s", exc)
                    raw = None
                self._recall(pacer, raw, now)
                self._kept = pacer.lessons
        if pacer.lessons == self._kept:
            return
        self._kept = pacer.lessons
        lesson = pacer.lesson(now)
        if lesson is None:
            return
        rate, refused_at = lesson
        value = {"rate": rate, "refused_at": self.wall() - (now - refused_at)}
        try:  # not saved: a restart learns it again; the posts go on either way
            await self.store.run(Store.set_meta, LESSON_KEY, json.dumps(value))
        except StoreError as exc:
            log.warning("could not save the learnt Slack post limit: %s", exc)

    def _recall(self, pacer: SlackPacer, raw: str | None, now: float) -> None:
        if not raw:
            return
        try:
            saved = json.loads(raw)
            rate, refused_at = float(saved["rate"]), float(saved["refused_at"])
        except (ValueError, TypeError, KeyError):
            log.warning("ignored an unreadable saved Slack post limit")
            return
        age = max(0.0, self.wall() - refused_at)
        if rate > 0:
            pacer.recall(rate, now - age, now)
        if pacer.workspace_posts is not None:
            log.info("keeping to the workspace post limit learnt before: %.2f posts/s "
                     "(last refused %.0f s ago)", rate, age)
