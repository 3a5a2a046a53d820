"""The schema, as the migrations m001... that build it, in order.

Every statement is literal SQL, frozen when its migration was written: a migration never reads
a live dataclass (m001 once derived the jobs columns from `Job`, so a new database and an
upgraded one came out different). A change to the schema is a new migration at the end; the
test in tests/bot/store/test_migrations.py checks that a database built in one go and one
upgraded from each earlier version have the same schema.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("imagebot")


def _has_column(db: Database, table: str, column: str) -> bool:
    return db.execute("SELECT 1 FROM pragma_table_info(?) WHERE name = ?",
                      [table, column]).fetchone() is not None


@migrations()
def m001_initial(db: Database) -> None:
    """Jobs, events, outbox, deliveries, meta."""
    db.execute("""
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL,
            server_ref TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            channel TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            server_id TEXT,
            server_name TEXT,
            image_name TEXT,
            image_id TEXT,
            note TEXT,
            thread_ts TEXT,
            response_url TEXT,
            task_state TEXT,
            image_status TEXT,
            image_size INTEGER,
            error_code TEXT,
            error TEXT,
            schedule_id TEXT,
            dedupe_key TEXT,
            volume_backed INTEGER NOT NULL DEFAULT 0,
            data_disks TEXT NOT NULL DEFAULT '[]',
            confirmed_by TEXT,
            confirmed_at TEXT,
            submitted_at TEXT,
            snapshot_started_at TEXT,
            snapshot_ended_at TEXT,
            upload_started_at TEXT,
            finished_at TEXT,
            deadline_at TEXT,
            task_cleared_at TEXT
        )""")
    db.execute("CREATE UNIQUE INDEX jobs_dedupe ON jobs(dedupe_key) WHERE dedupe_key IS NOT NULL")
    db.execute("CREATE INDEX jobs_state ON jobs(state)")
    db.execute("CREATE INDEX jobs_server ON jobs(server_ref)")
    db.execute("""
        CREATE TABLE job_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT,
            actor TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )""")
    db.execute("CREATE INDEX job_events_job ON job_events(job_id, id)")
    # Append-only: the audit trail cannot be rewritten through this database.
    db.execute("""CREATE TRIGGER job_events_no_update BEFORE UPDATE ON job_events
                  BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END""")
    db.execute("""CREATE TRIGGER job_events_no_delete BEFORE DELETE ON job_events
                  BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END""")
    db.execute("""
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT,
            channel TEXT NOT NULL,
            thread_key TEXT,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            sent_at TEXT,
            error TEXT,
            result_ts TEXT
        )""")
    db.execute("CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE sent_at IS NULL")
    db.execute("""
        CREATE TABLE deliveries (
            key TEXT PRIMARY KEY,
            at TEXT NOT NULL,
            job_id TEXT
        )""")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")


@migrations()
def m002_schedules(db: Database) -> None:
    """Schedules (one per server), change requests, schedule runs (slot claims), audit."""
    db.execute("""
        CREATE TABLE schedules (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            server_id TEXT NOT NULL UNIQUE,
            server_ref TEXT NOT NULL,
            server_name TEXT,
            frequency TEXT NOT NULL CHECK (frequency IN ('daily', 'weekly')),
            day TEXT,
            at TEXT NOT NULL,
            tz TEXT NOT NULL,
            keep INTEGER NOT NULL,
            channel TEXT NOT NULL,
            channel_name TEXT,
            created_by TEXT NOT NULL,
            approved_by TEXT,
            request_id TEXT,
            effective_at TEXT NOT NULL,
            last_slot TEXT,
            last_result TEXT,
            last_run_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('active', 'off')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE change_requests (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('set', 'off')),
            server_id TEXT NOT NULL,
            server_ref TEXT NOT NULL,
            server_name TEXT,
            old_spec TEXT,
            new_spec TEXT,
            requested_by TEXT NOT NULL,
            channel TEXT NOT NULL,
            channel_name TEXT,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('pending', 'approved', 'rejected', 'expired', 'superseded')),
            decided_by TEXT,
            decided_at TEXT,
            reason TEXT,
            warned_at TEXT,
            message_dirty INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX change_requests_status ON change_requests(status, expires_at)")
    db.execute("""
        CREATE TABLE schedule_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            schedule_id TEXT NOT NULL,
            slot TEXT NOT NULL,
            missed INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            job_id TEXT,
            result TEXT NOT NULL,
            next_attempt_at TEXT,
            detail TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (schedule_id, slot)
        )""")
    db.execute("CREATE INDEX schedule_runs_open ON schedule_runs(result)")
    db.execute("""
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT,
            action TEXT NOT NULL,
            subject TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )""")
    db.execute("""CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
                  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""")
    db.execute("""CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
                  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""")
    db.execute("CREATE INDEX audit_subject ON audit(subject, id)")


