"""Restore tests (`verifications`): one row per throw-away server booted from an image.

Every state change is a compare-and-set on the state, written with the outbox items that tell
Slack about it, in one transaction (as for jobs)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from bot.errors import ConflictingUpdate, JobError
from bot.imaging import verify
from bot.imaging.verify import DATETIME_FIELDS, VERIFY_FIELDS, Verification, VerifyState
from bot.store.db import Where, normalize_id
from bot.store.jobs import JobTables
from bot.store.rows import OutboxItem, RowCodec, dt_out
from bot.vocabulary import JobState

_SETTABLE = frozenset(VERIFY_FIELDS) - {"id", "state", "created_at", "updated_at"}


def normalize_verification_id(value: str) -> str:
    """'v3' / 'V3' -> 'V3'; JobError for anything else."""
    return normalize_id(value, "V", f"{value!r} is not a verification id (they look like V3).")


VERIFY_CODEC = RowCodec(VERIFY_FIELDS, DATETIME_FIELDS, tuples=frozenset({"networks"}),
                        flags=frozenset({"console_seen"}), enums={"state": VerifyState})


def verify_value(name: str, value: Any) -> Any:
    """A `Verification` field's value as stored."""
    return VERIFY_CODEC.column(name, value)


def verification_row(row: Mapping[str, Any]) -> Verification:
    """A `verifications` row read back."""
    return Verification(**VERIFY_CODEC.values(row))


class VerifyTables(JobTables):
    """The `verifications` table (and the `verify` flag of jobs)."""

    def create_verification(self, *, image_ref: str, requested_by: str, channel: str,
                            state: VerifyState = verify.QUEUED,
                            outbox: Sequence[OutboxItem] = (), **extra: Any) -> Verification:
        """A new verification (V<n>) and its outbox items, in one transaction."""
        unknown = set(extra) - _SETTABLE
        if unknown:
            raise TypeError(f"unknown verification fields: {sorted(unknown)}")
        now = self._now()
        with self._tx():
            seq, vid = self.next_id("verifications", "V")
            row = {k: verify_value(k, v) for k, v in extra.items()}
            self._insert("verifications", {
                **row, "seq": seq, "id": vid, "state": state, "image_ref": image_ref,
                "requested_by": requested_by, "channel": channel,
                "created_at": dt_out(now), "updated_at": dt_out(now)})
            self._enqueue(now, outbox, extra.get("job_id"))
            return self.get_verification(vid)

    def get_verification(self, verification_id: str) -> Verification:
        """One verification; JobError when there is none."""
        vid = normalize_verification_id(verification_id)
        return self._get("verifications", verification_row, vid,
                         f"There is no verification {vid}.")

    def open_verifications(self) -> list[Verification]:
        """Verifications not yet ended, oldest first."""
        return self._select("verifications", verification_row,
                            Where().any_of("state", sorted(verify.OPEN)), order="seq")

    def undeleted_verifications(self) -> list[Verification]:
        """Verifications whose test server may still exist: open ones, and ended ones whose
        server was never seen gone (a delete that timed out)."""
        return self._select("verifications", verification_row,
                            Where().any_of("state", sorted(verify.OPEN)), order="seq") + \
            [v for v in self._select("verifications", verification_row,
                                     Where().any_of("state", sorted(verify.TERMINAL)),
                                     order="seq")
             if v.server_id is not None and v.deleted_at is None]

    def verifications_of_job(self, job_id: str) -> list[Verification]:
        """A job's verifications, oldest first."""
        return self._select("verifications", verification_row, Where().eq("job_id", job_id),
                            order="seq")

    def update_verification(self, verification_id: str, *,
                            expected: VerifyState | Collection[VerifyState],
                            target: VerifyState | None = None,
                            fields: Mapping[str, Any] | None = None,
                            outbox: Sequence[OutboxItem] = ()) -> Verification:
        """Compare-and-set: change the row only if it is still in `expected`
        (`ConflictingUpdate` otherwise), with its outbox items. The verdict of a job's
        verification is recorded in the job's events too (`verify:passed|failed`)."""
        values = dict(fields or {})
        bad = set(values) - _SETTABLE
        if bad:
            raise JobError(f"cannot set verification fields {sorted(bad)}")
        states = [expected] if isinstance(expected, str) else sorted(expected)
        now = self._now()
        row = {k: verify_value(k, v) for k, v in values.items()}
        row["updated_at"] = dt_out(now)
        if target is not None:
            row["state"] = target
        with self._tx():
            changed = self._update("verifications", row, Where().eq("id", verification_id)
                                   .any_of("state", states))
            if changed != 1:
                raise ConflictingUpdate(f"verification {verification_id} is no longer in "
                                        f"{', '.join(states)}")
            after = self.get_verification(verification_id)
            self._enqueue(now, outbox, after.job_id)
            if target in verify.TERMINAL and after.job_id and after.outcome:
                self._event(after.job_id, now, f"verify:{after.outcome}", None, None, None,
                            {"verification": after.id, "error": after.error})
            return after

    def verify_work(self) -> int:
        """Restore tests not yet ended, counting those of finished `--verify` jobs that are
        still to be queued."""
        owed = self.db.execute(
            "SELECT COUNT(*) FROM jobs WHERE verify = 1 AND state = ? AND image_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM verifications v WHERE v.job_id = jobs.id)",
            [JobState.SUCCEEDED]).fetchone()[0]
        return int(owed) + len(self.open_verifications())

    def start_job_verifications(self) -> list[Verification]:
        """Queue a verification for every succeeded `--verify` job that has none yet (its
        image is made); one transaction, so a job is never verified twice."""
        made: list[Verification] = []
        with self._tx():
            rows = self.db.query(
                "SELECT id, image_id, requested_by, channel, channel_name, cloud FROM jobs "
                "WHERE verify = 1 AND state = ? AND image_id IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM verifications v WHERE v.job_id = jobs.id) ORDER BY seq",
                [JobState.SUCCEEDED])
            for job in list(rows):
                made.append(self.create_verification(
                    image_ref=job["image_id"], requested_by=job["requested_by"],
                    channel=job["channel"], channel_name=job["channel_name"],
                    cloud=job["cloud"], job_id=job["id"], image_id=job["image_id"]))
        return made
