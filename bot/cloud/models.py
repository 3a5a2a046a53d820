"""Typed results of the cloud client. No httpx type or raw status code leaves `bot.cloud`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Server:
    """A Nova server as the bot needs it."""

    id: str
    name: str
    status: str  # ACTIVE, SHUTOFF, ERROR ...; stays ACTIVE while imaging
    vm_state: str | None
    task_state: str | None  # None when idle; image_snapshot, image_uploading, ...
    power_state: int | None = None
    volume_backed: bool = False  # boot from volume: image is 0 bytes + volume snapshots
    data_disks: tuple[str, ...] = ()  # human descriptions of disks the image will NOT include
    flavor: str = ""
    updated: str = ""  # ISO 8601 from Nova, used as the next changes-since cursor
    metadata: Mapping[str, str] = field(default_factory=dict)  # server metadata (verify servers)
    fault: str | None = None  # Nova's `fault.message` of an ERROR server


@dataclass(frozen=True)
class Flavor:
    """A compute flavor: what a throw-away verify server is sized by."""

    id: str
    name: str
    ram: int  # MiB
    disk: int  # GiB; 0 means "as large as the image" (Nova sizes the root disk to it)
    vcpus: int = 1


@dataclass(frozen=True)
class Image:
    """A Glance v2 image."""

    id: str
    name: str
    status: str  # lower-case Glance status
    size: int | None = None
    created_at: str = ""
    updated_at: str = ""
    protected: bool = False
    visibility: str = "private"
    properties: Mapping[str, str] = field(default_factory=dict)
    min_disk: int = 0  # GiB a flavor's root disk needs to boot it
    min_ram: int = 0  # MiB

    @property
    def server_id(self) -> str | None:
        """The server this image was taken of (Nova sets instance_uuid)."""
        value = self.properties.get("instance_uuid")
        return str(value) if value else None


@dataclass(frozen=True)
class Observation:
    """What one batched observe() call saw.

    `servers` holds only servers that changed since the cursor (changes-since semantics) among
    those asked for; `images` holds every asked-for image that still exists; `vanished_images`
    the asked-for ids the cloud no longer has (404 / absent), which is distinct from `killed`.
    `cursor` is what to pass as `since` next time.
    """

    servers: Mapping[str, Server]
    images: Mapping[str, Image]
    vanished_images: frozenset[str]
    cursor: datetime
    requests: int = 0  # HTTP requests this observation cost