@migrations()
def m003_outbox_posting(db: Database) -> None:
    """When a post to Slack was attempted, so a crash mid-post is reconciled, not repeated."""
    db.execute("ALTER TABLE outbox ADD COLUMN posting_at TEXT")


# m004, m006 and m007 check for their column first: a database created while m001 still
# derived its columns from `Job` may have had it from m001 already.


@migrations()
def m004_job_cloud(db: Database) -> None:
    """Which cloud a job runs on (per-channel policy)."""
    if not _has_column(db, "jobs", "cloud"):
        db.execute("ALTER TABLE jobs ADD COLUMN cloud TEXT")


@migrations()
def m005_id_sequences(db: Database) -> None:
    """A durable sequence per id kind (jobs J<n>, change requests R<n>, schedules S<n>): the
    last number handed out, only ever raised, so no id is reused, and start-up can skip it past
    ids that images in the cloud already carry."""
    db.execute("CREATE TABLE id_sequences (name TEXT PRIMARY KEY, last INTEGER NOT NULL)")
    # Start each at the highest of its rows and its AUTOINCREMENT counter.
    db.execute("""
        INSERT INTO id_sequences (name, last)
        SELECT 'jobs',
            MAX(COALESCE((SELECT MAX(seq) FROM jobs), 0),
                COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0))
        UNION ALL SELECT 'change_requests',
            MAX(COALESCE((SELECT MAX(seq) FROM change_requests), 0),
                COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'change_requests'), 0))
        UNION ALL SELECT 'schedules',
            MAX(COALESCE((SELECT MAX(seq) FROM schedules), 0),
                COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'schedules'), 0))""")


@migrations()
def m006_job_channel_name(db: Database) -> None:
    """The job's channel name (policy lookup by name on clicks and alerts) and who cancelled
    it."""
    if not _has_column(db, "jobs", "channel_name"):
        db.execute("ALTER TABLE jobs ADD COLUMN channel_name TEXT")
    if not _has_column(db, "jobs", "cancelled_by"):
        db.execute("ALTER TABLE jobs ADD COLUMN cancelled_by TEXT")


@migrations()
def m007_job_announced(db: Database) -> None:
    """When a job's public card was queued (typed creates stay private until resolved). Jobs
    made before this had their card queued at creation."""
    if not _has_column(db, "jobs", "announced_at"):
        db.execute("ALTER TABLE jobs ADD COLUMN announced_at TEXT")
        db.execute("UPDATE jobs SET announced_at = created_at")


@migrations()
def m008_verify(db: Database) -> None:
    """Restore tests: whether a job's image (and each image of a schedule) is to be verified
    once it is made, and one row per verification (a throw-away server booted from the image, then deleted)."""
    if not _has_column(db, "jobs", "verify"):
        db.execute("ALTER TABLE jobs ADD COLUMN verify INTEGER NOT NULL DEFAULT 0")
    if not _has_column(db, "schedules", "verify"):
        db.execute("ALTER TABLE schedules ADD COLUMN verify INTEGER NOT NULL DEFAULT 0")
    db.execute("""
        CREATE TABLE verifications (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL,
            image_ref TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            channel TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            channel_name TEXT,
            cloud TEXT,
            job_id TEXT,
            image_id TEXT,
            image_name TEXT,
            console_marker TEXT,
            server_name TEXT,
            server_id TEXT,
            flavor TEXT,
            networks TEXT,
            boot_attempts INTEGER NOT NULL DEFAULT 0,
            boot_started_at TEXT,
            active_at TEXT,
            deadline_at TEXT,
            console_seen INTEGER,
            outcome TEXT,
            error TEXT,
            delete_requested_at TEXT,
            deleted_at TEXT,
            finished_at TEXT
        )""")
    db.execute("CREATE INDEX verifications_state ON verifications(state)")
    db.execute("CREATE INDEX verifications_job ON verifications(job_id)")


