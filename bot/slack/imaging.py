"""The Slack side of image jobs: `/image create|status|list|cancel|images` and the Start
snapshot / Cancel buttons. Listeners only ack, parse, check permission and write a row; the
engine does the cloud work. The one exception is the read-only `images` answer, which runs
after the ack (the router's follow-up, in a task of `LazyWork`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_bolt.async_app import AsyncApp

import commands
from bot.blocks import escape
from bot.cloud.client import CloudClient
from bot.cloud.models import Image
from bot.cloud.pool import CloudPool
from bot.errors import ConflictingUpdate, JobError, NotFound, ServerInUse
from bot.imaging import jobs
from bot.imaging import messages as render
from bot.imaging.jobs import Job
from bot.imaging.messages import CANCEL_ACTION, START_ACTION
from bot.imaging.verify import QUEUED as VERIFY_QUEUED
from bot.policy import (
    DISABLED_TEXT,
    ChannelPolicy,
    allowed_to_create,
    not_here,
    refuse,
    same_channel,
)
from bot.slack.app import SlackDeps
from bot.slack.notifier import NO_THREAD
from bot.slack.routing import Channels, button_listener
from bot.slack.types import FollowUp, Invocation, Reply
from bot.store import AsyncStore, OutboxItem, Store

# The buttons on a job's card (bot.imaging.messages.parent_message).
BUTTONS = re.compile(f"^(?:{re.escape(START_ACTION)}|{re.escape(CANCEL_ACTION)})$")


def register(app: AsyncApp, deps: SlackDeps) -> ImagingListeners:
    """Route the job commands through `deps.router` and listen for the card's buttons."""
    listeners = ImagingListeners(store=deps.store, cloud=deps.cloud,
                                 channels=deps.router.channels, clock=deps.clock)
    router = deps.router
    router.on(commands.Create, listeners.create)
    router.on(commands.Status, listeners.status)
    router.on(commands.ListJobs, listeners.list_jobs)
    router.on(commands.Cancel, listeners.cancel_command)
    router.on(commands.Images, listeners.images, later=listeners.images_answer,
              failed=":warning: Something went wrong while listing images; it has been logged.")
    router.on(commands.Verify, listeners.verify, later=listeners.verify_answer,
              failed=":warning: Something went wrong while starting the restore test; it has "
                     "been logged.")
    protection = (":warning: Something went wrong while changing the image's protection; it "
                  "has been logged.")
    router.on(commands.Protect, listeners.protect, later=listeners.protect_answer,
              failed=protection)
    router.on(commands.Unprotect, listeners.protect, later=listeners.protect_answer,
              failed=protection)
    app.action(BUTTONS)(button_listener(listeners.click, deps.after))
    return listeners


