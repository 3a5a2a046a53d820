"""What the bot names and tags each image it makes: the metadata key a crash is reconciled by
(and retention is scoped with), and the default name."""

from __future__ import annotations

from datetime import datetime

from bot.imaging.jobs import Job

JOB_METADATA_KEY = "imagebot_job_id"


def default_image_name(job: Job, now: datetime) -> str:
    """`<server>-<UTC timestamp>`: sortable and unique enough per server."""
    server = job.server_name or job.server_ref
    return f"{server}-{now.strftime('%Y%m%d-%H%M%S')}"[:255]


def image_metadata(job: Job) -> dict[str, str]:
    """Metadata the bot sets on every image: how a crash is reconciled and retention is scoped."""
    meta = {JOB_METADATA_KEY: job.id, "imagebot_requested_by": job.requested_by}
    if job.schedule_id:
        meta["imagebot_schedule_id"] = job.schedule_id
    return meta
