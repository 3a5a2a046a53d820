"""The job database: one place opens it (`open_database`), `Store` is its synchronous API and
`AsyncStore` runs that API on one worker thread."""

from bot.errors import StoreError
from bot.store.api import AsyncStore, Store
from bot.store.copies import RequestCopy
from bot.store.db import ID_TABLES, open_database
from bot.store.fleet import FleetMember, FleetRun
from bot.store.jobs import normalize_job_id
from bot.store.rows import (
    OUTBOX_KINDS,
    AuditEntry,
    AuditRow,
    JobEvent,
    OutboxItem,
    OutboxMessage,
    RequestPlan,
    RequestRow,
    RunRow,
    ScheduleRow,
)
from bot.store.scheduling import normalize_request_id

__all__ = [
    "AsyncStore",
    "AuditEntry",
    "AuditRow",
    "FleetMember",
    "FleetRun",
    "ID_TABLES",
    "JobEvent",
    "OUTBOX_KINDS",
    "OutboxItem",
    "OutboxMessage",
    "RequestCopy",
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
