"""What a parsed `/image` command asks for: one frozen dataclass per command.

Every request class carries the command word (`"create"`, ...) twice, as `command: ClassVar[str]`
and as `name: ClassVar[str]`; the image name a `create` asks for is `Create.image_name`.

Values are already validated and normalised by `commands.parse`: ids are upper-case (`J17`,
`R4`), UUIDs lower-case, days upper-case full names (`SATURDAY`), zones valid IANA names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from typing import ClassVar, Literal, TypeAlias

from commands.targets import FleetTarget

Frequency: TypeAlias = Literal["daily", "weekly"]
JobState: TypeAlias = Literal["running", "done", "failed", "cancelled"]

DEFAULT_AT = time(0, 0)
DEFAULT_KEEP = 7
DEFAULT_TZ = "UTC"
DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class ServerRef:
    """A server as the user named it: a name, or a UUID (normalised lower-case)."""

    text: str
    is_uuid: bool

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Create:
    """Make an image of `server` now (after a quiesce confirmation unless `now`)."""

    name: ClassVar[str] = "create"
    command: ClassVar[str] = "create"

    server: ServerRef
    image_name: str | None = None  # `--name`; None: the engine's default name
    now: bool = False
    note: str | None = None
    verify: bool = False  # `--verify`: boot a throw-away server from the new image


@dataclass(frozen=True)
class Status:
    """Status of one job (`job_id`), of the latest job of `server`, or an overview."""

    name: ClassVar[str] = "status"
    command: ClassVar[str] = "status"

    job_id: str | None = None
    server: ServerRef | None = None
    all: bool = False  # every channel's jobs (admins only)


@dataclass(frozen=True)
class ListJobs:
    """Recent jobs, optionally for one server and/or in one state."""

    name: ClassVar[str] = "list"
    command: ClassVar[str] = "list"

    server: ServerRef | None = None
    state: JobState | None = None
    limit: int = DEFAULT_LIMIT
    all: bool = False  # every channel's jobs (admins only)


@dataclass(frozen=True)
class Cancel:
    """Cancel a job that has not reached the cloud yet."""

    name: ClassVar[str] = "cancel"
    command: ClassVar[str] = "cancel"

    job_id: str


@dataclass(frozen=True)
class Images:
    """List the images of a server."""

    name: ClassVar[str] = "images"
    command: ClassVar[str] = "images"

    server: ServerRef


@dataclass(frozen=True)
class Schedule:
    """Set (or replace) the image schedule of a server.

    `day` is the full upper-case English day for weekly schedules and None for daily ones; `at`
    is a wall time in `tz`.
    """

    name: ClassVar[str] = "schedule"
    command: ClassVar[str] = "schedule"

    server: ServerRef
    frequency: Frequency
    day: str | None = None
    at: time = DEFAULT_AT
    keep: int = DEFAULT_KEEP
    tz: str = DEFAULT_TZ
    verify: bool = False  # `--verify`: each run's image is restore-tested
    # A fleet (`web-*`, `meta:role=web`), resolved at each run; None: the one server `server`
    # (for a fleet, `server` holds the target's text).
    target: FleetTarget | None = None
    keep_days: int | None = None  # `--keep-days D`: images older than D days may go too


@dataclass(frozen=True)
class Verify:
    """`/image verify <image> [--console TEXT]`: boot a throw-away server from an image."""

    name: ClassVar[str] = "verify"
    command: ClassVar[str] = "verify"

    image: str  # a name or an id
    console: str | None = None  # wait for this text in the console log


@dataclass(frozen=True)
class Protect:
    """`/image protect <image>`: set Glance's `protected` flag (no one can delete it)."""

    name: ClassVar[str] = "protect"
    command: ClassVar[str] = "protect"

    image: str


@dataclass(frozen=True)
class Unprotect:
    """`/image unprotect <image>`: clear Glance's `protected` flag."""

    name: ClassVar[str] = "unprotect"
    command: ClassVar[str] = "unprotect"

    image: str


@dataclass(frozen=True)
class ScheduleOff:
    """Remove the image schedule of a server (`schedule <server> off`)."""

    name: ClassVar[str] = "schedule"
    command: ClassVar[str] = "schedule"

    server: ServerRef
    target: FleetTarget | None = None  # a fleet schedule's target (see `Schedule.target`)


Operation: TypeAlias = Literal["pause", "resume", "run-now", "skip-next"]
OPERATIONS: tuple[Operation, ...] = ("pause", "resume", "run-now", "skip-next")


@dataclass(frozen=True)
class ScheduleOperation:
    """`schedule <server> pause|resume|run-now|skip-next`: an operation on a server's schedule
    (pause its runs, resume them, one extra run now, skip only the next slot), or on a fleet
    schedule's (`target`: `web-*`, `meta:role=web`)."""

    name: ClassVar[str] = "schedule"
    command: ClassVar[str] = "schedule"

    server: ServerRef
    operation: Operation
    target: FleetTarget | None = None  # a fleet schedule's target (see `Schedule.target`)


@dataclass(frozen=True)
class Schedules:
    """List schedules, optionally only the one of `server`."""

    name: ClassVar[str] = "schedules"
    command: ClassVar[str] = "schedules"

    server: ServerRef | None = None
    all: bool = False  # every channel's schedules (admins only)


@dataclass(frozen=True)
class Approvals:
    """List the change requests waiting for a decision."""

    name: ClassVar[str] = "approvals"
    command: ClassVar[str] = "approvals"

    all: bool = False  # every channel's requests (admins only)


@dataclass(frozen=True)
class Approve:
    """Approve a change request."""

    name: ClassVar[str] = "approve"
    command: ClassVar[str] = "approve"

    request_id: str


@dataclass(frozen=True)
class Reject:
    """Reject a change request, optionally saying why."""

    name: ClassVar[str] = "reject"
    command: ClassVar[str] = "reject"

    request_id: str
    reason: str | None = None


@dataclass(frozen=True)
class Help:
    """Show the overview (`topic` None) or one command's help."""

    name: ClassVar[str] = "help"
    command: ClassVar[str] = "help"

    topic: str | None = None


@dataclass(frozen=True)
class NativeSchedule:
    """`schedule <server> daily|weekly <day> [--keep N] --native`: set the cloud's own
    Rackspace Scheduled Images (retention `keep`, weekly on `day`; no time of day)."""

    name: ClassVar[str] = "schedule"
    command: ClassVar[str] = "schedule"

    server: ServerRef
    frequency: Frequency
    day: str | None = None
    keep: int = DEFAULT_KEEP


@dataclass(frozen=True)
class NativeScheduleOff:
    """`schedule <server> off --native`: disable the server's Rackspace Scheduled Images."""

    name: ClassVar[str] = "schedule"
    command: ClassVar[str] = "schedule"

    server: ServerRef


Request: TypeAlias = (
    Create | Status | ListJobs | Cancel | Images | Schedule | ScheduleOff | ScheduleOperation
    | Schedules
    | Approvals | Approve | Reject | Help | Verify | Protect | Unprotect
    | NativeSchedule | NativeScheduleOff
)
