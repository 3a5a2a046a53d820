"""The edge to Slack's Web API: slack_sdk and aiohttp errors are translated here, nowhere else."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.errors import SlackRejected, SlackUnavailable
from bot.metrics import Metrics

log = logging.getLogger(__name__)

OUTBOX_EVENT = "imagebot_outbox"  # message metadata type that ties a message to its outbox row

# ok:false codes that mean "not now", not "never" (docs.slack.dev, chat.postMessage errors):
# retried with back-off like a 429. The first two say nothing was done; the others may have
# done part of the work, so a post is looked up by its metadata before it is sent again.
TRANSIENT_NOTHING_DONE = frozenset({"ratelimited", "service_unavailable", "request_timeout"})
TRANSIENT_MAYBE_DONE = frozenset({"internal_error", "fatal_error"})
TRANSIENT = TRANSIENT_NOTHING_DONE | TRANSIENT_MAYBE_DONE


WEB_TIMEOUT = 15  # seconds for one Web API or response_url call, connecting included


def web_session() -> aiohttp.ClientSession:
    """The one aiohttp session (and connection pool) for every Web API and response_url call.

    Given no session, slack_sdk opens one per call and closes it after
    (slack_sdk/web/async_internal_utils.py `_request_with_session`), so every post paid a new
    TCP and TLS handshake with Slack; aiohttp's client guide: "Don't create a session per
    request". The timeout is slack_sdk's own for the sessions it makes. Call it on the running
    loop; `Runtime.stop` closes it."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEB_TIMEOUT))


# Told of a 429's Retry-After (None when not given); an async one is awaited.
Listener429 = Callable[[float | None], Awaitable[None] | None]


class NotedRateLimitRetries(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (sleep Retry-After, call again) that first tells of each 429,
    as it arrives, `counted(method)` and the calling task's listener (`SlackWeb.telling_429s`):
    a 429 retried here never reaches the caller as an error. slack_sdk asks `can_retry_async`
    of every answer (slack_sdk/web/async_internal_utils.py), the last one included."""

    def __init__(self, max_retry_count: int,
                 counted: Callable[[str], None] | None = None) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.counted = counted
        self.listener: ContextVar[Listener429 | None] = ContextVar(
            "imagebot_429_listener", default=None)

    async def can_retry_async(self, *, state: RetryState, request: HttpRequest,
                              response: HttpResponse | None = None,
                              error: Exception | None = None) -> bool:
        """Tell of a 429 (its Retry-After, None when not given), then slack_sdk decides."""
        if error is None and response is not None and response.status_code == 429:
            if self.counted is not None:  # the method: the last part of .../api/chat.update
                self.counted(request.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1])
            listener = self.listener.get()
            told = listener(_retry_after(response.headers)) if listener is not None else None
            if told is not None:  # an async listener: done before slack_sdk sleeps
                await told
        return await super().can_retry_async(state=state, request=request, response=response,
                                             error=error)


def make_web_client(token: str, base_url: str, *, rate_limit_retries: int = 2,
                    session: aiohttp.ClientSession | None = None,
                    counted_429: Callable[[str], None] | None = None) -> AsyncWebClient:
    """An AsyncWebClient that retries connection errors and honours Retry-After on 429;
    `session`: its connections are kept and reused (`web_session`); `counted_429(method)`
    is called for every 429 Slack answers, retried or not."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=WEB_TIMEOUT,
        session=session,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=1),
            NotedRateLimitRetries(max_retry_count=rate_limit_retries, counted=counted_429),
        ],
    )


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return float(raw)
            except (TypeError, ValueError):
                return None
    return None