@migrations()
def m009_schedule_ops(db: Database) -> None:
    """Schedule operations (issue 18): a schedule's pause (since when, by which request), when
    it was last resumed (slots before that never count), the one slot `skip-next` skips, a
    queued `run-now`; and which operation a change request asks for (NULL: a schedule
    change), with its detail (JSON: schedule id, the slot skipped)."""
    db.execute("ALTER TABLE schedules ADD COLUMN paused_at TEXT")
    db.execute("ALTER TABLE schedules ADD COLUMN pause_request TEXT")
    db.execute("ALTER TABLE schedules ADD COLUMN resumed_at TEXT")
    db.execute("ALTER TABLE schedules ADD COLUMN skip_slot TEXT")
    db.execute("ALTER TABLE schedules ADD COLUMN skip_request TEXT")
    db.execute("ALTER TABLE schedules ADD COLUMN run_now_at TEXT")
    db.execute("ALTER TABLE schedules ADD COLUMN run_now_request TEXT")
    db.execute("ALTER TABLE change_requests ADD COLUMN operation TEXT")
    db.execute("ALTER TABLE change_requests ADD COLUMN operation_detail TEXT")


@migrations()
def m010_native(db: Database) -> None:
    """Rackspace Scheduled Images (`schedule ... --native`): a change request that sets the
    cloud's own schedule instead of ours, and when (and how) the scheduler loop carried it out
    after the approval."""
    db.execute("ALTER TABLE change_requests ADD COLUMN native INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE change_requests ADD COLUMN applied_at TEXT")
    db.execute("ALTER TABLE change_requests ADD COLUMN apply_result TEXT")
    db.execute("CREATE INDEX change_requests_native ON change_requests(native, status, "
               "applied_at)")


@migrations()
def m011_request_copies(db: Database) -> None:
    """A change request's copies sent as DMs to its approvers: one row per (request, user),
    written with the request; the DM channel once `conversations.open` named it, the message
    ts once posted, and the request status the copy last showed (so a decision made while the
    copy was being posted still rewrites it)."""
    db.execute("""
        CREATE TABLE request_copies (
            request_id TEXT NOT NULL,
            user TEXT NOT NULL,
            created_at TEXT NOT NULL,
            dm_channel TEXT,
            ts TEXT,
            posted_at TEXT,
            shown_status TEXT,
            PRIMARY KEY (request_id, user)
        )""")


@migrations()
def m012_fleet(db: Database) -> None:
    """Fleet schedules: a schedule's target (`web-*`, `meta:role=web`; NULL for one server)
    and age retention (`--keep-days`); per run of a fleet schedule the servers it matched
    (one row each, with the job that images it) and the run's digest message."""
    if not _has_column(db, "schedules", "target"):
        db.execute("ALTER TABLE schedules ADD COLUMN target TEXT")
    if not _has_column(db, "schedules", "keep_days"):
        db.execute("ALTER TABLE schedules ADD COLUMN keep_days INTEGER")
    db.execute("""
        CREATE TABLE fleet_runs (
            run_id INTEGER PRIMARY KEY REFERENCES schedule_runs(id),
            schedule_id TEXT NOT NULL,
            target TEXT NOT NULL,
            dropped TEXT NOT NULL DEFAULT '[]',
            skipped TEXT NOT NULL DEFAULT '[]',
            digest TEXT,
            summarized_at TEXT,
            card_done INTEGER NOT NULL DEFAULT 0
        )""")
    db.execute("""
        CREATE TABLE fleet_members (
            run_id INTEGER NOT NULL REFERENCES schedule_runs(id),
            server_id TEXT NOT NULL,
            server_name TEXT NOT NULL,
            job_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 1,
            result TEXT NOT NULL,
            next_attempt_at TEXT,
            detail TEXT,
            resumed INTEGER NOT NULL DEFAULT 0,
            deleted INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, server_id)
        )""")


@migrations()
def m013_job_server_index(db: Database) -> None:
    """The in-flight jobs on a server, by its ref, name or id: what every create checks
    (`refuse_if_in_flight`) and the engine asks per tick. Partial indexes on the in-flight
    states, so the lookup reads only that server's running jobs, never the whole history nor
    every job in flight (issue 17: the create's check read every in-flight job). The state
    list is the literal `IN (...)` the queries write (`bot.store.jobs.IN_FLIGHT_SQL`): SQLite
    uses a partial index only when the query repeats its WHERE term exactly
    (https://sqlite.org/partialindex.html, "Queries Using Partial Indexes")."""
    db.execute("CREATE INDEX jobs_in_flight_ref ON jobs(server_ref) WHERE state IN "
               "('pending_upload', 'queued', 'snapshotting', 'submitting', 'uploading')")
    db.execute("CREATE INDEX jobs_in_flight_name ON jobs(server_name) WHERE state IN "
               "('pending_upload', 'queued', 'snapshotting', 'submitting', 'uploading')")
    db.execute("CREATE INDEX jobs_in_flight_id ON jobs(server_id) WHERE state IN "
               "('pending_upload', 'queued', 'snapshotting', 'submitting', 'uploading')")