@dataclass
class ImagingListeners:
    """The handlers behind the job commands and buttons; plain methods so tests can call them
    directly."""

    store: AsyncStore
    cloud: CloudClient | CloudPool
    channels: Channels
    clock: Callable[[], datetime]
    on_new_work: Callable[[], None] = lambda: None

    async def job_policy(self, job: Job) -> ChannelPolicy:
        """The policy of the channel a job was made in (its stored name, else Slack's)."""
        return await self.channels.policy_of(job.channel, job.channel_name)

    async def may_act_on(self, job: Job, user: str) -> str | None:
        """Why `user` may not start or cancel `job`, or None. The one check for the text
        command and the buttons: the requester, or someone allowed to create in the job's
        channel (which must not be disabled)."""
        policy = await self.job_policy(job)
        if not policy.enabled:
            return DISABLED_TEXT
        if user == job.requested_by or await allowed_to_create(
                policy, user, self.channels.member_groups):
            return None
        return (f"You may not start or cancel images in this channel "
                f"({policy.who_may_create()} may, and the requester).")

    def _policy(self, who: Invocation) -> ChannelPolicy:
        return self.channels.policy.for_channel(who.channel, who.channel_name)

    async def create(self, request: commands.Create, who: Invocation) -> Reply:
        """Write the job row; nothing goes to the channel yet. The engine resolves the server
        right after this ack and only then queues the card; a server that is missing, ambiguous
        or already being imaged is answered to the requester alone. A server one of our jobs
        is imaging now is refused here, in the ack."""
        channel_policy = self._policy(who)
        refusal = await refuse(channel_policy, who.user, request.server.text,
                               self.channels.member_groups, doing="create images")
        if refusal:
            return Reply(refusal)
        state = jobs.QUEUED if request.now else jobs.AWAITING_CONFIRMATION
        extra: dict[str, Any] = {"cloud": channel_policy.cloud}
        if request.now:
            extra |= {"confirmed_by": who.user, "confirmed_at": self.clock()}
        try:
            job, created = await self.store.run(Store.create_job,
                server_ref=request.server.text, requested_by=who.user, channel=who.channel,
                state=state, image_name=request.image_name, note=request.note,
                dedupe_key=f"trigger:{who.trigger_id}" if who.trigger_id else None,
                response_url=who.response_url, channel_name=who.channel_name,
                refuse_if_in_flight=True, verify=request.verify, **extra)
        except ServerInUse as exc:
            return Reply(":no_entry: " + escape(render.busy_here(
                exc.job, self.clock(), server=request.server.text, channel=who.channel)))
        if not created:
            return Reply(f"Already on it: that request is job {job.id}.")
        self.on_new_work()
        if request.now:
            return Reply(f"Job {job.id}: starting the image of "
                         f"{escape(request.server.text)} now. Follow the thread.")
        return Reply(f"Job {job.id}: check the quiesce list in the channel, then press "
                     "*Start snapshot*.")

    async def job_here(self, job_id: str, who: Invocation) -> Job:
        """The job, if it belongs to the channel asked in (any channel for an admin's --all);
        otherwise the same `JobError` as for a job that does not exist."""
        try:
            job = await self.store.run(Store.get_job, job_id)
        except JobError:
            if who.everywhere:
                raise
            raise JobError(not_here("job", job_id.upper())) from None
        if not who.everywhere and not same_channel(job.channel, who.channel, who.channel_name):
            raise JobError(not_here("job", job.id))
        return job

    @staticmethod
    def _channels(who: Invocation) -> list[str] | None:
        """The channel values a row of the asked channel may carry (its id; a #name for
        scheduled runs announced by name); None for every channel."""
        if who.scope is None:
            return None
        return [who.channel, *([f"#{who.channel_name}"] if who.channel_name else [])]

    async def status(self, request: commands.Status, who: Invocation) -> Reply:
        """Status of a job, or of the latest job for a server, in the channel asked in."""
        now = self.clock()
        if request.job_id:
            return Reply(render.job_status_text(await self.job_here(request.job_id, who), now))
        if request.server:
            job = await self.store.run(Store.latest_job_for_server, request.server.text,
                                       channel=self._channels(who))
            if job is None:
                return Reply(f"No jobs for {escape(request.server.text)} "
                             f"{'' if who.everywhere else 'in this channel '}yet.")
            return Reply(render.job_status_text(job, now))
        running = await self.store.run(Store.list_jobs, states=sorted(jobs.IN_FLIGHT), limit=20,
                                       channel=self._channels(who))
        if not running:
            return Reply("No images are being made right now"
                         f"{'' if who.everywhere else ' in this channel'}.")
        return Reply(render.jobs_table(running, now))

    async def list_jobs(self, request: commands.ListJobs, who: Invocation) -> Reply:
        """Recent jobs, filtered."""
        states = {
            "running": sorted(jobs.IN_FLIGHT | {jobs.AWAITING_CONFIRMATION}),
            "done": [jobs.SUCCEEDED],
            "failed": [jobs.FAILED],
            "cancelled": [jobs.CANCELLED],  # its own state: a cancel is not a failure
        }.get(request.state or "")
        found = await self.store.run(Store.list_jobs,
            server=request.server.text if request.server else None, states=states,
            limit=request.limit, channel=self._channels(who))
        if not found:
            return Reply("No jobs match.")
        return Reply(render.jobs_table(found, self.clock()))

    async def cancel_command(self, request: commands.Cancel, who: Invocation) -> Reply:
        """`/image cancel J17`."""
        return await self.cancel(request.job_id, who.user, who)

    async def cancel(self, job_id: str, user: str, who: Invocation) -> Reply:
        """Cancel a job not yet submitted; explain why a running snapshot cannot be stopped.
        Only a job of the channel asked in, by the same check as the Cancel button."""
        job = await self.job_here(job_id, dataclasses.replace(who, everywhere=False))
        refusal = await self.may_act_on(job, user)
        if refusal:
            return Reply(refusal)
        if job.state in (jobs.AWAITING_CONFIRMATION, jobs.QUEUED):
            try:
                await self._cancel(job, user)
            except ConflictingUpdate:
                job = await self.store.run(Store.get_job, job_id)
            else:
                return Reply(f"Job {job.id} cancelled.")
        if job.state in jobs.TERMINAL:
            return Reply(f"Job {job.id} already ended ({render.state_words(job)}).")
        return Reply(
            f"Job {job.id} was already submitted to the cloud. A snapshot in progress cannot be "
            "stopped: the image will finish or fail on its own, and you can delete the image "
            "afterwards.")

    async def _cancel(self, job: Job, user: str, *, fields: dict[str, Any] | None = None,
                      outbox: list[OutboxItem] | None = None) -> Job:
        done = await self.store.run(Store.transition,
            job.id, expected=[jobs.AWAITING_CONFIRMATION, jobs.QUEUED], target=jobs.CANCELLED,
            event="cancelled", actor=user,
            fields=(fields or {}) | {"finished_at": self.clock(), "cancelled_by": user},
            outbox=[OutboxItem(kind="update_parent", channel=job.channel, job_id=job.id,
                               thread_key=job.id, payload={}), *(outbox or [])])
        self.on_new_work()
        return done

    @staticmethod
    def _images_refusal(policy: ChannelPolicy, server: commands.ServerRef,
                        name: str | None = None) -> str | None:
        """Images only of servers the channel's policy may touch (by name; a UUID is checked
        once it is resolved to its name)."""
        label = name or (None if server.is_uuid else server.text)
        if label is None or policy.may_touch(label):
            return None
        return (f"This channel may not image `{escape(label)}` (not in the channel's "
                "server list).")

    async def images(self, request: commands.Images, who: Invocation) -> Reply:
        """`/image images <server>`: refused at once for a server the channel may not touch;
        otherwise the list follows the ack (`images_answer`)."""
        refusal = self._images_refusal(self._policy(who), request.server)
        if refusal:
            return Reply(refusal)
        return Reply(f"Looking up the images of {escape(request.server.text)}…",
                     follow_up=FollowUp(request, who))

    async def images_answer(self, request: commands.Images, who: Invocation) -> str:
        """The images of a server (asked of the cloud, after the ack), as the requester's
        answer."""
        policy = self._policy(who)
        cloud = CloudPool.of(self.cloud).get(policy.cloud)
        server = await cloud.find_server(request.server.text)
        refusal = self._images_refusal(policy, request.server, server.name)
        if refusal:
            return refusal
        return render.images_table(server.name, await cloud.list_images(server_id=server.id))

    # --- restore tests and protection (images) -------------------------------------------

    async def verify(self, request: commands.Verify, who: Invocation) -> Reply:
        """`/image verify <image>`: the image's server is checked against the channel's policy
        after the ack (`verify_answer`), which then queues the test for the engine."""
        return Reply(f"Looking up image {escape(request.image)}…",
                     follow_up=FollowUp(request, who))

    async def protect(self, request: commands.Protect | commands.Unprotect,
                      who: Invocation) -> Reply:
        """`/image protect|unprotect <image>`: done after the ack (`protect_answer`)."""
        return Reply(f"Looking up image {escape(request.image)}…",
                     follow_up=FollowUp(request, who))

    async def _image_of_job(self, ref: str) -> str:
        """`J7` stands for the image job J7 made (a scheduled image's name is only known
        once it is made); anything else is an image name or id."""
        found = commands.ids.job_id(ref)
        if found is None:
            return ref
        try:
            job = await self.store.run(Store.get_job, found)
        except JobError:
            return ref
        return job.image_id or ref

    async def _image_here(self, ref: str, who: Invocation, *, doing: str
                          ) -> tuple[Image, str | None, str | None]:
        """The image, the job that made it (if ours) and why `who` may not `doing` it (None
        when allowed): only images of servers the channel may touch. The server is the
        image's `instance_uuid` (Nova sets it), by its name in the cloud, else as the job
        that made the image knew it."""
        policy = self._policy(who)
        cloud = CloudPool.of(self.cloud).get(policy.cloud)
        ref = await self._image_of_job(ref)
        image = await cloud.find_image(ref)
        job: Job | None = None
        job_id = image.properties.get("imagebot_job_id")
        if job_id:
            try:
                job = await self.store.run(Store.get_job, job_id)
            except JobError:
                job = None
        name = job.server_name if job is not None else None
        if image.server_id:
            try:
                name = (await cloud.get_server(image.server_id, disks=False)).name
            except NotFound:
                pass  # the server is gone: the job's record of it, if any
        if name is None:
            return image, None, (f"I cannot tell which server image {escape(image.name)} was "
                                 f"taken of, so I will not {doing} it here.")
        refusal = await refuse(policy, who.user, name, self.channels.member_groups,
                               doing=f"{doing} images")
        here = job is not None and same_channel(job.channel, who.channel, who.channel_name)
        return image, job.id if here and job is not None else None, refusal

    async def verify_answer(self, request: commands.Verify, who: Invocation) -> str:
        """Queue the restore test (the engine boots and deletes the server) and say where the
        result will be told: the thread of the job that made the image, else the channel."""
        image, job_id, refusal = await self._image_here(request.image, who,
                                                        doing="restore-test")
        if refusal:
            return refusal
        made = await self.store.run(
            Store.create_verification, image_ref=request.image, requested_by=who.user,
            channel=who.channel, state=VERIFY_QUEUED, channel_name=who.channel_name,
            cloud=self._policy(who).cloud, job_id=job_id, image_id=image.id,
            image_name=image.name, console_marker=request.console)
        self.on_new_work()
        where = f"in the thread of job {job_id}" if job_id else "in this channel"
        return (f"Restore test {made.id} of image {escape(image.name)} queued: I boot a "
                f"throw-away server from it and delete it afterwards; the result comes {where}.")

    async def protect_answer(self, request: commands.Protect | commands.Unprotect,
                             who: Invocation) -> str:
        """Set or clear the image's `protected` flag, answered to the requester alone."""
        protect = isinstance(request, commands.Protect)
        image, _, refusal = await self._image_here(
            request.image, who, doing="protect" if protect else "unprotect")
        if refusal:
            return refusal
        if image.protected == protect:
            return (f"Image {escape(image.name)} is already "
                    f"{'protected' if protect else 'unprotected'}.")
        cloud = CloudPool.of(self.cloud).get(self._policy(who).cloud)
        await cloud.set_protected(image.id, protect)
        if protect:
            return (f":lock: Image {escape(image.name)} is protected: no one can delete it "
                    "(retention and I skip it) until it is unprotected.")
        return (f":unlock: Image {escape(image.name)} is no longer protected; retention may "
                "delete it again.")

    # --- buttons ------------------------------------------------------------------------------

    async def click(self, action_id: str, job_id: str, user: str, *, channel: str | None = None,
                    channel_name: str | None = None,
                    response_url: str | None = None) -> Reply | None:
        """A Start snapshot / Cancel click in `channel` (the message's channel, from the
        payload). Returns an ephemeral reply for the clicker, if any.

        On a job whose card went through the response_url (the bot is not in the channel) the
        click's own response_url is kept: it replaces the clicked card and carries the rest
        (a fresh url: a command's one lasts 30 minutes and 5 posts)."""
        try:
            job = await self.store.run(Store.get_job, job_id)
        except JobError as exc:
            return Reply(exc.user_message())
        if channel is not None and not same_channel(job.channel, channel, channel_name):
            return Reply(not_here("job", job.id))
        refusal = await self.may_act_on(job, user)
        if refusal:
            return Reply(refusal)
        fields: dict[str, Any] = {}
        outbox: list[OutboxItem] = []
        if job.thread_ts == NO_THREAD and response_url:
            fields["response_url"] = response_url
            outbox.append(OutboxItem(kind="respond", channel=job.channel, job_id=job.id,
                                     thread_key=job.id,
                                     payload={"response_url": response_url, "card": True,
                                              "replace_original": True}))
        try:
            if action_id == START_ACTION:
                return await self._start(job, user, fields, outbox)
            await self._cancel(job, user, fields=fields, outbox=outbox)
            return None
        except ConflictingUpdate:
            job = await self.store.run(Store.get_job, job_id)
            return Reply(render.already_decided(job))

    async def _start(self, job: Job, user: str, fields: dict[str, Any],
                     outbox: list[OutboxItem]) -> Reply | None:
        """Queue a waiting job, unless another job of ours is imaging its server right now:
        then the clicker alone is told which job and phase, and the card keeps waiting (as
        the create path's refusal; a second snapshot would only fail as "busy" in public)."""
        if job.state == jobs.AWAITING_CONFIRMATION:
            refs = [r for r in (job.server_ref, job.server_name, job.server_id) if r]
            running = [j for j in await self.store.run(Store.in_flight_for_server, refs,
                                                       job.cloud) if j.id != job.id]
            if running:
                server = job.server_name or job.server_ref
                return Reply(":no_entry: " + escape(render.busy_here(
                    running[0], self.clock(), server=server, channel=job.channel)))
        await self.store.run(Store.transition,
            job.id, expected=jobs.AWAITING_CONFIRMATION, target=jobs.QUEUED,
            event="confirmed", actor=user,
            fields=fields | {"confirmed_by": user, "confirmed_at": self.clock()},
            outbox=[OutboxItem(kind="update_parent", channel=job.channel, job_id=job.id,
                               thread_key=job.id, payload={}), *outbox])
        self.on_new_work()
        return None
