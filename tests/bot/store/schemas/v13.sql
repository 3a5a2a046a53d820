-- An empty job database as imagebot made it (migrations m001..m013_job_server_index):
-- the first 13 migrations on a new path, then sqlite3's iterdump(). Kept to test upgrades; never edit.
BEGIN TRANSACTION;
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
INSERT INTO "_sqlite_migrations" VALUES(1,'imagebot','m001_initial','2026-12-02 14:04:25.845116+00:00');
INSERT INTO "_sqlite_migrations" VALUES(2,'imagebot','m002_schedules','2026-12-02 14:04:25.846061+00:00');
INSERT INTO "_sqlite_migrations" VALUES(3,'imagebot','m003_outbox_posting','2026-12-02 14:04:25.846713+00:00');
INSERT INTO "_sqlite_migrations" VALUES(4,'imagebot','m004_job_cloud','2026-12-02 14:04:25.848183+00:00');
INSERT INTO "_sqlite_migrations" VALUES(5,'imagebot','m005_id_sequences','2026-12-02 14:04:25.848626+00:00');
INSERT INTO "_sqlite_migrations" VALUES(6,'imagebot','m006_job_channel_name','2026-12-02 14:04:25.849600+00:00');
INSERT INTO "_sqlite_migrations" VALUES(7,'imagebot','m007_job_announced','2026-12-02 14:04:25.850666+00:00');
INSERT INTO "_sqlite_migrations" VALUES(8,'imagebot','m008_verify','2026-12-02 14:04:25.851759+00:00');
INSERT INTO "_sqlite_migrations" VALUES(9,'imagebot','m009_schedule_ops','2026-12-02 14:04:25.854491+00:00');
INSERT INTO "_sqlite_migrations" VALUES(10,'imagebot','m010_native','2026-12-02 14:04:25.855529+00:00');
INSERT INTO "_sqlite_migrations" VALUES(11,'imagebot','m011_request_copies','2026-12-02 14:04:25.855826+00:00');
INSERT INTO "_sqlite_migrations" VALUES(12,'imagebot','m012_fleet','2026-12-02 14:04:25.857148+00:00');
INSERT INTO "_sqlite_migrations" VALUES(13,'imagebot','m013_job_server_index','2026-12-02 14:04:25.857562+00:00');
CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT,
            action TEXT NOT NULL,
            subject TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
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
        , operation TEXT, operation_detail TEXT, native INTEGER NOT NULL DEFAULT 0, applied_at TEXT, apply_result TEXT);
CREATE TABLE deliveries (
            key TEXT PRIMARY KEY,
            at TEXT NOT NULL,
            job_id TEXT
        );
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
        );
CREATE TABLE fleet_runs (
            run_id INTEGER PRIMARY KEY REFERENCES schedule_runs(id),
            schedule_id TEXT NOT NULL,
            target TEXT NOT NULL,
            dropped TEXT NOT NULL DEFAULT '[]',
            skipped TEXT NOT NULL DEFAULT '[]',
            digest TEXT,
            summarized_at TEXT,
            card_done INTEGER NOT NULL DEFAULT 0
        );
CREATE TABLE id_sequences (name TEXT PRIMARY KEY, last INTEGER NOT NULL);
INSERT INTO "id_sequences" VALUES('jobs',0);
INSERT INTO "id_sequences" VALUES('change_requests',0);
INSERT INTO "id_sequences" VALUES('schedules',0);
CREATE TABLE job_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT,
            actor TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
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
        , cloud TEXT, channel_name TEXT, cancelled_by TEXT, announced_at TEXT, verify INTEGER NOT NULL DEFAULT 0);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
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
        , posting_at TEXT);
CREATE TABLE request_copies (
            request_id TEXT NOT NULL,
            user TEXT NOT NULL,
            created_at TEXT NOT NULL,
            dm_channel TEXT,
            ts TEXT,
            posted_at TEXT,
            shown_status TEXT,
            PRIMARY KEY (request_id, user)
        );
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
        );
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
        , verify INTEGER NOT NULL DEFAULT 0, paused_at TEXT, pause_request TEXT, resumed_at TEXT, skip_slot TEXT, skip_request TEXT, run_now_at TEXT, run_now_request TEXT, target TEXT, keep_days INTEGER);
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
        );
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE UNIQUE INDEX jobs_dedupe ON jobs(dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX jobs_state ON jobs(state);
CREATE INDEX jobs_server ON jobs(server_ref);
CREATE INDEX job_events_job ON job_events(job_id, id);
CREATE TRIGGER job_events_no_update BEFORE UPDATE ON job_events
                  BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END;
CREATE TRIGGER job_events_no_delete BEFORE DELETE ON job_events
                  BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END;
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX change_requests_status ON change_requests(status, expires_at);
CREATE INDEX schedule_runs_open ON schedule_runs(result);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
                  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
                  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE INDEX audit_subject ON audit(subject, id);
CREATE INDEX verifications_state ON verifications(state);
CREATE INDEX verifications_job ON verifications(job_id);
CREATE INDEX change_requests_native ON change_requests(native, status, applied_at);
CREATE INDEX jobs_in_flight_ref ON jobs(server_ref) WHERE state IN ('pending_upload', 'queued', 'snapshotting', 'submitting', 'uploading');
CREATE INDEX jobs_in_flight_name ON jobs(server_name) WHERE state IN ('pending_upload', 'queued', 'snapshotting', 'submitting', 'uploading');
CREATE INDEX jobs_in_flight_id ON jobs(server_id) WHERE state IN ('pending_upload', 'queued', 'snapshotting', 'submitting', 'uploading');
DELETE FROM "sqlite_sequence";
COMMIT;
