"""The Bolt app: the identity checks every request passes, the one `/image` command (routed
by `bot.slack.routing.Router`, which the features fill: `bot.slack.imaging.register`,
`bot.slack.schedules.register`), and the error handler.

Every answer to the user is an ephemeral reply (the ack body or `respond`); channel messages are
posted by the notifier from committed state.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.logger import get_bolt_app_logger
from slack_bolt.logger.messages import (
    warning_client_prioritized_and_token_skipped,
    warning_token_skipped,
)
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.cloud.client import CloudClient
from bot.cloud.pool import CloudPool
from bot.scheduling.service import ScheduleService
from bot.slack.identity import FOREIGN, STARTING_UP, Identity
from bot.slack.routing import AfterAck, LazyWork, Router
from bot.slack.types import Invocation
from bot.slack.web import SlackWeb
from bot.store import AsyncStore

log = logging.getLogger(__name__)

@dataclass
class SlackDeps:
    """What a feature's `register(app, deps)` gets: the router to add its commands to, the
    store connection, cloud and clock its listeners use, and how they answer after an ack."""

    router: Router
    store: AsyncStore  # the interactive connection (see wiring)
    cloud: CloudClient | CloudPool
    clock: Callable[[], datetime]
    after: AfterAck
    schedules: ScheduleService | None = None


class _TokenFromClient(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN is ignored when `authorize` or `client` is given (it
    reads the variable itself); here the token is the client's own, so both warnings are noise
    on every start. And Bolt writes request
    bodies into some lines (an invalid signature's at INFO): the body is cut off."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in (warning_token_skipped(), warning_client_prioritized_and_token_skipped()):
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


class IdentityAuthorize(AsyncAuthorize):
    """Single-workspace authorization without a Slack call per request: the identity is
    learned in the background (`Identity`); until then the token alone, and `IdentityGate`
    answers "starting up" (Bolt's own answer to a failed auth.test is "please reinstall").

    An `AsyncAuthorize` itself, not a function: Bolt wraps a function in
    `AsyncCallableAuthorize`, which builds its keyword arguments from the whole context on
    every request (~80 µs of a create's ~0.5 ms under cProfile)."""

    def __init__(self, identity: Identity, token: str | None) -> None:
        super().__init__()
        self.identity = identity
        self.token = token

    async def __call__(self, *, context: Any, enterprise_id: str | None,
                       team_id: str | None, user_id: str | None,
                       **actor: str | None) -> AuthorizeResult:
        known = self.identity.current
        if known is None:
            return AuthorizeResult(enterprise_id=None, team_id=None, bot_token=self.token)
        return AuthorizeResult(enterprise_id=known.enterprise_id, team_id=known.team_id,
                               bot_id=known.bot_id, bot_user_id=known.bot_user_id,
                               bot_token=self.token)


# Context key: the HTTP edge (`bot.slack.edge.EdgeGuard`) checked this request's signature and
# timestamp; set only by our own request handler (`bot.wiring.http_app`), never from a body.
SIGNATURE_CHECKED = "imagebot_signature_checked"


class SignatureCheckedOnce(AsyncMiddleware):
    """Bolt's request verification, done once: an HTTP request the edge already checked
    (`SIGNATURE_CHECKED` in its context) passes; any other HTTP request (handed to the app
    some other way) is checked here with slack_sdk's verifier, which also bounds the timestamp
    to 5 minutes, and refused with Bolt's own 401. Socket Mode requests pass, as in Bolt
    (`RequestVerification._can_skip`): the link itself is authenticated by the app token.
    Installed as Bolt's `before_authorize` (slack_bolt/app/async_app.py: "A global middleware
    that can be executed right before authorize function"), where Bolt's own check would run,
    with `request_verification_enabled=False`."""

    def __init__(self, signing_secret: str) -> None:
        self.verifier = SignatureVerifier(signing_secret)
        self.checked = 0  # signatures checked here (tests)

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse,
                            next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        if req.mode == "socket_mode" or req.context.get(SIGNATURE_CHECKED) is True:
            return await next()
        self.checked += 1
        timestamp = req.headers.get("x-slack-request-timestamp", ["0"])[0]
        signature = req.headers.get("x-slack-signature", [""])[0]
        try:
            valid = self.verifier.is_valid(req.raw_body, timestamp, signature)
        except (ValueError, UnicodeDecodeError):  # a timestamp that is not a number
            valid = False
        if not valid:
            log.info("refused a request with an invalid signature (body withheld)")
            return BoltResponse(status=401, body={"error": "invalid request"})
        return await next()


class OneClientApp(AsyncApp):
    """Bolt's AsyncApp with one Web API client for every request. Since bolt-python 1.15
    `_init_context` builds a new AsyncWebClient per request (bolt-python PR #714, "for
    safety" when a listener changes `context.client.token`); here the token is the one bot
    token (`IdentityAuthorize` gives it to every request, and no listener sets it), so
    `context.client` is `app.client` itself, as before 1.15. The rest is `_init_context` as
    in slack_bolt 1.30 (tests/bot/test_bolt_once.py pins it)."""

    def _init_context(self, req: AsyncBoltRequest) -> None:
        req.context["logger"] = get_bolt_app_logger(app_name=self.name,
                                                    base_logger=self._base_logger)
        req.context["token"] = self._token
        req.context["client"] = self._async_client
        req.context["listener_runner"] = self.listener_runner


VERIFIED = "imagebot_verified"  # context key: the request passed Bolt's checks and `gate`


class IdentityGate(AsyncMiddleware):
    """Global middleware (after Bolt's signature check and authorization): only the bot's own
    workspace and app are served; "starting up" while auth.test has not answered. Marks the
    context as verified, which the error handler requires before it answers anyone.

    A class middleware: Bolt calls it as it is, where a function middleware gets its
    arguments built from the whole context on every request."""

    def __init__(self, identity: Identity, *, wait: float = 1.0) -> None:
        self.identity = identity
        self.wait = wait

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse,
                            next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        known = await self.identity.wait(self.wait)
        body, context = req.body, req.context
        is_command = "command" in body
        if known is None:
            return BoltResponse(status=200, body=STARTING_UP if is_command else "")
        refusal = known.refusal(team_id=context.team_id, enterprise_id=context.enterprise_id,
                                api_app_id=body.get("api_app_id"))
        if refusal:
            log.warning("refused a signed request: %s", refusal)
            return BoltResponse(status=200, body=FOREIGN if is_command else "")
        context[VERIFIED] = True
        return await next()


def build_app(router: Router, client: AsyncWebClient, *, signing_secret: str | None,
              identity: Identity | None = None, after: AfterAck | None = None) -> AsyncApp:
    """The Bolt app with `/image`; the features add their routes to `router` and their
    buttons to the app (`register(app, deps)`). `client` must point at the Web API (Slack or
    the emulator). `after` sends the answers that follow an ack, in tasks it keeps countable
    for shutdown (when None: through `client`'s session, in a runner of its own)."""
    identity = identity or Identity(client)
    after = after or AfterAck(LazyWork(bolt_logger()), SlackWeb(client).answer)
    # Listeners only parse and write a row, so they finish well inside Slack's 3 s; work that
    # takes longer runs after the ack (`LazyWork.spawn`). Running listeners before the response
    # skips Bolt's 10 ms polling for ack(), the same in HTTP and Socket Mode (both go through
    # async_dispatch).
    # The signature is checked once per request: at the HTTP edge, or else by
    # `SignatureCheckedOnce` in the place of Bolt's own check.
    app = OneClientApp(client=client, signing_secret=signing_secret,
                       request_verification_enabled=False,
                       before_authorize=(SignatureCheckedOnce(signing_secret)
                                         if signing_secret is not None else None),
                       authorize=IdentityAuthorize(identity, client.token),
                       process_before_response=True, logger=bolt_logger())
    # Bolt's AsyncApp takes no lazy runner; `listener_runner` is its public handle on the one
    # that starts them (slack_bolt.listener.asyncio_runner: lazy_listener_runner.start): a
    # feature's lazy listener, if one is ever added, is counted and drained like `spawn`.
    app.listener_runner.lazy_listener_runner = after.runner
    app.middleware(IdentityGate(identity))

    async def on_image(ack: Any, command: dict[str, Any]) -> None:
        who = Invocation(user=command.get("user_id", ""), channel=command.get("channel_id", ""),
                         channel_name=command.get("channel_name"),
                         trigger_id=command.get("trigger_id"),
                         response_url=command.get("response_url"))
        reply = await router.command(command.get("text", "") or "", who)
        await ack(**reply.as_kwargs())
        if reply.follow_up is not None:
            # Our own task rather than a Bolt lazy listener (see `LazyWork.spawn`); it starts
            # after this function returns, when Bolt has the ack's response, and any failure
            # becomes a message to the requester (`answer_after_ack`).
            router.answer_follow_up(reply.follow_up, after)
        # Most commands (create, status, ...) are answered by the ack alone.

    app.command("/image")(on_image)

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
