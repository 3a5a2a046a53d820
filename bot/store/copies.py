"""A change request's DM copies (table `request_copies`, migration m011_request_copies).

One row per (request, approver) is written in the transaction that writes the request and its
outbox items (`_add_copies`, called by `add_change_request`), so a copy is never lost nor made
twice. The notifier fills in the DM channel (`conversations.open`) and the message ts; the
scheduler loop rewrites every posted copy when the request changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.store.db import StoreBase, Where
from bot.store.rows import dt_in, dt_out


@dataclass(frozen=True)
class RequestCopy:
    """One approver's DM copy of a change request."""

    request_id: str
    user: str
    created_at: datetime
    dm_channel: str | None  # the DM's id once `conversations.open` named it
    ts: str | None  # the message once posted
    posted_at: datetime | None
    shown_status: str | None  # what the copy last showed (`direct.shown_state`)

    @property
    def posted(self) -> bool:
        """Whether the copy is a message that can be rewritten."""
        return bool(self.dm_channel and self.ts)


def copy_row(row: Mapping[str, Any]) -> RequestCopy:
    """A stored `request_copies` row."""
    created = dt_in(row["created_at"])
    assert created is not None
    return RequestCopy(request_id=row["request_id"], user=row["user"], created_at=created,
                       dm_channel=row["dm_channel"], ts=row["ts"],
                       posted_at=dt_in(row["posted_at"]), shown_status=row["shown_status"])


def _key(request_id: str, user: str) -> Where:
    return Where().eq("request_id", request_id).eq("user", user)


class CopyTables(StoreBase):
    """The `request_copies` table."""

    def _add_copies(self, request_id: str, users: Sequence[str], now: datetime) -> None:
        """Inside the caller's transaction: one row per recipient (repeats ignored)."""
        for user in users:
            self.db.execute("INSERT OR IGNORE INTO request_copies (request_id, user, created_at) "
                            "VALUES (?, ?, ?)", [request_id, user, dt_out(now)])

    def request_copies(self, request_id: str) -> list[RequestCopy]:
        """The copies of one request, in the order they were written."""
        return self._select("request_copies", copy_row, Where().eq("request_id", request_id),
                            order="rowid")

    def request_copy(self, request_id: str, user: str) -> RequestCopy | None:
        """`user`'s copy of the request, if one was made."""
        return self._first("request_copies", copy_row, _key(request_id, user))

    def set_copy_channel(self, request_id: str, user: str, dm_channel: str) -> None:
        """The DM channel `conversations.open` named for this copy."""
        with self._tx():
            self._update("request_copies", {"dm_channel": dm_channel}, _key(request_id, user))

    def record_copy_posted(self, request_id: str, user: str, ts: str,
                           shown_status: str) -> None:
        """The copy was posted as `ts` showing the request as `shown_status`. When the request
        has moved on meanwhile (decided while the copy was in flight, and its rewrite pass may
        have run before this ts was known), its message is dirtied again so the loop rewrites
        this copy too."""
        with self._tx():
            self._update("request_copies", {"ts": ts, "posted_at": dt_out(self._now()),
                                            "shown_status": shown_status},
                         _key(request_id, user))
            self.db.execute("UPDATE change_requests SET message_dirty = message_dirty + 1 "
                            "WHERE id = ? AND status != ?", [request_id, shown_status])

    def record_copy_shown(self, request_id: str, user: str, shown_status: str) -> None:
        """The copy was rewritten to show the request as `shown_status`."""
        with self._tx():
            self._update("request_copies", {"shown_status": shown_status},
                         _key(request_id, user))

    def is_copy_in(self, request_id: str, user: str, channel: str) -> bool:
        """Whether `channel` is the DM in which `user` got a copy of the request (a click
        there is the user's own surface, decided with `direct=True`)."""
        if not channel:
            return False
        found = self.request_copy(str(request_id).upper(), user)
        return found is not None and found.dm_channel == channel
