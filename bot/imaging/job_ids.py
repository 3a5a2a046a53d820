"""Start-up check that the next job ids are really free: no image in the cloud carries them.

Every image the bot makes carries `imagebot_job_id=J<n>` (reconciliation after a crash finds a
job's image by it). If a job row was ever lost (a restored backup, a lost write), the store
would hand its id out again and two images would carry one id. So before the first create,
the job sequence is skipped past the highest id any image carries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from bot.cloud.client import CloudClient
from bot.cloud.models import Image
from bot.errors import CloudError
from bot.imaging.images import JOB_METADATA_KEY
from bot.store import AsyncStore, Store
from commands import ids

log = logging.getLogger(__name__)

MAX_PROBES = 1000  # a safety stop for the id-by-id probe after the listing


def highest_job_number(images: Iterable[Image]) -> int:
    """The highest J<n> among the images' `imagebot_job_id` properties (0 if none)."""
    numbers = (ids.id_number(ids.JOB, image.properties.get(JOB_METADATA_KEY, ""))
               for image in images)
    return max((n for n in numbers if n is not None), default=0)


async def skip_past_cloud_job_ids(store: AsyncStore, clients: Iterable[CloudClient], *,
                                  within: float = 30.0) -> int:
    """Skip the job sequence past every `imagebot_job_id` found in these clouds; returns the
    next job number. A cloud that cannot be asked is logged and skipped (the bot still starts).

    The listing is paged and bounded, so the ids right after it are then probed one by one with
    Glance's property filter (`GET /v2/images?imagebot_job_id=J<n>`, as reconciliation does)."""
    for client in clients:
        try:
            async with asyncio.timeout(within):
                await _skip_past(store, client)
        except (CloudError, TimeoutError) as exc:
            log.warning("could not check the cloud for used job ids: %s", exc or "timed out")
    return await store.run(Store.next_job_number)


async def _skip_past(store: AsyncStore, client: CloudClient) -> None:
    highest = highest_job_number(await client.list_images())
    if highest >= await store.run(Store.next_job_number):
        log.warning("images in the cloud already carry job ids up to J%d; "
                    "new jobs start after it", highest)
        await store.run(Store.skip_job_ids_past, highest)
    for _ in range(MAX_PROBES):
        number = await store.run(Store.next_job_number)
        if not await client.find_images_by_metadata(JOB_METADATA_KEY, f"J{number}"):
            break
        log.warning("an image in the cloud already carries J%d; skipping it", number)
        await store.run(Store.skip_job_ids_past, number)
