"""In-memory model of the simulated cloud: servers, images, tokens, faults and statistics.

State advances lazily from an injected clock: every public access first applies the transitions
whose time has come (a heap of due events), stamping each with the time it was due, not the time
it was noticed. No background task is needed, a `ManualClock` makes tests deterministic and
thousands of idle servers cost nothing.

Default credentials (other code depends on these exact values):
- Keystone v3 password: user `demo` / password `secret`, project `demo`, user and project
  domain `Default`.
- Keystone v3 application credential: id `demo-app-cred`, secret `demo-app-secret`
  (name `demo-app-cred` with user `demo` also works).
- Rackspace v2.0: user `demo` / api key `demo-api-key` (or password `secret`).

Durations follow the Rackspace small-server trace (image_snapshot ~3 s, image_pending_upload
~14 s, image_uploading ~80 s for a 20 GB disk), scale linearly with the flavor disk, and are
divided by `speed`.

Servers also boot (`create_server`: BUILD through Nova's build task states, ~33 s, then ACTIVE
with a console log ending in a login prompt) and are deleted (`request_delete`: task_state
`deleting`, then gone). On `api="rackspace-legacy"` the world is also Rackspace's Scheduled
Images service: a server with a `rax-si-image-schedule` is imaged once a simulated day (or week),
at a time the service picks, tagged and culled as qonos does (sandbox/cloud/lifecycle.py).
"""

from __future__ import annotations

import fnmatch
import functools
import heapq
import itertools
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.cloud.lifecycle import (
    BOOT_PHASES,
    BOOT_STATES,
    DELETE_SECONDS,
    SI_RETRY_SECONDS,
    SI_TAG,
    SI_TRIES,
    console_log,
    default_fault,
    is_scheduled_image,
    next_slot,
    scheduled_image_name,
    slot_offset,
)

NAMESPACE = uuid.UUID("6c1f3e0a-7d4b-5b6e-9f1a-2c3d4e5f6a7b")

DEMO_USER = "demo"
DEMO_PASSWORD = "secret"
DEMO_PROJECT = "demo"
DEMO_DOMAIN = "Default"
DEMO_APP_CRED_ID = "demo-app-cred"
DEMO_APP_CRED_SECRET = "demo-app-secret"
RAX_USER = "demo"
RAX_API_KEY = "demo-api-key"
REGION = "RegionOne"
RAX_REGION = "DFW"
APIS = ("openstack", "rackspace-legacy")
# Rackspace's own sample of `GET /limits` on an older account (docs-cloud-servers
# api-reference limits samples): changes-since polls are limited to 3 a minute.
RAX_CHANGES_SINCE_PER_MINUTE = 3

MIN_MICROVERSION = (2, 1)
MAX_MICROVERSION = (2, 96)

SNAPSHOT_PHASES: tuple[tuple[str, float], ...] = (
    ("image_snapshot_pending", 1.0),
    ("image_snapshot", 3.0),
    ("image_pending_upload", 14.0),
    ("image_uploading", 80.0),
)
BACKUP_PHASES: tuple[tuple[str, float], ...] = (
    ("image_backup", 4.0),
    ("image_pending_upload", 14.0),
    ("image_uploading", 80.0),
)
# Glance status of the image while the server is in each task state.
_IMAGE_STATUS = {"image_uploading": "saving"}
REFERENCE_DISK_GB = 20
DAYS = ("SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY")
JOB_FAULTS = ("upload_fail", "image_deleted", "stuck", "orphan")
BOOT_FAULTS = ("boot_fail", "boot_hang")
# Networks a new server may ask for. OpenStack: one tenant network. Rackspace: PublicNet and
# ServiceNet by their fixed ids, both attached when `networks` is left out (docs-cloud-servers
# post-create-server-servers.rst).
OPENSTACK_NETWORKS = {"private": str(uuid.uuid5(NAMESPACE, "network:private"))}
RAX_NETWORKS = {"public": "00000000-0000-0000-0000-000000000000",
                "private": "11111111-1111-1111-1111-111111111111"}
# Vm states in which Nova snapshots a server (compute/api.py check_instance_state).
IMAGEABLE_VM_STATES = ("active", "stopped", "paused", "suspended")
HTTP_FAULTS = ("http", "slow", "drop", "garbage", "wrong_shape", "huge", "drip")


def stable_id(kind: str, name: str) -> str:
    """Deterministic UUID for a seeded object, so tests can rely on ids."""
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


