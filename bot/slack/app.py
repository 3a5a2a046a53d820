"""Bolt listeners: ack, parse, check permission, write a row. Nothing here calls the cloud,
except the read-only `images` answer, which runs after the ack.

Every answer to the user is an ephemeral reply (the ack body or `respond`); channel messages are
posted by the notifier from committed state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import warning_token_skipped
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

import commands
from bot.blocks import escape
from bot.cloud.client import CloudClient
from bot.cloud.pool import CloudPool
from bot.errors import ConflictingUpdate, ImagebotError, JobError, ServerInUse
from bot.imaging import jobs
from bot.imaging import messages as render
from bot.imaging.jobs import Job
from bot.policy import (
    DISABLED_TEXT,
    ChannelPolicy,
    GroupResolver,
    Policy,
    allowed_all,
    allowed_to_create,
    not_here,
    refuse,
    same_channel,
)
from bot.slack.directory import ChannelDirectory
from bot.slack.identity import FOREIGN, STARTING_UP, Identity
from bot.slack.notifier import NO_THREAD
from bot.slack.types import Invocation, Reply
from bot.store import AsyncStore, OutboxItem, Store

log = logging.getLogger(__name__)

START_ACTION = "job_start"
CANCEL_ACTION = "job_cancel"


# Slack sends these instead of a name in DMs and (older) private channels.
_NO_NAME = frozenset({"directmessage", "privategroup"})


@dataclass
class Listeners:
    """The handlers behind the Bolt app; plain methods so tests can call them directly."""

    store: AsyncStore
    cloud: CloudClient | CloudPool
    policy: Policy
    clock: Callable[[], datetime]
    on_new_work: Callable[[], None] = lambda: None
    # Which of the given user groups a user belongs to (asked of Slack); None = no groups.
    member_groups: GroupResolver | None = None
    extra: dict[str, Callable[..., Any]] = field(default_factory=dict)
    # Channel names (for name-keyed policies) and members; None = names from payloads only.
    directory: ChannelDirectory | None = None
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    # --- the one policy lookup --------------------------------------------------------------

    async def channel_name(self, channel: str, known: str | None = None) -> str | None:
        """The channel's name: from the payload when it carries a real one, else from Slack."""
        if known and known not in _NO_NAME:
            if self.directory is not None:
                self.directory.remember(channel, known)
            return known
        if self.directory is None or not channel:
            return None
        return await self.directory.name(channel)

    async def policy_of(self, channel: str, known_name: str | None = None) -> ChannelPolicy:
        """The channel's policy, by id or by name, the same way for commands, clicks, alerts."""
        return self.policy.for_channel(channel, await self.channel_name(channel, known_name))

    async def job_policy(self, job: Job) -> ChannelPolicy:
        """The policy of the channel a job was made in (its stored name, else Slack's)."""
        return await self.policy_of(job.channel, job.channel_name)

    async def may_act_on(self, job: Job, user: str) -> str | None:
        """Why `user` may not start or cancel `job`, or None. The one check for the text
        command and the buttons: the requester, or someone allowed to create in the job's
        channel (which must not be disabled)."""
        policy = await self.job_policy(job)
        if not policy.enabled:
            return DISABLED_TEXT
        if user == job.requested_by or await allowed_to_create(policy, user, self.member_groups):
            return None
        return (f"You may not start or cancel images in this channel "
                f"({policy.who_may_create()} may, and the requester).")

    # --- slash command ----------------------------------------------------------------------

    async def command(self, text: str, who: Invocation, respond: Callable[..., Any]) -> Reply:
        """Answer one `/image` invocation; the returned Reply goes into the ack."""
        try:
            request = commands.parse(text)
        except commands.ParseError as exc:
            return Reply(str(exc))
        try:
            return await self._dispatch(request, who, respond)
        except ImagebotError as exc:
            return Reply(f":warning: {exc.user_message()}")

    async def _dispatch(self, request: commands.Request, who: Invocation,
                        respond: Callable[..., Any]) -> Reply:
        if isinstance(request, commands.Help):
            return Reply(commands.help_text(request.topic))
        name = await self.channel_name(who.channel, who.channel_name)
        if name != who.channel_name:
            who = dataclasses.replace(who, channel_name=name)
        channel_policy = self.policy.for_channel(who.channel, name)
        if not channel_policy.enabled:
            return Reply(DISABLED_TEXT)  # one line, nothing else, for every command
        if getattr(request, "all", False):
            if not await allowed_all(channel_policy, who.user, self.member_groups):
                return Reply("`--all` is for the admins the channel policy names; without it "
                             "you see this channel's.")
            who = dataclasses.replace(who, everywhere=True)
        if isinstance(request, commands.Create):
            return await self.create(request, who)
        if isinstance(request, commands.Status):
            return await self.status(request, who)
        if isinstance(request, commands.ListJobs):
            return await self.list_jobs(request, who)
        if isinstance(request, commands.Cancel):
            return await self.cancel(request.job_id, who.user, who)
        if isinstance(request, commands.Images):
            refusal = self._images_refusal(channel_policy, request.server)
            if refusal:
                return Reply(refusal)
            self._spawn(self._answer_images(request, who, respond))
            return Reply(f"Looking up the images of {escape(request.server.text)}…")
        handler = self.extra.get(type(request).__name__)
        if handler is not None:
            reply: Reply = await handler(request, who)
            return reply
        return Reply(f"`{request.name}` is not available yet.")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def create(self, request: commands.Create, who: Invocation) -> Reply:
        """Write the job row; nothing goes to the channel yet. The engine resolves the server
        right after this ack and only then queues the card; a server that is missing, ambiguous
        or already being imaged is answered to the requester alone. A server one of our jobs
        is imaging now is refused here, in the ack."""
        channel_policy = self.policy.for_channel(who.channel, who.channel_name)
        refusal = await refuse(channel_policy, who.user, request.server.text, self.member_groups,
                               doing="create images")
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
                refuse_if_in_flight=True, **extra)
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

    def _channels(self, who: Invocation) -> list[str] | None:
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
            "failed": [jobs.FAILED, jobs.CANCELLED],
        }.get(request.state or "")
        found = await self.store.run(Store.list_jobs,
            server=request.server.text if request.server else None, states=states,
            limit=request.limit, channel=self._channels(who))
        if not found:
            return Reply("No jobs match.")
        return Reply(render.jobs_table(found, self.clock()))

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
            return Reply(f"Job {job.id} already ended ({job.state}).")
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

    async def _answer_images(self, request: commands.Images, who: Invocation,
                             respond: Callable[..., Any]) -> None:
        try:
            policy = self.policy.for_channel(who.channel, who.channel_name)
            cloud = CloudPool.of(self.cloud).get(policy.cloud)
            server = await cloud.find_server(request.server.text)
            refusal = self._images_refusal(policy, request.server, server.name)
            if refusal:
                text = refusal
            else:
                images = await cloud.list_images(server_id=server.id)
                text = render.images_table(server.name, images)
        except ImagebotError as exc:
            text = f":warning: {exc.user_message()}"
        except Exception:
            log.exception("images lookup failed")
            text = ":warning: Something went wrong while listing images; it has been logged."
        try:
            await respond(text=text, response_type="ephemeral", replace_original=False)
        except Exception:
            log.exception("could not answer the images request")

    # --- buttons ------------------------------------------------------------------------------

    async def click(self, action_id: str, job_id: str, user: str, channel: str | None = None,
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
                await self.store.run(Store.transition,
                    job.id, expected=jobs.AWAITING_CONFIRMATION, target=jobs.QUEUED,
                    event="confirmed", actor=user,
                    fields=fields | {"confirmed_by": user, "confirmed_at": self.clock()},
                    outbox=[OutboxItem(kind="update_parent", channel=job.channel, job_id=job.id,
                                       thread_key=job.id, payload={}), *outbox])
                self.on_new_work()
                return None
            await self._cancel(job, user, fields=fields, outbox=outbox)
            return None
        except ConflictingUpdate:
            job = await self.store.run(Store.get_job, job_id)
            return Reply(render.already_decided(job))


class _TokenFromClient(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN is ignored when `authorize` is given; here the token
    is the client's own, so the warning is noise on every start. And Bolt writes request
    bodies into some lines (an invalid signature's at INFO): the body is cut off."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == warning_token_skipped():
            return False
        if message.startswith("Unhandled request"):  # quotes the body and a code suggestion
            record.msg, record.args = "Unhandled request (no listener; body withheld)", None
        elif _BODY.search(message):
            record.msg, record.args = _BODY.sub("(request body withheld)", message), None
        return True


_BODY = re.compile(r"\(?\b(?:request )?body\b\s*[:=(].*", re.IGNORECASE | re.DOTALL)


def bolt_logger() -> logging.Logger:
    """Bolt's framework logger, without the one warning that does not apply here."""
    logger = logging.getLogger("bot.slack.bolt")
    if not any(isinstance(f, _TokenFromClient) for f in logger.filters):
        logger.addFilter(_TokenFromClient())
    return logger


def identity_authorize(identity: Identity, token: str | None
                       ) -> Callable[..., Awaitable[AuthorizeResult]]:
    """Single-workspace authorization without a Slack call per request: the identity is
    learned in the background (`Identity`); until then the token alone, and `gate` answers
    "starting up" (Bolt's own answer to a failed auth.test is "please reinstall")."""

    async def authorize(enterprise_id: str | None = None, team_id: str | None = None,
                        user_id: str | None = None) -> AuthorizeResult:
        known = identity.current
        if known is None:
            return AuthorizeResult(enterprise_id=None, team_id=None, bot_token=token)
        return AuthorizeResult(enterprise_id=known.enterprise_id, team_id=known.team_id,
                               bot_id=known.bot_id, bot_user_id=known.bot_user_id,
                               bot_token=token)

    return authorize


VERIFIED = "imagebot_verified"  # context key: the request passed Bolt's checks and `gate`


def identity_gate(identity: Identity, *, wait: float = 1.0) -> Callable[..., Awaitable[Any]]:
    """Global middleware (after Bolt's signature check and authorization): only the bot's own
    workspace and app are served; "starting up" while auth.test has not answered. Marks the
    context as verified, which the error handler requires before it answers anyone."""

    async def gate(context: Any, body: dict[str, Any], next: Callable[[], Awaitable[None]]
                   ) -> BoltResponse | None:
        known = await identity.wait(wait)
        is_command = "command" in body
        if known is None:
            return BoltResponse(status=200, body=STARTING_UP if is_command else "")
        refusal = known.refusal(team_id=context.team_id, enterprise_id=context.enterprise_id,
                                api_app_id=body.get("api_app_id"))
        if refusal:
            log.warning("refused a signed request: %s", refusal)
            return BoltResponse(status=200, body=FOREIGN if is_command else "")
        context[VERIFIED] = True
        await next()
        return None

    return gate


def build_app(listeners: Listeners, client: AsyncWebClient, *,
              signing_secret: str | None, identity: Identity | None = None) -> AsyncApp:
    """The Bolt app. `client` must point at the Web API (Slack or the emulator)."""
    identity = identity or Identity(client)
    # Listeners only parse and write a row (slow work is spawned), so they finish well inside
    # Slack's 3 s. Running them before the response skips Bolt's 10 ms polling for ack().
    app = AsyncApp(client=client, signing_secret=signing_secret,
                   request_verification_enabled=signing_secret is not None,
                   authorize=identity_authorize(identity, client.token),
                   process_before_response=True, logger=bolt_logger())
    app.middleware(identity_gate(identity))

    @app.command("/image")
    async def on_image(ack: Any, command: dict[str, Any], respond: Any) -> None:
        who = Invocation(user=command.get("user_id", ""), channel=command.get("channel_id", ""),
                         channel_name=command.get("channel_name"),
                         trigger_id=command.get("trigger_id"),
                         response_url=command.get("response_url"))
        reply = await listeners.command(command.get("text", "") or "", who, respond)
        await ack(**reply.as_kwargs())

    async def on_click(ack: Any, body: dict[str, Any], action: dict[str, Any],
                       respond: Any) -> None:
        await ack()
        where = body.get("channel") or {}
        reply = await listeners.click(action.get("action_id", ""), action.get("value", ""),
                                      body.get("user", {}).get("id", ""),
                                      channel=where.get("id", ""), channel_name=where.get("name"),
                                      response_url=body.get("response_url"))
        if reply is not None:
            await respond(text=reply.text, response_type="ephemeral", replace_original=False)

    app.action(START_ACTION)(on_click)
    app.action(CANCEL_ACTION)(on_click)

    async def on_extra_click(ack: Any, body: dict[str, Any], action: dict[str, Any],
                             respond: Any) -> None:
        # Buttons of other services (schedule approvals): `extra["action:<action_id>"]`.
        await ack()
        handler = listeners.extra.get(f"action:{action.get('action_id', '')}")
        if handler is None:
            return
        where = body.get("channel") or {}
        reply = await handler(action.get("action_id", ""), action.get("value", ""),
                              body.get("user", {}).get("id", ""), channel=where.get("id", ""),
                              channel_name=where.get("name"))
        if reply is not None:
            await respond(text=reply.text, response_type="ephemeral", replace_original=False)

    app.action(re.compile(r"^cr_(approve|reject)$"))(on_extra_click)

    @app.error
    async def on_error(error: Exception, context: Any, respond: Any = None) -> None:
        log.error("unhandled error in a listener: %s", type(error).__name__, exc_info=error)
        # `respond` goes to the body's response_url: only for a request that passed every
        # check (an unverified body names any URL it likes).
        if respond is not None and context.get(VERIFIED):
            try:
                await respond(text=":warning: Something went wrong; it has been logged.",
                              response_type="ephemeral", replace_original=False)
            except Exception:
                log.debug("could not report the error to the user", exc_info=True)

    return app
