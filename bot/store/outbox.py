"""The Slack outbox and delivery dedupe.

An outbox item is written in the same transaction as the change it reports (`_enqueue` is
called inside the caller's `_tx`), so a crash never loses or repeats a message; the notifier
reads due items and marks them sent, failed or being posted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from bot.store.db import StoreBase, Where
from bot.store.rows import OUTBOX_KINDS, OutboxItem, OutboxMessage, dt_out, outbox_row
from bot.vocabulary import OutboxKind


class OutboxTables(StoreBase):
    """The `outbox` and `deliveries` tables."""

    def _enqueue(self, now: datetime, items: Sequence[OutboxItem], job_id: str | None) -> None:
        for item in items:
            if item.kind not in OUTBOX_KINDS:
                raise ValueError(f"unknown outbox kind {item.kind!r}")
            self._insert("outbox", {
                "job_id": item.job_id or job_id, "channel": item.channel,
                "thread_key": item.thread_key, "kind": item.kind,
                "payload": json.dumps(dict(item.payload)), "created_at": dt_out(now),
                "attempts": 0, "next_attempt_at": dt_out(now)})

    def enqueue(self, items: Sequence[OutboxItem]) -> None:
        """Queue messages not tied to a job change (e.g. a schedule report)."""
        with self._tx():
            self._enqueue(self._now(), items, None)

    def pending_outbox(self, now: datetime, limit: int = 100) -> list[OutboxMessage]:
        """Unsent items due at `now`, in the order they were written."""
        where = Where(["sent_at IS NULL", "next_attempt_at IS NOT NULL", "next_attempt_at <= ?"],
                      [dt_out(now)])
        return self._select("outbox", outbox_row, where, order="id", limit=limit)

    def outbox_after(self, after_id: int) -> list[OutboxMessage]:
        """Every unsent, not given-up item with an id above `after_id`, in id order (ids grow
        in commit order: SQLite has one writer and the table is AUTOINCREMENT), so a reader
        that remembers the last id it saw reads only what is new."""
        where = Where(["sent_at IS NULL", "next_attempt_at IS NOT NULL", "id > ?"], [after_id])
        return self._select("outbox", outbox_row, where, order="id")

    def mark_superseded(self, outbox_ids: Sequence[int]) -> None:
        """Card edits made pointless by a newer edit of the same card (which renders the
        card's current state) are closed without a call to Slack."""
        if not outbox_ids:
            return
        with self._tx():
            self.db.conn.executemany(
                "UPDATE outbox SET sent_at = ?, error = 'superseded' WHERE id = ? "
                "AND sent_at IS NULL AND kind = 'update_parent'",
                [(dt_out(self._now()), i) for i in outbox_ids])

    def mark_sent(self, outbox_id: int, result_ts: str | None = None) -> None:
        """The item was delivered (Slack's `ts` when it made a message)."""
        with self._tx():  # `_tx`, not an implicit commit: it takes the writers' turn
            self._update("outbox", {"sent_at": dt_out(self._now()), "result_ts": result_ts,
                                    "error": None}, Where().eq("id", outbox_id),
                         also="attempts = attempts + 1")

    def set_outbox_channel(self, outbox_id: int, channel: str) -> None:
        """The channel id Slack answered for a post made to a channel name (`chat.update`
        takes ids only, and `posted_message` is how a later rewrite finds the message)."""
        self._update("outbox", {"channel": channel}, Where().eq("id", outbox_id))

    def mark_posting(self, outbox_id: int) -> None:
        """Record, before calling Slack, that this item may be posted from now on: after a
        crash the notifier then looks for the message instead of posting it twice."""
        with self._tx():
            self.db.execute("UPDATE outbox SET posting_at = COALESCE(posting_at, ?) WHERE id = ?",
                            [dt_out(self._now()), outbox_id])

    def clear_posting(self, outbox_id: int) -> None:
        """Slack answered that the post did not happen: no need to look for it next time."""
        with self._tx():
            self._update("outbox", {"posting_at": None}, Where().eq("id", outbox_id))

    def mark_failed(self, outbox_id: int, *, retry_at: datetime | None, error: str) -> None:
        """Delivery failed: retry at `retry_at`, or give up for good when it is None."""
        with self._tx():
            self._update("outbox", {"error": error, "next_attempt_at": dt_out(retry_at)},
                         Where().eq("id", outbox_id), also="attempts = attempts + 1")

    def outbox_depth(self) -> int:
        """Items still waiting to go out (not given up)."""
        row = self.db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL "
                              "AND next_attempt_at IS NOT NULL").fetchone()
        return int(row[0])

    def outbox_item(self, outbox_id: int) -> OutboxMessage:
        """One outbox row (for inspection and tests)."""
        return self._get("outbox", outbox_row, outbox_id, f"no outbox item {outbox_id}")

    def posted_message(self, thread_key: str) -> tuple[str, str] | None:
        """(channel, ts) of the delivered `channel_post` with this thread_key, if any."""
        where = Where(["sent_at IS NOT NULL", "result_ts IS NOT NULL"]).eq(
            "kind", OutboxKind.CHANNEL_POST).eq("thread_key", thread_key)
        found = self._select("outbox", lambda row: (row["channel"], row["result_ts"]), where,
                             order="id", limit=1)
        return found[0] if found else None

    # --- delivery dedupe --------------------------------------------------------------------

    def claim_delivery(self, key: str, job_id: str | None = None) -> bool:
        """True the first time `key` is seen (Slack retries and redeliveries repeat keys)."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO deliveries (key, at, job_id) VALUES (?, ?, ?)",
            [key, dt_out(self._now()), job_id])
        return cursor.rowcount == 1

    def delivery_job(self, key: str) -> str | None:
        """The job recorded with a delivery key, if any."""
        row = self.db.execute("SELECT job_id FROM deliveries WHERE key = ?", [key]).fetchone()
        return row[0] if row else None