def iso(ts: float, *, micro: bool = False) -> str:
    """Format epoch seconds the way Nova/Glance (seconds) or Keystone (`micro`) do."""
    dt = datetime.fromtimestamp(ts, UTC)
    if micro:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """Parse an ISO 8601 timestamp (naive means UTC) to epoch seconds; ValueError if invalid."""
    dt = datetime.fromisoformat(text.strip().replace(" ", "+"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class ManualClock:
    """A clock that only moves when told to; callable like `time.time`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward and return the new time."""
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self.now += seconds
        return self.now


class ScaledClock:
    """Wall-clock time that runs `speed` times faster from the moment it is created."""

    def __init__(self, speed: float = 1.0, *, base: Callable[[], float] = time.time) -> None:
        self.speed = speed
        self._base = base
        self._start = base()

    def __call__(self) -> float:
        return self._start + (self._base() - self._start) * self.speed


class SimError(Exception):
    """An API error the app renders as a fault body (`{"name": {"code", "message"}}`)."""

    def __init__(self, status: int, name: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Flavor:
    """A compute flavor."""

    id: str
    name: str
    ram: int
    vcpus: int
    disk: int
    ephemeral: int = 0
    swap: int = 0


FLAVORS: dict[str, Flavor] = {
    f.id: f
    for f in (
        Flavor("1", "m1.small", 2048, 1, 20),
        Flavor("2", "m1.medium", 4096, 2, 40),
        Flavor("3", "m1.large", 8192, 4, 80),
        Flavor("4", "m1.xlarge", 16384, 8, 160),
        Flavor("5", "m1.large.eph", 8192, 4, 80, ephemeral=100),
    )
}


@dataclass
class InstanceAction:
    """One `os-instance-actions` entry; its result comes from the job when it finishes."""

    action: str
    request_id: str
    start_time: float
    user_id: str
    project_id: str
    event: str
    finish_time: float | None = None
    result: str | None = None  # None while running, then "Success" or "Error"
    message: str | None = None


@dataclass
class Job:
    """A createImage/createBackup in progress on one server."""

    server_id: str
    image_id: str
    kind: str  # "snapshot" | "backup"
    phases: tuple[tuple[str, float], ...]
    started: float
    action: InstanceAction
    backup_type: str | None = None
    rotation: int | None = None
    phase: int = 0
    gen: int = 0  # bumped to invalidate events already on the heap
    fail: tuple[str, str] | None = None  # (mode "killed"|"deleted", task state it strikes in)
    stuck_at: str | None = None
    scheduled: tuple[int, int] | None = None  # (schedule generation, try) for scheduled images


@dataclass
class Build:
    """A server being built (`POST /servers`); `gen` invalidates events already on the heap."""

    action: InstanceAction
    phase: int = 0
    gen: int = 0
    fail_at: str | None = None  # the boot_fail fault: task state in which the build fails
    message: str | None = None
    hang_at: str | None = None  # the boot_hang fault: task state the build never leaves


@dataclass
class ImageSchedule:
    """A Rackspace `rax-si-image-schedule`; `gen` is renewed by every POST and DELETE."""

    retention: int
    day_of_week: str | None
    gen: int
    next_run: float | None = None

    def body(self) -> dict[str, Any]:
        """The `image_schedule` document the API echoes."""
        doc: dict[str, Any] = {"retention": self.retention}
        if self.day_of_week is not None:
            doc["day_of_week"] = self.day_of_week
        return doc


@dataclass
class Server:
    """A Nova server; `task_state`/`updated` are kept current by `World.advance`."""

    id: str
    name: str
    flavor: Flavor
    image_id: str | None  # None for volume-backed (boot from volume)
    created: float
    updated: float
    volumes: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    status: str = "ACTIVE"
    vm_state: str = "active"
    power_state: int = 1
    task_state: str | None = None
    deleted_at: float | None = None
    job: Job | None = None
    actions: list[InstanceAction] = field(default_factory=list)
    schedule: ImageSchedule | None = None
    address: str = "10.0.0.2"
    networks: tuple[str, ...] = ("private",)  # network labels (keys of `addresses`)
    build: Build | None = None
    fault: dict[str, Any] | None = None  # Nova's `fault` of an ERROR server
    launched_at: float | None = None
    failed_in: str | None = None  # the boot task state a failed build stopped in
    deleting: bool = False


@dataclass
class Image:
    """A Glance image; `properties` are the extra (top-level) properties."""

    id: str
    name: str
    status: str
    created_at: float
    updated_at: float
    owner: str
    visibility: str = "private"
    size: int | None = None
    disk_format: str | None = "qcow2"
    container_format: str | None = "bare"
    min_disk: int = 0
    min_ram: int = 0
    protected: bool = False
    checksum: str | None = None
    tags: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Token:
    """An issued token; unknown, expired or revoked tokens give 401."""

    id: str
    issued: float
    expires: float
    methods: list[str]
    revoked: bool = False


@dataclass
class HttpFault:
    """An HTTP-level fault applied to requests whose path matches `path`."""

    id: int
    kind: str  # one of HTTP_FAULTS
    path: re.Pattern[str]
    method: str | None
    remaining: int | None  # None: forever
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    size: int = 0  # huge: bytes sent; drip: bytes sent one at a time
    host: str | None = None  # only requests to this Host (two "clouds" served by one world)


@dataclass
class RateLimits:
    """Rackspace-style per-minute limits by verb; over the limit gives 413 + Retry-After.

    `changes_since_per_minute` adds Rackspace's `GET *changes-since*` limit (counted on top of
    `GET *`). `window` is the length of the "minute" in real seconds (60 / speed for a world
    that runs `speed` times faster, so a sped-up world's published limits stay consistent)."""

    get_per_minute: int = 1000
    post_per_minute: int = 100
    put_per_minute: int = 100
    delete_per_minute: int = 100
    changes_since_per_minute: int | None = None
    window: float = 60.0

    def value(self, verb: str) -> int | None:
        """Limit for a verb, or None when the verb is not limited."""
        return {"GET": self.get_per_minute, "POST": self.post_per_minute,
                "PUT": self.put_per_minute, "DELETE": self.delete_per_minute}.get(verb)


class World:
    """The whole simulated cloud. Thread-safe: every public method takes `self.lock`."""

    def __init__(self, clock: Callable[[], float] | None = None, *, speed: float = 1.0,
                 extra_servers: int = 0, token_ttl: float = 3600.0,
                 rate_limits: RateLimits | None = None, seed: bool = True,
                 api: str = "openstack") -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}")
        self.api = api
        self.region = RAX_REGION if api == "rackspace-legacy" else REGION
        if api == "rackspace-legacy" and rate_limits is None:
            # Rackspace publishes (and enforces) its rate limits; the simulator does too.
            rate_limits = RateLimits(changes_since_per_minute=RAX_CHANGES_SINCE_PER_MINUTE,
                                     window=60.0 / speed)
        self.clock: Callable[[], float] = clock or time.time
        self.speed = speed
        self.token_ttl = token_ttl
        self.rate_limits = rate_limits
        self.lock = threading.RLock()
        self.project_id = uuid.uuid5(NAMESPACE, "project:demo").hex
        self.user_id = uuid.uuid5(NAMESPACE, "user:demo").hex
        self.servers: dict[str, Server] = {}
        self.images: dict[str, Image] = {}
        self.tokens: dict[str, Token] = {}
        self.http_faults: list[HttpFault] = []
        self.stats: Counter[str] = Counter()
        self.status_stats: Counter[str] = Counter()
        self.stats_since = self.clock()
        self._order: list[str] = []  # server ids, newest first (Nova's default sort)
        self._position: dict[str, int] = {}
        self._by_instance: dict[str, set[str]] = {}  # instance_uuid -> image ids
        self._armed: dict[str, list[dict[str, Any]]] = {}  # job faults for the next job
        self._armed_boots: list[dict[str, Any]] = []  # boot faults for the next matching boot
        # Due transitions: (time, tie-breaker, what happens); each callee checks it still holds.
        self._events: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = itertools.count()
        self._image_seq = itertools.count(1)
        self._server_seq = itertools.count(1)
        self._schedule_seq = itertools.count(1)
        self._fault_seq = itertools.count(1)
        self._rate: dict[str, tuple[int, int]] = {}
        if seed:
            self._seed(extra_servers)

    # ---- seeding ------------------------------------------------------------------------

    def _seed(self, extra: int) -> None:
        now = self.clock()
        month_ago = now - 30 * 86400
        for name, size in (("Ubuntu 22.04 (Jammy)", 2_361_393_152),
                           ("Debian 12 (Bookworm)", 1_849_032_704)):
            img = Image(id=stable_id("image", name), name=name, status="active",
                        created_at=month_ago, updated_at=month_ago, owner=self.project_id,
                        visibility="public", size=size, checksum=uuid.uuid5(NAMESPACE, name).hex,
                        properties={"os_distro": name.split()[0].lower()})
            self._add_image(img)
        ubuntu = stable_id("image", "Ubuntu 22.04 (Jammy)")
        debian = stable_id("image", "Debian 12 (Bookworm)")
        base = now - 7 * 86400
        seeds: list[tuple[str, str, str, str | None, list[str]]] = [
            ("web-1", "web-1", "1", ubuntu, []),
            ("web-2", "web-2", "1", ubuntu, []),
            ("db-1", "db-1", "2", None, [stable_id("volume", "db-1-root")]),
            ("data-1", "data-1", "5", debian,
             [stable_id("volume", "data-1-a"), stable_id("volume", "data-1-b")]),
            ("app#1", "app", "2", ubuntu, []),
            ("app#2", "app", "2", debian, []),
        ]
        for i, (key, name, flavor, image, vols) in enumerate(seeds):
            self._add_server(Server(id=stable_id("server", key), name=name, flavor=FLAVORS[flavor],
                                    image_id=image, created=base + i * 60,
                                    updated=base + i * 60 + 30, volumes=vols,
                                    address=f"10.0.0.{10 + i}"))
        cycle = ("1", "1", "2", "3", "1", "2", "1", "3", "2", "4")
        for i in range(1, extra + 1):
            created = base - 86400 + i
            self._add_server(Server(id=stable_id("server", f"load-{i}"), name=f"load-{i}",
                                    flavor=FLAVORS[cycle[i % len(cycle)]],
                                    image_id=ubuntu if i % 2 else debian, created=created,
                                    updated=created + 30,
                                    address=f"10.{1 + i // 65536}.{i // 256 % 256}.{i % 256}"))
        self._reorder()

    def _add_server(self, server: Server) -> None:
        if server.launched_at is None and server.status == "ACTIVE":
            server.launched_at = server.created + 20  # seeded: booted before the world began
        self.servers[server.id] = server

    def _reorder(self) -> None:
        self._order = sorted(self.servers, key=lambda s: (self.servers[s].created, s),
                             reverse=True)
        self._position = {sid: i for i, sid in enumerate(self._order)}

    def add_server(self, name: str, *, flavor: str = "1", volume_backed: bool = False,
                   key: str | None = None, metadata: dict[str, str] | None = None) -> Server:
        """Add an ACTIVE idle server (for tests); its id is derived from `key` or `name`."""
        with self.lock:
            now = self.clock()
            sid = stable_id("server", key or name)
            if sid in self.servers:
                raise ValueError(f"server {key or name} exists")
            server = Server(id=sid, name=name, flavor=FLAVORS[flavor],
                            image_id=None if volume_backed else
                            stable_id("image", "Ubuntu 22.04 (Jammy)"),
                            created=now, updated=now, metadata=dict(metadata or {}),
                            volumes=[stable_id("volume", f"{sid}-root")] if volume_backed else [])
            self._add_server(server)
            self._reorder()
            return server

    def _add_image(self, image: Image) -> None:
        self.images[image.id] = image
        inst = image.properties.get("instance_uuid")
        if inst:
            self._by_instance.setdefault(inst, set()).add(image.id)

    def _drop_image(self, image: Image) -> None:
        self.images.pop(image.id, None)
        inst = image.properties.get("instance_uuid")
        if inst and inst in self._by_instance:
            self._by_instance[inst].discard(image.id)

    # ---- time ---------------------------------------------------------------------------

    def now(self) -> float:
        """Current simulated time (epoch seconds)."""
        return self.clock()

    def advance(self) -> float:
        """Apply every transition that is due; return the current time."""
        with self.lock:
            now = self.clock()
            events = self._events
            while events and events[0][0] <= now:
                due, _, fire = heapq.heappop(events)
                fire(due)
            return now

    def _at(self, at: float, fire: Callable[[float], None]) -> None:
        """Run `fire(at)` once the clock reaches `at` (stamped with `at`, not when noticed)."""
        heapq.heappush(self._events, (at, next(self._seq), fire))

    def _schedule(self, job: Job, at: float) -> None:
        gen = job.gen

        def step(due: float) -> None:
            if job.gen == gen:
                self._step(job, due)

        self._at(at, step)

    def _duration(self, server: Server, base: float) -> float:
        disk = max(server.flavor.disk, 10)
        return base * disk / REFERENCE_DISK_GB / self.speed

    def _enter(self, job: Job, index: int, at: float) -> None:
        """Put the job's server into phase `index` at time `at` and schedule what follows."""
        server = self.servers[job.server_id]
        image = self.images.get(job.image_id)
        job.phase = index
        state, base = job.phases[index]
        server.task_state = state
        server.updated = at
        if image is not None:
            status = _IMAGE_STATUS.get(state, "queued")
            if image.status != status:
                image.status = status
                image.updated_at = at
        if job.stuck_at == state:
            return  # never advances: the stuck-task fault
        self._schedule(job, at + self._duration(server, base))

    def _step(self, job: Job, at: float) -> None:
        """The current phase of `job` has ended at `at`."""
        state = job.phases[job.phase][0]
        if job.fail is not None and job.fail[1] == state:
            self._finish(job, at, ok=False, mode=job.fail[0])
        elif job.phase + 1 < len(job.phases):
            self._enter(job, job.phase + 1, at)
        else:
            self._finish(job, at, ok=True)

    def _finish(self, job: Job, at: float, *, ok: bool, mode: str = "killed") -> None:
        server = self.servers[job.server_id]
        image = self.images.get(job.image_id)
        server.task_state = None
        server.updated = at
        server.job = None
        job.gen += 1
        job.action.finish_time = at
        job.action.result = "Success" if ok else "Error"
        if image is not None and ok:
            image.status = "active"
            image.size = server.flavor.disk * 1024**3 // 8
            image.checksum = uuid.uuid5(NAMESPACE, image.id).hex
            image.updated_at = at
            if job.kind == "backup" and job.rotation is not None:
                self._rotate(server.id, job.backup_type or "", job.rotation)
        elif image is not None and mode == "deleted":
            self._drop_image(image)  # Nova's delete_image_on_error: GET now gives 404
        elif image is not None:
            image.status = "killed"
            image.updated_at = at
        if job.scheduled is not None:
            self._scheduled_done(job, at, ok=ok and image is not None)

    def _rotate(self, server_id: str, backup_type: str, rotation: int) -> None:
        backups = [self.images[i] for i in self._by_instance.get(server_id, ())
                   if self.images[i].properties.get("image_type") == "backup"
                   and self.images[i].properties.get("backup_type") == backup_type
                   and self.images[i].status == "active"]
        backups.sort(key=lambda im: (im.created_at, im.id), reverse=True)
        for old in backups[rotation:]:
            self._drop_image(old)

    # ---- servers ------------------------------------------------------------------------

    def find_server(self, ref: str) -> Server:
        """Server by id or (first) name; KeyError if absent."""
        with self.lock:
            self.advance()
            if ref in self.servers:
                return self.servers[ref]
            for sid in self._order:
                if self.servers[sid].name == ref:
                    return self.servers[sid]
            raise KeyError(ref)

    def get_server(self, server_id: str) -> Server:
        """A live server by id, or SimError 404."""
        with self.lock:
            self.advance()
            server = self.servers.get(server_id)
            if server is None or server.deleted_at is not None:
                raise SimError(404, "itemNotFound", "Instance could not be found.")
            return server

    def list_servers(self, *, changes_since: float | None = None, marker: str | None = None,
                     limit: int | None = None, name: str | None = None,
                     status: str | None = None) -> tuple[list[Server], bool]:
        """Servers newest first after `marker`; returns (page, more_may_follow)."""
        with self.lock:
            self.advance()
            start = 0
            if marker is not None:
                if marker not in self._position:
                    raise SimError(400, "badRequest", f"marker [{marker}] not found")
                start = self._position[marker] + 1
            name_re = re.compile(name) if name else None
            out: list[Server] = []
            servers = self.servers
            for sid in itertools.islice(self._order, start, None):
                s = servers[sid]
                if changes_since is not None:
                    # Nova stores updated_at at second resolution.
                    if math.floor(s.updated) < changes_since:
                        continue
                elif s.deleted_at is not None:
                    continue
                if name_re is not None and not name_re.search(s.name):
                    continue
                if status is not None and s.status != status.upper():
                    continue
                out.append(s)
                if limit is not None and len(out) >= limit:
                    return out, True
            return out, False

    def set_server_metadata(self, server_id: str, metadata: dict[str, str]) -> None:
        """A server's metadata is now `metadata` (Nova bumps `updated`, so changes-since sees
        the server)."""
        with self.lock:
            server = self.get_server(server_id)
            server.metadata = dict(metadata)
            server.updated = self.clock()

    def delete_server(self, server_id: str) -> None:
        """Delete a server at once (it stays visible to changes-since as DELETED)."""
        with self.lock:
            server = self.get_server(server_id)
            self._gone(server, self.clock())

    def request_delete(self, server_id: str) -> None:
        """`DELETE /servers/{id}`: task_state `deleting` for a moment, then gone (404, and
        DELETED to changes-since). An imaging job dies with it; deleting twice is accepted."""
        with self.lock:
            server = self.get_server(server_id)
            if server.deleting:
                return
            now = self.clock()
            server.deleting = True
            if server.build is not None:
                server.build.gen += 1  # the build stops where it is
            if server.job is not None:
                self._finish(server.job, now, ok=False, mode="deleted")
            server.task_state, server.updated = "deleting", now
            self._at(now + DELETE_SECONDS / self.speed,
                     lambda due: self._gone(server, due) if server.deleted_at is None else None)

    def _gone(self, server: Server, at: float) -> None:
        if server.job is not None:
            self._finish(server.job, at, ok=False, mode="deleted")
        if server.build is not None:
            server.build.gen += 1
            server.build = None
        server.status, server.vm_state, server.power_state = "DELETED", "deleted", 0
        server.task_state = None
        server.deleted_at = server.updated = at

    # ---- booting ------------------------------------------------------------------------

    def networks(self) -> dict[str, str]:
        """Network label -> id of the networks a new server may join."""
        return RAX_NETWORKS if self.legacy else OPENSTACK_NETWORKS

    def create_server(self, name: str, image_ref: str, flavor_ref: str, *,
                      networks: list[str] | None = None, metadata: dict[str, str] | None = None,
                      request_id: str = "") -> Server:
        """Boot a server (`POST /servers`): BUILD through Nova's task states, then ACTIVE.

        `networks` are network ids (None: every network, [] for "none"). The checks and
        their messages are Nova's (api/openstack/compute/servers.py create, compute/api.py
        _check_requested_image, nova/exception.py): an unknown flavor or image, an image
        that is not active, a flavor with less RAM or disk than the image needs, all 400."""
        with self.lock:
            now = self.advance()
            flavor = FLAVORS.get(flavor_ref.rstrip("/").rsplit("/", 1)[-1])
            if flavor is None:
                raise SimError(400, "badRequest", "Invalid flavorRef provided.")
            image_id = image_ref.rstrip("/").rsplit("/", 1)[-1]
            image = self.images.get(image_id)
            if image is None:
                raise SimError(400, "badRequest", "Can not find requested image")
            if image.status != "active":
                raise SimError(400, "badRequest", f"Image {image_id} is not active.")
            volume_backed = "block_device_mapping" in image.properties
            self._check_fits(flavor, image, volume_backed=volume_backed)
            by_id = {v: k for k, v in self.networks().items()}
            for net in networks or []:
                if net not in by_id:
                    raise SimError(400, "badRequest", f"Network {net} could not be found.")
            labels = tuple(self.networks()) if networks is None else \
                tuple(dict.fromkeys(by_id[n] for n in networks))
            n = next(self._server_seq)
            sid = str(uuid.uuid5(NAMESPACE, f"booted:{n}"))
            server = Server(
                id=sid, name=name, flavor=flavor,
                image_id=None if volume_backed else image_id, created=now, updated=now,
                volumes=[str(uuid.uuid5(NAMESPACE, f"volume:{sid}"))] if volume_backed else [],
                metadata=dict(metadata or {}), status="BUILD", vm_state="building",
                power_state=0, address=f"10.0.{100 + n // 250}.{n % 250 + 2}",
                networks=labels)
            act = InstanceAction(action="create", request_id=request_id, start_time=now,
                                 user_id=self.user_id, project_id=self.project_id,
                                 event="compute__do_build_and_run_instance")
            server.actions.append(act)
            server.build = Build(action=act)
            self._arm_boot(server)
            self._add_server(server)
            self._reorder()
            self._enter_build(server, 0, now)
            return server

    def _check_fits(self, flavor: Flavor, image: Image, *, volume_backed: bool) -> None:
        """Nova's `_validate_flavor_image_nostatus`: memory first, then the root disk (not for
        a volume-backed image, nor for a flavor whose disk is 0)."""
        if image.min_ram and flavor.ram < image.min_ram:
            raise SimError(400, "badRequest", "Flavor's memory is too small for requested image.")
        if volume_backed or flavor.disk == 0:
            return
        disk = flavor.disk * 1024**3
        if image.size and image.size > disk:
            raise SimError(400, "badRequest",
                           "Flavor's disk is too small for requested image. Flavor disk is "
                           f"{disk} bytes, image is {image.size} bytes.")
        if image.min_disk and image.min_disk * 1024**3 > disk:
            raise SimError(400, "badRequest",
                           "Flavor's disk is smaller than the minimum size specified in image "
                           f"metadata. Flavor disk is {disk} bytes, minimum size is "
                           f"{image.min_disk * 1024**3} bytes.")

    def _arm_boot(self, server: Server) -> None:
        """Apply the first armed boot fault whose `name` pattern matches the new server."""
        for params in self._armed_boots:
            pattern = params.get("name")
            if pattern is None or fnmatch.fnmatchcase(server.name, str(pattern)):
                self._armed_boots.remove(params)
                self._apply_boot_fault(server, params)
                return

    def _apply_boot_fault(self, server: Server, params: dict[str, Any]) -> None:
        build = server.build
        assert build is not None
        if params["kind"] == "boot_fail":
            build.fail_at = params.get("during", "spawning")
            build.message = params.get("message")
            return
        build.hang_at = params.get("task_state", "spawning")
        if BOOT_STATES[build.phase] == build.hang_at and server.task_state == build.hang_at:
            build.gen += 1  # cancel the already scheduled end of this phase

    def _enter_build(self, server: Server, index: int, at: float) -> None:
        build = server.build
        assert build is not None
        build.phase = index
        state, base = BOOT_PHASES[index]
        server.task_state, server.updated = state, at
        if build.hang_at == state:
            return
        gen = build.gen

        def step(due: float) -> None:
            if server.build is build and build.gen == gen:
                self._build_step(server, due)

        self._at(at + base / self.speed, step)

    def _build_step(self, server: Server, at: float) -> None:
        build = server.build
        assert build is not None
        state = BOOT_STATES[build.phase]
        if build.fail_at == state:
            server.status, server.vm_state, server.power_state = "ERROR", "error", 0
            server.fault = {"code": 500, "created": iso(at),
                            "message": build.message or default_fault(state, server.id)}
            server.failed_in = state
            self._end_build(server, at, "Error")
        elif build.phase + 1 < len(BOOT_PHASES):
            self._enter_build(server, build.phase + 1, at)
        else:
            server.status, server.vm_state, server.power_state = "ACTIVE", "active", 1
            server.launched_at = at
            self._end_build(server, at, "Success")

    def _end_build(self, server: Server, at: float, result: str) -> None:
        assert server.build is not None
        server.build.action.finish_time, server.build.action.result = at, result
        server.build = None
        server.task_state, server.updated = None, at

    def console_output(self, server_id: str, length: int | None = None) -> str:
        """The server's console log, its last `length` lines (None or -1: all of it).

        Before a host is chosen (scheduling, or a build that failed there) Nova answers 409
        InstanceNotReady (console_output.py); the log ends with a login prompt once the
        guest is up, never for a build that hangs or fails while spawning."""
        with self.lock:
            server = self.get_server(server_id)
            reached = self._boot_reached(server)
            if reached is None:
                raise SimError(409, "conflictingRequest", f"Instance {server.id} is not ready")
            lines = console_log(server.name, self._distro(server), reached)
            if length is not None and length >= 0:
                lines = lines[-length:] if length else []
            return "\n".join(lines)

    def _boot_reached(self, server: Server) -> str | None:
        """How far the guest got: None before a host, "host", "spawning" or "up"."""
        state = BOOT_STATES[server.build.phase] if server.build is not None \
            else server.failed_in
        if state is None:
            return "up"
        return None if state == "scheduling" else state if state == "spawning" else "host"

    def _distro(self, server: Server) -> str:
        image = self.images.get(server.image_id or "")
        while image is not None and "base_image_ref" in image.properties:
            image = self.images.get(str(image.properties["base_image_ref"]))
        return image.name.split(" (")[0] if image is not None else "Linux"

    def _busy(self, server: Server, action: str) -> None:
        if server.task_state is not None:
            raise SimError(409, "conflictingRequest",
                           f"Cannot '{action}' instance {server.id} while it is in task_state "
                           f"{server.task_state}")
        if server.vm_state not in IMAGEABLE_VM_STATES:
            raise SimError(409, "conflictingRequest",
                           f"Cannot '{action}' instance {server.id} while it is in vm_state "
                           f"{server.vm_state}")

    def create_image(self, server_id: str, name: str, metadata: dict[str, str] | None = None, *,
                     request_id: str = "", backup_type: str | None = None,
                     rotation: int | None = None) -> Image:
        """Start a snapshot (or a backup when `backup_type` is given); returns the new image."""
        with self.lock:
            server = self.get_server(server_id)
            kind = "backup" if backup_type is not None else "snapshot"
            action = "createBackup" if kind == "backup" else "createImage"
            if kind == "backup" and server.image_id is None:
                raise SimError(400, "badRequest",
                               "It is not allowed to create a backup of a volume-backed instance")
            self._busy(server, action)
            return self._start_image(server, name, metadata, at=self.clock(),
                                     request_id=request_id, backup_type=backup_type,
                                     rotation=rotation)

    def _start_image(self, server: Server, name: str, metadata: dict[str, str] | None, *,
                     at: float, request_id: str, backup_type: str | None = None,
                     rotation: int | None = None) -> Image:
        """Register the image and start the job (the checks are the caller's)."""
        now = at
        kind = "backup" if backup_type is not None else "snapshot"
        action = "createBackup" if kind == "backup" else "createImage"
        image_id = str(uuid.uuid5(NAMESPACE, f"snapshot:{next(self._image_seq)}"))
        props: dict[str, Any] = {
            "instance_uuid": server.id,
            "image_type": kind,
            "user_id": self.user_id,
            "owner_project_name": DEMO_PROJECT,
            "owner_user_name": DEMO_USER,
            "boot_roles": "member,reader",
        }
        if server.image_id is not None:
            props["base_image_ref"] = server.image_id
        if backup_type is not None:
            props["backup_type"] = backup_type
        props.update(metadata or {})
        image = Image(id=image_id, name=name, status="queued", created_at=now,
                      updated_at=now, owner=self.project_id,
                      min_disk=server.flavor.disk, min_ram=0, properties=props)
        act = InstanceAction(action=action, request_id=request_id, start_time=now,
                             user_id=self.user_id, project_id=self.project_id,
                             event=f"compute_{kind}_instance")
        server.actions.append(act)
        if server.image_id is None:
            # Volume-backed: Nova snapshots the volumes synchronously and registers a
            # zero-size image pointing at the Cinder snapshots.
            image.status, image.size = "active", 0
            image.disk_format = image.container_format = None
            image.properties["block_device_mapping"] = [
                {"boot_index": i if i == 0 else None, "source_type": "snapshot",
                 "destination_type": "volume", "device_name": f"/dev/vd{chr(97 + i)}",
                 "snapshot_id": str(uuid.uuid5(NAMESPACE, f"volsnap:{image_id}:{v}")),
                 "volume_size": server.flavor.disk or 20, "delete_on_termination": False}
                for i, v in enumerate(server.volumes)]
            image.properties["root_device_name"] = "/dev/vda"
            image.checksum = None
            self._add_image(image)
            act.finish_time, act.result = now, "Success"
            server.updated = now
            return image
        self._add_image(image)
        phases = BACKUP_PHASES if kind == "backup" else SNAPSHOT_PHASES
        job = Job(server_id=server.id, image_id=image_id, kind=kind, phases=phases,
                  started=now, action=act, backup_type=backup_type, rotation=rotation)
        server.job = job
        for fault in self._armed.pop(server.id, []):
            try:
                self._apply_job_fault(job, fault)
            except ValueError:
                pass  # e.g. a snapshot-only task state armed before a backup: no effect
        self._enter(job, 0, now)
        return image

    # ---- images -------------------------------------------------------------------------

    def get_image(self, image_id: str) -> Image:
        """An image by id, or SimError 404."""
        with self.lock:
            self.advance()
            image = self.images.get(image_id)
            if image is None:
                raise SimError(404, "itemNotFound", f"No image found with ID {image_id}")
            return image

    def delete_image(self, image_id: str) -> None:
        """Delete an image; 403 when protected."""
        with self.lock:
            image = self.get_image(image_id)
            if image.protected:
                raise SimError(403, "forbidden", f"Image {image_id} is protected and cannot "
                               "be deleted.")
            self._drop_image(image)

    def update_image(self, image_id: str, ops: Any) -> Image:
        """`PATCH /v2/images/{id}` (glance/api/v2/images.py: RequestDeserializer.update and
        ImagesController.update): a list of `add`/`replace`/`remove` on `/<attribute>`;
        read-only attributes are 403, `replace`/`remove` of a missing property 409, a
        non-boolean `protected` or a non-string property 400. The sim changes `name`,
        `protected`, `min_disk`, `min_ram` and extra properties; other attributes are 400."""
        with self.lock:
            image = self.get_image(image_id)
            if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
                raise SimError(400, "badRequest", "Request body must be a JSON array of "
                               "operation objects.")
            changed = Image(**{**image.__dict__, "properties": dict(image.properties)})
            for op in ops:
                kind, path = op.get("op"), op.get("path")
                if kind not in ("add", "replace", "remove"):
                    raise SimError(400, "badRequest", "Unable to find `op` in JSON Schema "
                                   "change. It must be one of the following: add, remove, "
                                   "replace.")
                if not isinstance(path, str) or not path.startswith("/") or "/" in path[1:]:
                    raise SimError(400, "badRequest", f"Invalid JSON pointer for this "
                                   f"resource: '{path}'")
                key = path[1:]
                if key in _READ_ONLY:
                    raise SimError(403, "forbidden", f"Attribute '{key}' is read-only.")
                if kind != "remove" and "value" not in op:
                    raise SimError(400, "badRequest", "Operation objects must contain "
                                   "exactly one member named \"value\".")
                value = op.get("value")
                if key == "protected":
                    if kind == "remove" or not isinstance(value, bool):
                        raise SimError(400, "badRequest", "Invalid value for 'protected': "
                                       "must be a boolean.")
                    changed.protected = value
                elif key == "name":
                    if kind == "remove" or not isinstance(value, str) or len(value) > 255:
                        raise SimError(400, "badRequest", "Invalid value for 'name'.")
                    changed.name = value
                elif key in ("min_disk", "min_ram"):
                    if kind == "remove" or not isinstance(value, int) or value < 0:
                        raise SimError(400, "badRequest", f"Invalid value for '{key}'.")
                    setattr(changed, key, value)
                elif key in _CORE_FIELDS or key in ("tags", "visibility"):
                    raise SimError(400, "badRequest", f"The sim does not change '{key}'.")
                elif kind == "remove":
                    if key not in changed.properties:
                        raise SimError(409, "conflict", f"Property {key} does not exist.")
                    del changed.properties[key]
                else:
                    if kind == "replace" and key not in changed.properties:
                        raise SimError(409, "conflict", f"Property {key} does not exist.")
                    if not isinstance(value, str) or len(value) > 255:
                        raise SimError(400, "badRequest", f"Invalid value for '{key}': must "
                                       "be a string of at most 255 characters.")
                    changed.properties[key] = value
            for name in ("name", "protected", "min_disk", "min_ram", "properties"):
                setattr(image, name, getattr(changed, name))
            image.updated_at = self.clock()
            return image

    def server_interfaces(self, server_id: str) -> list[dict[str, Any]]:
        """`GET /servers/{id}/os-interface` (Nova api-ref "List Port Interfaces"): one
        attachment per network the server is on."""
        with self.lock:
            server = self.get_server(server_id)
            ids = self.networks()
            return [{"net_id": ids.get(label, str(uuid.uuid5(NAMESPACE, f"network:{label}"))),
                     "port_id": str(uuid.uuid5(NAMESPACE, f"port:{server.id}:{label}")),
                     "port_state": "ACTIVE", "mac_addr": "fa:16:3e:00:00:01",
                     "fixed_ips": [{"ip_address": server.address,
                                    "subnet_id": str(uuid.uuid5(NAMESPACE, f"subnet:{label}"))}]}
                    for label in server.networks]

    def query_images(self, filters: dict[str, str], *, sort: list[tuple[str, str]],
                     marker: str | None, limit: int,
                     literal: bool = False) -> tuple[list[Image], bool]:
        """Glance list semantics (filters already parsed to strings); (page, has_more).

        `literal`: the older Glance v2 of Rackspace Cloud Images, which documents only direct
        comparison filters on image attributes (docs-cloud-images get-list-images-images.rst):
        no `in:` or other operators (`id=in:a,b` compares the id with the text `in:a,b`), and a
        filter on anything that is not an image attribute (an extra property, `sort`) matches
        nothing, the worst a client that trusts the filter can meet."""
        with self.lock:
            self.advance()
            filters = dict(filters)
            candidates: Iterable[Image]
            if literal:
                preds = [_literal_predicate(k, v) for k, v in filters.items()]
                matched = [im for im in self.images.values() if all(p(im) for p in preds)]
                return self._page_images(matched, sort, marker, limit)
            id_f = filters.pop("id", None)
            inst_f = filters.get("instance_uuid")
            if id_f is not None:
                ids = id_f[3:].split(",") if id_f.startswith("in:") else [id_f]
                candidates = [self.images[i] for i in dict.fromkeys(ids) if i in self.images]
            elif inst_f is not None and not inst_f.startswith("in:"):
                candidates = [self.images[i] for i in self._by_instance.get(inst_f, ())]
            else:
                candidates = self.images.values()
            preds = [_image_predicate(k, v) for k, v in filters.items()]
            matched = [im for im in candidates if all(p(im) for p in preds)]
            return self._page_images(matched, sort, marker, limit)

    def _page_images(self, matched: list[Image], sort: list[tuple[str, str]],
                     marker: str | None, limit: int) -> tuple[list[Image], bool]:
        with self.lock:
            for key, direction in reversed(sort):
                matched.sort(key=functools.partial(_sort_key, key=key),
                             reverse=direction == "desc")
            if marker is not None:
                pos = next((i for i, im in enumerate(matched) if im.id == marker), None)
                if pos is None:
                    if marker not in self.images:
                        raise SimError(400, "badRequest", f"Invalid marker {marker}")
                    pos = -1
                matched = matched[pos + 1:]
            return matched[:limit], len(matched) > limit

    # ---- Rackspace scheduled images -----------------------------------------------------

    def get_schedule(self, server_id: str) -> dict[str, Any]:
        """The server's image schedule, or the documented 404."""
        with self.lock:
            server = self.get_server(server_id)
            if server.schedule is None:
                raise SimError(404, "itemNotFound",
                               f"Image schedule does not exist for server {server_id}")
            return server.schedule.body()

    def set_schedule(self, server_id: str, body: Any) -> dict[str, Any]:
        """Enable or replace the schedule (validates retention 1..65535 and day_of_week); the
        service then images the server once a (simulated) day, or week on `day_of_week`."""
        with self.lock:
            server = self.get_server(server_id)
            sched = body.get("image_schedule") if isinstance(body, dict) else None
            if not isinstance(sched, dict):
                raise SimError(400, "badRequest", "Missing image_schedule")
            # Strictly as documented (post-enable-scheduled-images-servers-server-id-rax-si-
            # scheduled-image.rst): retention an Int 1..65535 (not "7"), day_of_week one of
            # the upper-case SUNDAY..SATURDAY (not "saturday").
            retention = sched.get("retention")
            if (not isinstance(retention, int) or isinstance(retention, bool)
                    or not 1 <= retention <= 65535):
                raise SimError(400, "badRequest",
                               "retention must be an integer between 1 and 65535")
            extra = set(sched) - {"retention", "day_of_week"}
            if extra:
                raise SimError(400, "badRequest", f"Unknown keys: {', '.join(sorted(extra))}")
            day: str | None = None
            if "day_of_week" in sched:
                raw = sched["day_of_week"]
                if not isinstance(raw, str) or raw not in DAYS:
                    raise SimError(400, "badRequest",
                                   "day_of_week must be one of " + ", ".join(DAYS))
                day = raw
            server.schedule = ImageSchedule(retention, day, next(self._schedule_seq))
            self._arm_slot(server, server.schedule, self.clock())
            return server.schedule.body()

    def delete_schedule(self, server_id: str) -> None:
        """Disable scheduled images (404 when none); images already taken stay."""
        with self.lock:
            self.get_schedule(server_id)
            self.servers[server_id].schedule = None

    def _live_schedule(self, server_id: str, gen: int) -> tuple[Server, ImageSchedule] | None:
        server = self.servers[server_id]
        sched = server.schedule
        if sched is None or sched.gen != gen or server.deleted_at is not None:
            return None  # replaced, disabled or the server is gone: this event is stale
        return server, sched

    def _arm_slot(self, server: Server, sched: ImageSchedule, after: float) -> None:
        weekday = DAYS.index(sched.day_of_week) if sched.day_of_week else None
        sched.next_run = next_slot(after, slot_offset(server.id), weekday, self.speed)
        sid, gen = server.id, sched.gen

        def slot(due: float) -> None:
            live = self._live_schedule(sid, gen)
            if live is not None:
                self._arm_slot(live[0], live[1], due)
                self._si_attempt(sid, gen, 1, due)

        self._at(sched.next_run, slot)

    def _si_attempt(self, server_id: str, gen: int, tries: int, at: float) -> None:
        """One try of a scheduled image; a busy server is tried again about an hour later."""
        live = self._live_schedule(server_id, gen)
        if live is None:
            return
        server, sched = live
        if server.task_state is not None or server.vm_state not in IMAGEABLE_VM_STATES:
            self._si_retry(server_id, gen, tries, at)
            return
        name = scheduled_image_name(sched.day_of_week is not None, server.name, at)
        image = self._start_image(server, name, dict([SI_TAG]), at=at,
                                  request_id=f"req-{uuid.uuid5(NAMESPACE, f'si:{name}')}")
        if server.job is not None and server.job.image_id == image.id:
            server.job.scheduled = (gen, tries)
        else:  # volume-backed: already active
            self._cull_scheduled(server)

    def _si_retry(self, server_id: str, gen: int, tries: int, at: float) -> None:
        if tries < SI_TRIES:
            self._at(at + SI_RETRY_SECONDS / self.speed,
                     lambda due: self._si_attempt(server_id, gen, tries + 1, due))

    def _scheduled_done(self, job: Job, at: float, *, ok: bool) -> None:
        assert job.scheduled is not None
        gen, tries = job.scheduled
        if ok:
            self._cull_scheduled(self.servers[job.server_id])
        else:
            self._si_retry(job.server_id, gen, tries, at)

    def _cull_scheduled(self, server: Server) -> None:
        """Keep the newest `retention` ACTIVE tagged images of the server (qonos
        _process_retention, after a success only); an untagged or protected image stays."""
        if server.schedule is None:
            return  # qonos reads the retention afresh: disabled means nothing is culled
        tagged = [self.images[i] for i in self._by_instance.get(server.id, ())
                  if self.images[i].status == "active"
                  and is_scheduled_image(self.images[i].properties)]
        tagged.sort(key=lambda im: (im.created_at, im.id), reverse=True)
        for old in tagged[server.schedule.retention:]:
            if not old.protected:
                self._drop_image(old)

    # ---- tokens -------------------------------------------------------------------------

    def issue_token(self, methods: list[str]) -> Token:
        """Create a token valid for `token_ttl` seconds."""
        with self.lock:
            now = self.clock()
            token = Token(id=uuid.uuid4().hex, issued=now, expires=now + self.token_ttl,
                          methods=methods)
            self.tokens[token.id] = token
            return token

    def check_token(self, token_id: str | None) -> Token | None:
        """The token if it is known, unexpired and not revoked."""
        if not token_id:
            return None
        with self.lock:
            token = self.tokens.get(token_id)
            if token is None or token.revoked or token.expires <= self.clock():
                return None
            return token

    # ---- rate limits --------------------------------------------------------------------

    @property
    def legacy(self) -> bool:
        """Serving Rackspace's legacy shape (`--api rackspace-legacy`)."""
        return self.api == "rackspace-legacy"

    def check_rate(self, verb: str, query: str = "") -> float | None:
        """Count a request; seconds to wait if it is over a limit (None when allowed)."""
        if self.rate_limits is None:
            return None
        buckets: list[tuple[str, int]] = []
        limit = self.rate_limits.value(verb)
        if limit is not None:
            buckets.append((verb, limit))
        per_cs = self.rate_limits.changes_since_per_minute
        if verb == "GET" and per_cs is not None and "changes-since" in query:
            buckets.append(("GET changes-since", per_cs))
        if not buckets:
            return None
        period = self.rate_limits.window
        with self.lock:
            now = self.clock()
            window = int(now // period)
            counts: list[tuple[str, int]] = []
            for key, value in buckets:
                start, count = self._rate.get(key, (window, 0))
                if start != window:
                    count = 0
                if count >= value:
                    return max(1.0, math.ceil((window + 1) * period - now))
                counts.append((key, count))
            for key, count in counts:
                self._rate[key] = (window, count + 1)
            return None

    # ---- faults -------------------------------------------------------------------------

    def inject(self, kind: str, **params: Any) -> dict[str, Any]:
        """Inject a fault; returns a description (with `id` for HTTP faults).

        Job faults (`server` = id or name; strike the running job, else the next one):
        - `upload_fail` (`during`="image_uploading"): image -> killed, task_state cleared.
        - `image_deleted` (`during`="image_uploading"): image deleted (later 404), task cleared.
        - `stuck` (`task_state`="image_uploading"): the job never leaves that task state.
        - `orphan`: task_state cleared now (nova-compute restart); the image stays as it is.
        Boot faults (`server` = a server being built, else armed for the next boot whose name
        matches the glob `name`, any boot when absent):
        - `boot_fail` (`during`="spawning", optional `message`): the build ends in ERROR with a
          `fault` (Nova's NoValidHost message when it fails in scheduling).
        - `boot_hang` (`task_state`="spawning"): the server stays in BUILD in that task state.
        HTTP faults (`path` regex searched in the URL path, optional `method` and `host`,
        `count` requests, default 1; `count`=None is forever):
        - `http` (`status`=503, optional `retry_after` seconds) e.g. 500/503/429/413.
        - `slow` (`delay` seconds) then the normal response.
        - `drop` (`delay`=60): hang, then close without a response.
        - `garbage`: 200 with an HTML page (a proxy or a half-deployed service).
        - `wrong_shape`: 200 with JSON that is not the expected document (`{"error": ...}`).
        - `huge` (`size`=300 MB): 200 with a JSON body of that size, streamed.
        - `drip` (`delay`=2, `size`=64): 200 whose body comes one byte every `delay` seconds.
        Other: `revoke_tokens` (all tokens issued so far), `clear` (all HTTP and armed faults).
        """
        with self.lock:
            self.advance()
            if kind in HTTP_FAULTS:
                fault = HttpFault(id=next(self._fault_seq), kind=kind,
                                  path=re.compile(params.get("path", ".*")),
                                  method=(params.get("method") or None),
                                  remaining=params.get("count", 1),
                                  status=int(params.get("status", 503)),
                                  retry_after=params.get("retry_after"),
                                  delay=float(params.get("delay", {"drop": 60.0, "drip": 2.0}
                                                         .get(kind, 0.0))),
                                  size=int(params.get("size", {"huge": 300 * 1024 * 1024,
                                                               "drip": 64}.get(kind, 0))),
                                  host=(str(params["host"]).lower() if params.get("host")
                                        else None))
                if fault.method:
                    fault.method = fault.method.upper()
                self.http_faults.append(fault)
                return {"id": fault.id, "kind": kind, "path": fault.path.pattern,
                        "method": fault.method, "count": fault.remaining}
            if kind == "revoke_tokens":
                n = 0
                for token in self.tokens.values():
                    if not token.revoked:
                        token.revoked, n = True, n + 1
                return {"kind": kind, "revoked": n}
            if kind == "clear":
                self.http_faults.clear()
                self._armed.clear()
                self._armed_boots.clear()
                return {"kind": kind}
            if kind in BOOT_FAULTS:
                return self._inject_boot(dict(params, kind=kind))
            if kind not in JOB_FAULTS:
                raise ValueError(f"unknown fault kind {kind!r}")
            if "server" not in params:
                raise ValueError(f"fault {kind} needs a server")
            try:
                server = self.find_server(str(params["server"]))
            except KeyError:
                raise ValueError(f"no server {params['server']!r}") from None
            known = {s for s, _ in SNAPSHOT_PHASES + BACKUP_PHASES}
            state = params.get("task_state" if kind == "stuck" else "during")
            if state is not None and state not in known:
                raise ValueError(f"unknown task state {state!r}")
            fault_params = dict(params, kind=kind)
            if server.job is not None:
                self._apply_job_fault(server.job, fault_params)
                where = "running"
            elif kind == "orphan":
                raise ValueError(f"server {server.name} has no imaging job to orphan")
            else:
                self._armed.setdefault(server.id, []).append(fault_params)
                where = "armed"
            return {"kind": kind, "server": server.id, "applies_to": where}

    def _inject_boot(self, params: dict[str, Any]) -> dict[str, Any]:
        state = params.get("during" if params["kind"] == "boot_fail" else "task_state",
                           "spawning")
        if state not in BOOT_STATES:
            raise ValueError(f"unknown boot task state {state!r}")
        if "server" not in params:
            self._armed_boots.append(params)
            return {"kind": params["kind"], "name": params.get("name"), "applies_to": "armed"}
        try:
            server = self.find_server(str(params["server"]))
        except KeyError:
            raise ValueError(f"no server {params['server']!r}") from None
        if server.build is None:
            raise ValueError(f"server {server.name} is not being built")
        if BOOT_STATES.index(state) < server.build.phase:
            raise ValueError(f"server {server.name} is already past {state}")
        self._apply_boot_fault(server, params)
        return {"kind": params["kind"], "server": server.id, "applies_to": "running"}

    def _apply_job_fault(self, job: Job, params: dict[str, Any]) -> None:
        kind = params["kind"]
        states = [s for s, _ in job.phases]
        if kind in ("upload_fail", "image_deleted"):
            during = params.get("during", "image_uploading")
            if during not in states:
                raise ValueError(f"task state {during!r} is not part of a {job.kind}")
            job.fail = ("killed" if kind == "upload_fail" else "deleted", during)
        elif kind == "stuck":
            state = params.get("task_state", "image_uploading")
            if state not in states:
                raise ValueError(f"task state {state!r} is not part of a {job.kind}")
            job.stuck_at = state
            if job.phases[job.phase][0] == state:
                job.gen += 1  # cancel the already scheduled end of this phase
        elif kind == "orphan":
            server = self.servers[job.server_id]
            job.gen += 1
            server.job, server.task_state = None, None
            server.updated = self.clock()
            job.action.finish_time, job.action.result = server.updated, "Error"

    def take_http_fault(self, method: str, path: str,
                        host: str | None = None) -> HttpFault | None:
        """The first HTTP fault matching this request (consuming one of its uses)."""
        if not self.http_faults:
            return None
        with self.lock:
            for fault in self.http_faults:
                if fault.method and fault.method != method:
                    continue
                if fault.host and fault.host != (host or "").lower().split(":")[0]:
                    continue
                if not fault.path.search(path):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.http_faults.remove(fault)
                return fault
            return None

    # ---- statistics ---------------------------------------------------------------------

    def record(self, method: str, route: str, status: int) -> None:
        """Count one request by `METHOD route-template` and by status code."""
        with self.lock:
            self.stats[f"{method} {route}"] += 1
            self.status_stats[str(status)] += 1

    def stats_snapshot(self) -> dict[str, Any]:
        """Counts since start or the last reset."""
        with self.lock:
            return {"since": iso(self.stats_since), "total": sum(self.stats.values()),
                    "routes": dict(sorted(self.stats.items())),
                    "statuses": dict(sorted(self.status_stats.items()))}

    def reset_stats(self) -> None:
        """Zero the request counters."""
        with self.lock:
            self.stats.clear()
            self.status_stats.clear()
            self.stats_since = self.clock()

    # ---- inspection ---------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """The whole world as JSON-able data (for `GET /_sim/state`)."""
        with self.lock:
            now = self.advance()
            return {
                "now": iso(now),
                "speed": self.speed,
                "servers": [
                    {"id": s.id, "name": s.name, "status": s.status, "task_state": s.task_state,
                     "updated": iso(s.updated), "flavor": s.flavor.name,
                     "volume_backed": s.image_id is None,
                     "schedule": None if s.schedule is None else dict(
                         s.schedule.body(), next_run=iso(s.schedule.next_run or now)),
                     "job_image": s.job.image_id if s.job else None}
                    for s in (self.servers[i] for i in self._order)],
                "images": [
                    {"id": im.id, "name": im.name, "status": im.status,
                     "instance_uuid": im.properties.get("instance_uuid"),
                     "created_at": iso(im.created_at), "size": im.size,
                     "properties": dict(im.properties)}
                    for im in self.images.values()],
                "faults": {
                    "http": [{"id": f.id, "kind": f.kind, "path": f.path.pattern,
                              "method": f.method, "remaining": f.remaining}
                             for f in self.http_faults],
                    "armed": {k: [p["kind"] for p in v] for k, v in self._armed.items()},
                    "boot": [{"kind": p["kind"], "name": p.get("name")}
                             for p in self._armed_boots],
                },
                "tokens": len(self.tokens),
            }


# ---- Glance filter helpers ----------------------------------------------------------------

# Glance's read-only image attributes (glance/api/v2/images.py _readonly_properties plus
# the reserved ones).
_READ_ONLY = frozenset({"id", "status", "created_at", "updated_at", "size", "virtual_size",
                        "checksum", "os_hash_algo", "os_hash_value", "self", "file", "schema",
                        "direct_url", "owner", "locations"})
_CORE_FIELDS = {"name", "status", "visibility", "owner", "protected", "container_format",
                "disk_format", "size", "min_disk", "min_ram", "checksum", "os_hidden"}


def image_field(image: Image, key: str) -> Any:
    """Value of a core field or an extra property (None when absent)."""
    if key in ("created_at", "updated_at"):
        return getattr(image, key)
    if key == "os_hidden":
        return False
    if key in _CORE_FIELDS:
        return getattr(image, key)
    return image.properties.get(key)


def _sort_key(image: Image, *, key: str) -> tuple[int, Any]:
    value = image_field(image, key) if key != "id" else image.id
    return (0, "") if value is None else (1, value)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_LEGACY_FILTERS = _CORE_FIELDS - {"os_hidden"} | {"id"}


def _literal_predicate(key: str, raw: str) -> Callable[[Image], bool]:
    """One filter of Rackspace's older Glance v2: size_min/max, tag, else direct comparison on
    an image attribute; anything else matches nothing."""
    if key in ("size_min", "size_max", "tag"):
        return _image_predicate(key, raw)
    if key not in _LEGACY_FILTERS:
        return lambda im: False

    def equals(im: Image) -> bool:
        value = im.id if key == "id" else image_field(im, key)
        return value is not None and _as_text(value) == raw

    return equals


def _image_predicate(key: str, raw: str) -> Callable[[Image], bool]:
    """Build one Glance filter: `in:a,b`, time operators, size_min/max, tag, or equality."""
    if key in ("created_at", "updated_at"):
        op, _, value = raw.partition(":")
        if op not in ("gt", "gte", "lt", "lte", "eq", "neq") or not value:
            raise SimError(400, "badRequest", f"Invalid {key} filter {raw}")
        try:
            ts = parse_iso(value)
        except ValueError:
            raise SimError(400, "badRequest", f"Invalid time format for {key}") from None
        cmp: dict[str, Callable[[float], bool]] = {
            "gt": lambda t: t > ts, "gte": lambda t: t >= ts, "lt": lambda t: t < ts,
            "lte": lambda t: t <= ts, "eq": lambda t: t == ts, "neq": lambda t: t != ts}
        test = cmp[op]
        return lambda im: test(float(math.floor(getattr(im, key))))
    if key in ("size_min", "size_max"):
        try:
            bound = int(raw)
        except ValueError:
            raise SimError(400, "badRequest", f"Invalid {key}") from None
        if key == "size_min":
            return lambda im: im.size is not None and im.size >= bound
        return lambda im: im.size is not None and im.size <= bound
    if key == "tag":
        return lambda im: raw in im.tags
    if raw.startswith("in:"):
        allowed = {v.strip('"') for v in raw[3:].split(",")}
        return lambda im: _as_text(image_field(im, key)) in allowed
    if raw.startswith("eq:") and key in _CORE_FIELDS:
        raw = raw[3:]

    def equals(im: Image) -> bool:
        value = image_field(im, key)
        return value is not None and _as_text(value) == raw

    return equals