class SlackWeb:
    """The few Web API calls imagebot makes, with errors from the one error tree."""

    def __init__(self, client: AsyncWebClient, metrics: Metrics | None = None) -> None:
        self.client = client
        self.metrics = metrics
        # Awaited before each call (wiring: `bot.priority.AcksFirst.turn`, so the notifier's
        # posts wait for the acks in flight); None = never wait.
        self.before_call: Callable[[], Awaitable[None]] | None = None

    @contextlib.contextmanager
    def telling_429s(self, listener: Listener429) -> Iterator[None]:
        """Inside the block, each 429 Slack answers to a call this task makes, those slack_sdk
        retries included, calls `listener(retry_after)` as it arrives (and awaits what an
        async listener returns before slack_sdk sleeps to retry)."""
        handlers = [h for h in self.client.retry_handlers
                    if isinstance(h, NotedRateLimitRetries)]
        tokens = [(h, h.listener.set(listener)) for h in handlers]
        try:
            yield
        finally:
            for handler, token in tokens:
                handler.listener.reset(token)

    def _count(self, method: str, outcome: str) -> None:
        if self.metrics:
            self.metrics.slack_calls.labels(method, outcome).inc()

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        if self.before_call is not None:
            await self.before_call()
        try:
            response = await self.client.api_call(method, json=kwargs)
        except SlackApiError as exc:
            raise self._translate(method, exc) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self._count(method, "unreachable")
            raise SlackUnavailable(f"{method}: {type(exc).__name__}") from exc
        except (AttributeError, ValueError) as exc:
            # slack_sdk's validate() trips over a text/plain body (a proxy's error page).
            self._count(method, "unreadable")
            raise SlackUnavailable(f"{method}: unreadable answer ({type(exc).__name__})") \
                from exc
        if not isinstance(response.data, dict):
            self._count(method, "unreadable")
            raise SlackUnavailable(f"{method}: the answer was not a JSON object")
        self._count(method, "ok")
        return dict(response.data)

    def _translate(self, method: str, exc: SlackApiError) -> SlackUnavailable | SlackRejected:
        """ok:false, HTTP errors and unreadable bodies into the error tree: transient codes,
        429 and 5xx are SlackUnavailable (retry later), everything else is final."""
        response = exc.response
        # A JSON decode error hands us aiohttp's response (`.status`), not slack_sdk's.
        status = int(getattr(response, "status_code", None) or getattr(response, "status", 0) or 0)
        data = getattr(response, "data", None)
        error = str(data.get("error", "") or "") if isinstance(data, dict) else ""
        headers = getattr(response, "headers", None)
        self._count(method, "429" if status == 429 else (error or str(status)))
        if status == 429 or status >= 500 or error in TRANSIENT_NOTHING_DONE:
            return SlackUnavailable(f"{method}: HTTP {status} {error}".strip(),
                                    retry_after=_retry_after(headers), answered=True)
        if error in TRANSIENT_MAYBE_DONE or (not error and status in (0, 200)):
            # No code at all: the body was not Slack's JSON (an HTML page, an empty body).
            what = error or "an answer that was not Slack's JSON"
            return SlackUnavailable(f"{method}: HTTP {status} {what}",
                                    retry_after=_retry_after(headers), answered=False)
        return SlackRejected(error)

    async def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
                   *, thread_ts: str | None = None, broadcast: bool = False,
                   outbox_id: int | None = None) -> tuple[str, str]:
        """chat.postMessage; returns (channel id, ts). Slack answers with the id even when
        `channel` was given as a #name, and chat.update accepts only ids. `outbox_id` goes into
        the message metadata, so the message can be found again after a crash."""
        kwargs: dict[str, Any] = {"channel": channel, "text": text}
        if outbox_id is not None:
            kwargs["metadata"] = {"event_type": OUTBOX_EVENT,
                                  "event_payload": {"outbox_id": outbox_id}}
        if blocks:
            kwargs["blocks"] = blocks
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
            if broadcast:
                kwargs["reply_broadcast"] = True
        data = await self._call("chat.postMessage", **kwargs)
        return str(data.get("channel") or channel), str(data.get("ts", ""))

    async def find_posted(self, channel: str, outbox_id: int, *,
                          thread_ts: str | None = None) -> tuple[str, str] | None:
        """(channel id, ts) of the message we posted for `outbox_id`, if Slack has it: the
        latest top-level messages, or the thread of `thread_ts`."""
        if thread_ts:
            data = await self._call("conversations.replies", channel=channel, ts=thread_ts,
                                    include_all_metadata=True, limit=1000)
        else:
            data = await self._call("conversations.history", channel=channel,
                                    include_all_metadata=True, limit=200)
        for message in data.get("messages") or []:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == OUTBOX_EVENT and payload.get("outbox_id") == outbox_id:
                return str(data.get("channel") or channel), str(message.get("ts", ""))
        return None

    async def update_message(self, channel: str, ts: str, text: str,
                             blocks: list[dict[str, Any]] | None = None) -> None:
        """chat.update of one of our own messages."""
        await self._call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks or [])

    async def post_ephemeral(self, channel: str, user: str, text: str,
                             blocks: list[dict[str, Any]] | None = None,
                             thread_ts: str | None = None) -> None:
        """chat.postEphemeral to one user."""
        kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if blocks:
            kwargs["blocks"] = blocks
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        await self._call("chat.postEphemeral", **kwargs)

    async def answer(self, response_url: str, text: str) -> None:
        """A requester's ephemeral answer after the ack (a click's, a command's follow-up).
        Nothing else would send it again (an outbox item has the notifier's retries), so
        slack_sdk's handlers retry it here: a connection error once, a 429 twice after its
        Retry-After, a 500 or 503 once. Slack answers an over-limit post to its HTTP APIs,
        incoming webhooks included, with 429 and Retry-After (slackhq/slack-api-docs
        page_rate_limits.md); a post that still fails raises as `respond` does."""
        await self.respond(response_url, text, retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=1),
            AsyncRateLimitErrorRetryHandler(max_retry_count=2),
            AsyncServerErrorRetryHandler(max_retry_count=1),
        ])

    async def respond(self, response_url: str, text: str,
                      blocks: list[dict[str, Any]] | None = None, *,
                      in_channel: bool = False, replace_original: bool = False,
                      retry_handlers: list[AsyncRetryHandler] | None = None) -> None:
        """Post to a slash command's or click's response_url (works where the bot is no member).
        `retry_handlers`: slack_sdk's, None = its default (a connection error retried once)."""
        if self.before_call is not None:
            await self.before_call()
        hook = AsyncWebhookClient(response_url, timeout=WEB_TIMEOUT, session=self.client.session,
                                  retry_handlers=retry_handlers)
        try:
            response = await hook.send(
                text=text, blocks=blocks,
                response_type="in_channel" if in_channel else "ephemeral",
                replace_original=replace_original,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SlackUnavailable(f"response_url: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise SlackUnavailable(f"response_url: HTTP {response.status_code}",
                                   retry_after=_retry_after(response.headers))
        if response.status_code >= 400:
            raise SlackRejected(response.body or f"http_{response.status_code}")
