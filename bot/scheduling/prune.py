"""Deleting what retention chose (`runs.retention_choice`): the one shell for it, used for a
schedule's runs (`loop.ScheduleLoop`) and for each server of a fleet run (`fleet.FleetRuns`).
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.errors import CloudError, CloudUnavailable, NotFound
from bot.scheduling.ports import CloudPort
from bot.scheduling.retention import RetainableImage


async def delete_images(cloud: CloudPort, doomed: Iterable[RetainableImage]
                        ) -> tuple[list[RetainableImage], list[tuple[RetainableImage, str]]]:
    """Delete `doomed`: (deleted, refused with the cloud's reason). A 404 counts as deleted
    (the goal is met); `CloudUnavailable` passes, so the whole retention is tried again next
    tick (deletes are idempotent)."""
    deleted: list[RetainableImage] = []
    refused: list[tuple[RetainableImage, str]] = []
    for image in doomed:
        try:
            await cloud.delete_image(image.id)
        except NotFound:
            pass  # already gone
        except CloudUnavailable:
            raise
        except CloudError as exc:
            refused.append((image, exc.user_message()))
            continue
        deleted.append(image)
    return deleted, refused
