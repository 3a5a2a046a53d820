"""Restore tests: does an image boot? Pure decisions over data, no I/O.

A verification boots a throw-away server from an image, waits for it to become ACTIVE (and,
when asked, for a marker in its console log), deletes it and reports. `bot.imaging.verifier`
is the shell: it makes the cloud calls this module asks for and commits what `advance` says,
as `Engine` does for `jobs.advance`.

States: `queued` -> `booting` -> [`console`] -> `deleting` -> `passed` | `failed`. The verdict
is decided before the server is deleted (`outcome`), so a crash while deleting neither loses
it nor leaves the server behind. A `--verify` job's verification is queued once the job has
succeeded (the store's `start_job_verifications`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.cloud.models import Flavor, Image, Server


class VerifyState(StrEnum):
    """Where a verification stands."""

    QUEUED = "queued"
    BOOTING = "booting"
    CONSOLE = "console"
    DELETING = "deleting"
    PASSED = "passed"
    FAILED = "failed"


QUEUED, BOOTING, CONSOLE, DELETING, PASSED, FAILED = tuple(VerifyState)
TERMINAL = frozenset({PASSED, FAILED})
OPEN = frozenset(VerifyState) - TERMINAL
# Metadata on every verify server: how the bot finds its own after a crash.
SERVER_METADATA_KEY = "imagebot_verify_id"
IMAGE_METADATA_KEY = "imagebot_image_id"
# Set on the image when a verification ends, for retention and people (passed | failed).
VERIFIED_PROPERTY = "imagebot_verified"
NAME_PREFIX = "imagebot-verify-"
MAX_BOOT_ATTEMPTS = 3
GIB = 1024 ** 3


@dataclass(frozen=True)
class Verification:
    """One restore test, as stored. Datetimes are timezone-aware UTC."""

    id: str
    state: VerifyState
    image_ref: str  # what the user typed (a name or an id), or the job's image id
    requested_by: str
    channel: str
    created_at: datetime
    updated_at: datetime
    channel_name: str | None = None
    cloud: str | None = None
    job_id: str | None = None  # the job whose thread hears the result (its image, or --verify)
    image_id: str | None = None
    image_name: str | None = None
    console_marker: str | None = None  # `--console TEXT`: wait for it in the console log
    server_name: str | None = None
    server_id: str | None = None
    flavor: str | None = None  # the flavor's name, for the report
    networks: tuple[str, ...] = ()
    boot_attempts: int = 0
    boot_started_at: datetime | None = None
    active_at: datetime | None = None
    deadline_at: datetime | None = None  # of the current phase (boot, console, delete)
    console_seen: bool | None = None  # None: not asked, or the cloud keeps no console log
    outcome: str | None = None  # passed | failed, decided before the server is deleted
    error: str | None = None
    delete_requested_at: datetime | None = None
    deleted_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def boot_seconds(self) -> int | None:
        """Seconds from the boot request to ACTIVE."""
        if self.active_at is None or self.boot_started_at is None:
            return None
        return int((self.active_at - self.boot_started_at).total_seconds())


def ended(check: Verification | None) -> bool:
    """Has this restore test ended (passed or failed)? None (not queued yet): no."""
    return check is not None and check.state in TERMINAL


VERIFY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Verification))
DATETIME_FIELDS = frozenset({"created_at", "updated_at", "boot_started_at", "active_at",
                             "deadline_at", "delete_requested_at", "deleted_at", "finished_at"})


@dataclass(frozen=True)
class VerifyLimits:
    """How long each phase may last."""

    boot: timedelta = timedelta(minutes=15)  # from the boot request to ACTIVE
    console: timedelta = timedelta(minutes=5)  # from ACTIVE to the console marker
    delete_retry: timedelta = timedelta(minutes=1)  # ask again if the server is still there
    delete: timedelta = timedelta(minutes=10)  # then give up saying so (the sweep goes on)


@dataclass(frozen=True)
class VStep:
    """What one look means: a target state (None = stay), fields to set, and events
    (`booting`, `active`, `result`)."""

    target: VerifyState | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class BootPlan:
    """How to boot the throw-away server."""

    name: str
    flavor: Flavor
    networks: tuple[str, ...]
    metadata: Mapping[str, str]


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"


def pick_flavor(flavors: Sequence[Flavor], image: Image) -> Flavor | None:
    """The smallest flavor (RAM, then disk, then vCPUs) that fits the image: RAM >= min_ram,
    a root disk >= min_disk GiB and >= the image's size. Nova refuses smaller ones
    (compute/api.py `_validate_flavor_image_nostatus`); flavors with a 0 GB disk are left
    out for an image-backed boot, as Nova's policy refuses them to non-admins since Ussuri
    (`os_compute_api:servers:create:zero_disk_flavor`)."""
    size_gib = -(-(image.size or 0) // GIB)  # rounded up
    min_disk, min_ram = image.min_disk, image.min_ram
    volume_backed = "block_device_mapping" in image.properties
    fits = [f for f in flavors if f.ram >= min_ram and (
        volume_backed or (f.disk > 0 and f.disk >= max(min_disk, size_gib)))]
    return min(fits, key=lambda f: (f.ram, f.disk, f.vcpus, f.id), default=None)


def server_name(verification: Verification) -> str:
    """`imagebot-verify-<job>` (the job that made or asked for the image), else
    `imagebot-verify-<V id>`."""
    return f"{NAME_PREFIX}{verification.job_id or verification.id}"


def plan_boot(verification: Verification, image: Image, flavors: Sequence[Flavor], *,
              networks: Sequence[str] | None,
              now: datetime, limits: VerifyLimits) -> tuple[BootPlan | None, VStep]:
    """For a queued verification: the boot to make, and the step that records it (committed
    before the boot request, so a crash after it is found by metadata); or no plan and the
    step that fails the verification (an image that is not active, no flavor that fits)."""
    if image.status != "active":
        return None, fail(verification, f"The image is `{image.status}`, not active: there "
                          "is nothing to boot yet.", now, limits)
    flavor = pick_flavor(flavors, image)
    if flavor is None:
        return None, fail(verification, f"No flavor fits the image (min_disk "
                          f"{image.min_disk} GB, min_ram {image.min_ram} MB, size "
                          f"{image.size or 0} bytes).", now, limits)
    name = server_name(verification)
    plan = BootPlan(name=name, flavor=flavor, networks=tuple(networks or ()),
                    metadata={SERVER_METADATA_KEY: verification.id,
                              IMAGE_METADATA_KEY: image.id})
    return plan, VStep(target=BOOTING, fields={
        "image_id": image.id, "image_name": image.name, "server_name": name,
        "flavor": flavor.name, "networks": plan.networks,
        "boot_attempts": verification.boot_attempts + 1, "boot_started_at": now,
        "deadline_at": now + limits.boot}, events=("booting",))


def fail(verification: Verification, message: str, now: datetime,
         limits: VerifyLimits) -> VStep:
    """The verdict is `failed`: delete the server if there is one, else end here."""
    if verification.server_id is None and verification.state == QUEUED:
        return VStep(target=FAILED, fields={"outcome": "failed", "error": message,
                                            "finished_at": now, "deadline_at": None},
                     events=("result",))
    return VStep(target=DELETING, fields={"outcome": "failed", "error": message,
                                          "deadline_at": now + limits.delete})


def _passed(now: datetime, limits: VerifyLimits, **extra: Any) -> VStep:
    return VStep(target=DELETING, fields={"outcome": "passed",
                                          "deadline_at": now + limits.delete, **extra})


def advance(verification: Verification, *, server: Server | None, console: str | None,
            now: datetime, limits: VerifyLimits) -> VStep:
    """What one look at the verify server means (`server` None: it is gone, 404).

    `console` is the tail of the console log while in `console` (None: the cloud keeps no
    console log, e.g. Rackspace answers 501; "" while it is not ready). Only `booting`,
    `console` and `deleting` are advanced."""
    state = verification.state
    if state == DELETING:
        return _deleting(verification, server, now, limits)
    if state not in (BOOTING, CONSOLE):
        return VStep()
    if server is None or server.status == "DELETED":
        return VStep(target=FAILED, fields={
            "outcome": "failed", "finished_at": now, "deleted_at": now, "deadline_at": None,
            "error": "The test server disappeared before the test ended (someone deleted "
                     "it?)."}, events=("result",))
    if state == BOOTING:
        if server.status == "ERROR":
            fault = f": {server.fault}" if server.fault else ""
            return fail(verification, f"The test server failed to boot (status ERROR{fault}).",
                        now, limits)
        if server.status == "ACTIVE":
            if verification.console_marker:
                return VStep(target=CONSOLE, fields={
                    "active_at": now, "deadline_at": now + limits.console}, events=("active",))
            return _passed(now, limits, active_at=now)
        if verification.deadline_at is not None and now > verification.deadline_at:
            task = f", task state {server.task_state}" if server.task_state else ""
            return fail(verification, f"The test server did not become ACTIVE within "
                        f"{_human(limits.boot)} (still {server.status or 'unknown'}{task}).",
                        now, limits)
        return VStep()
    marker = verification.console_marker or ""
    if console is None:
        return _passed(now, limits, console_seen=None)
    if marker in console:
        return _passed(now, limits, console_seen=True)
    if verification.deadline_at is not None and now > verification.deadline_at:
        return VStep(target=DELETING, fields={
            "outcome": "failed", "console_seen": False,
            "deadline_at": now + limits.delete,
            "error": f"The server booted but `{marker}` did not appear in its console log "
                     f"within {_human(limits.console)}."})
    return VStep()


def _deleting(verification: Verification, server: Server | None, now: datetime,
              limits: VerifyLimits) -> VStep:
    outcome = PASSED if verification.outcome == "passed" else FAILED
    if server is None or server.status == "DELETED":
        return VStep(target=outcome, fields={"deleted_at": now, "finished_at": now,
                                             "deadline_at": None}, events=("result",))
    if verification.deadline_at is not None and now > verification.deadline_at:
        return VStep(target=outcome, fields={
            "finished_at": now, "deadline_at": None,
            "error": (verification.error + " " if verification.error else "") +
            f"The test server {verification.server_name} could not be deleted within "
            f"{_human(limits.delete)}; I keep trying."}, events=("result",))
    return VStep()


def rejected(verification: Verification, message: str, now: datetime,
             limits: VerifyLimits) -> VStep:
    """The cloud refused a call of this verification for good (403, 400 ...): before the
    delete that fails the test (and deletes the server, if any); while deleting, the test
    ends at the delete deadline saying so (the sweep goes on trying)."""
    if verification.state == DELETING:
        return _deleting(verification, _STILL_THERE, now, limits)
    return fail(verification, f"The cloud refused: {message}", now, limits)


_STILL_THERE = Server(id="", name="", status="UNKNOWN", vm_state=None, task_state=None)


def should_delete(verification: Verification, now: datetime, limits: VerifyLimits) -> bool:
    """Whether to (re)send DELETE for a verification in `deleting`."""
    asked = verification.delete_requested_at
    return asked is None or now - asked >= limits.delete_retry


def leftovers(servers: Sequence[Server], open_ids: set[str]) -> list[Server]:
    """Our verify servers (by metadata) that no open verification owns: left behind by a
    crash, or by a delete that timed out. They are deleted."""
    return [s for s in servers if s.metadata.get(SERVER_METADATA_KEY)
            and s.metadata[SERVER_METADATA_KEY] not in open_ids
            and s.status != "DELETED" and s.task_state != "deleting"]
