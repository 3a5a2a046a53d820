"""The job database: one place opens it (`open_database`), `Store` is its synchronous API and
`AsyncStore` runs that API on one worker thread."""

from bot.store.db import (
    ID_TABLES,
    OUTBOX_KINDS,
    AsyncStore,
    AuditEntry,
    AuditRow,
    JobEvent,
    OutboxItem,
    OutboxMessage,
    RequestPlan,
    RequestRow,
    RunRow,
    ScheduleRow,
    Store,
    StoreError,
    normalize_job_id,
    normalize_request_id,
    open_database,
)

__all__ = [
    "AsyncStore",
    "AuditEntry",
    "AuditRow",
    "ID_TABLES",
    "JobEvent",
    "OUTBOX_KINDS",
    "OutboxItem",
    "OutboxMessage",
    "RequestPlan",
    "RequestRow",
    "RunRow",
    "ScheduleRow",
    "Store",
    "StoreError",
    "normalize_job_id",
    "normalize_request_id",
    "open_database",
]
