"""Pure pieces of the simulated server lifecycle: boot phases, the console log, and the slot
arithmetic and naming of Rackspace Scheduled Images. `World` (model.py) holds the state.

Sources:
- Boot task states (nova/compute/task_states.py, the build path of compute/manager.py):
  scheduling -> networking -> block_device_mapping -> spawning -> None, vm_state building,
  status BUILD, then ACTIVE; a failed build is vm_state error, status ERROR, with a `fault`.
- Scheduled images (rackerlabs/qonos qonos/worker/snapshot/snapshot.py): the image is named
  `<Daily|Weekly>-<server name truncated>-<unix time>` (at most 255 characters) and carries
  `org.openstack__1__created_by: scheduled_images_service`; culling after a success keeps the
  newest `retention` ACTIVE images of the server with that tag. The API docs (docs-cloud-servers
  post-enable-scheduled-images...rst) spell the tag `org.openstack__1__created-by:
  scheduled-images-service`, so both spellings are recognised when culling.
"""

from __future__ import annotations

import hashlib
import math

BOOT_PHASES: tuple[tuple[str, float], ...] = (
    ("scheduling", 2.0),
    ("networking", 3.0),
    ("block_device_mapping", 3.0),
    ("spawning", 25.0),
)
BOOT_STATES = tuple(state for state, _ in BOOT_PHASES)
DELETE_SECONDS = 3.0  # task_state "deleting" before the server is gone

# Nova's NoValidHost (the scheduler found no host) and MaxRetriesExceeded (every host tried
# failed to spawn) messages (nova/exception.py), the two common build faults.
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
RETRIES_EXCEEDED = ("Exceeded maximum number of retries. Exhausted all hosts available for "
                    "retrying build failures for instance {id}.")

SI_TAG = ("org.openstack__1__created_by", "scheduled_images_service")
SI_TAG_DOCUMENTED = ("org.openstack__1__created-by", "scheduled-images-service")
SI_TRIES = 3  # "up to 3 tries about 1 h apart" (scheduled-images FAQ)
SI_RETRY_SECONDS = 3600.0
DAY_SECONDS = 86400.0
_EPOCH_WEEKDAY = 4  # 1970-01-01 was a Thursday; DAYS in model.py start at SUNDAY


def default_fault(state: str, server_id: str) -> str:
    """The message Nova records when a build fails in `state`."""
    return NO_VALID_HOST if state == "scheduling" else RETRIES_EXCEEDED.format(id=server_id)


def slot_offset(server_id: str) -> float:
    """A stable time of day (seconds after 00:00 UTC) for a server's scheduled images: the
    service picks the time itself to spread the load; the user cannot choose it."""
    digest = hashlib.sha256(server_id.encode()).digest()
    return float(int.from_bytes(digest[:4], "big") % int(DAY_SECONDS))


def next_slot(after: float, offset: float, weekday: int | None, speed: float = 1.0) -> float:
    """The first slot strictly after `after`: daily at `offset` into each (simulated) day, or
    weekly on `weekday` (0 = SUNDAY). A world running `speed` times faster has shorter days."""
    day = DAY_SECONDS / speed
    start = offset / speed
    index = math.floor((after - start) / day) + 1
    while True:
        at = index * day + start
        if at > after and (weekday is None or (index + _EPOCH_WEEKDAY) % 7 == weekday):
            return at
        index += 1


def scheduled_image_name(weekly: bool, server_name: str, at: float) -> str:
    """`Daily-web-1-1700000000` as qonos names it, truncating the server name to fit 255."""
    prefix = "Weekly" if weekly else "Daily"
    stamp = str(int(at))
    room = 255 - len(stamp) - len(prefix) - 2
    return f"{prefix}-{server_name[:room]}-{stamp}"


def is_scheduled_image(properties: dict[str, object]) -> bool:
    """Whether an image carries the scheduled-images tag, in either spelling."""
    return any(properties.get(key) == value for key, value in (SI_TAG, SI_TAG_DOCUMENTED))


def console_log(name: str, distro: str, state: str) -> list[str]:
    """The serial console of a guest: empty before it is spawned, kernel and cloud-init lines
    while spawning, and ending with a login prompt once the guest is up (`state` "up")."""
    if state not in ("spawning", "up"):
        return []
    lines = [
        "[    0.000000] Linux version 5.15.0-91-generic (buildd@lcy02-amd64-045) "
        "(gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0) #101-Ubuntu SMP",
        "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz root=LABEL=cloudimg-rootfs ro "
        "console=tty1 console=ttyS0",
        "[    0.412345] Run /init as init process",
        "[    2.104512] EXT4-fs (vda1): mounted filesystem with ordered data mode",
    ]
    if state == "spawning":
        return lines
    return lines + [
        "[    4.223301] cloud-init[512]: Cloud-init v. 23.3.3 running 'init' at "
        "Mon, 01 Jan 2024 00:00:04 +0000.",
        "[    6.901245] cloud-init[640]: Cloud-init v. 23.3.3 finished. Datasource "
        "DataSourceOpenStackLocal.",
        "",
        f"{distro} {name} ttyS0",
        "",
        f"{name} login: ",
    ]
