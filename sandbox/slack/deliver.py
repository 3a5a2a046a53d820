"""Deliver slash commands and button clicks to the bot, signed exactly as Slack signs them.

`Deliverer.slash_command(...)` posts the form Slack posts for `/image ...`; `Deliverer.click(...)`
posts a `block_actions` payload (form field `payload=`); `open_home(...)` sends the
`app_home_opened` event (Events API JSON, or an `events_api` envelope over Socket Mode) and
`click_home(...)` a click on a Home tab button. Each gets a fresh `trigger_id` and a
fresh response_url pointing at the emulator (`workspace.base_url`). The bot's answer to a slash
command (Bolt's `ack(...)` body) is shown to the user as Slack would: an ephemeral, or an
in-channel message for `response_type: in_channel`; a non-2xx answer or a timeout becomes
Slackbot's "failed with the error" ephemeral.

Faults for tests: `bad_signature=True`, `stale=True` (timestamp older than the 5-minute window),
and `redeliver()` (same body and trigger_id, plus `X-Slack-Retry-Num`/`X-Slack-Retry-Reason`).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from sandbox.slack.model import (
    APP_ID,
    BOT_USER_ID,
    SLACKBOT_ID,
    TEAM_DOMAIN,
    TEAM_ID,
    ApiError,
    Block,
    ButtonRef,
    CommandRun,
    Ephemeral,
    Message,
    SlackWorkspace,
    iter_buttons,
)

# Pass as `bot_url` to deliver over the emulator's Socket Mode connection instead of HTTP.
SOCKET_MODE = "socket-mode"

# Slack shows a request this old as a replay; verifiers reject > 300 s.
STALE_BY = 600.0
VERIFICATION_TOKEN = "sandbox-verification-token"


@dataclass
class Delivery:
    """One request sent to the bot (kept so it can be redelivered)."""

    kind: str  # "command" | "block_actions" | "event"
    body: str
    user: str
    channel: str
    trigger_id: str
    response_url: str
    response_url_id: str
    response: httpx.Response | None = None


def sign(secret: str, timestamp: str, body: str | bytes) -> str:
    """Slack's `v0=<hex>` HMAC-SHA256 over `v0:{timestamp}:{body}`."""
    raw = body.encode() if isinstance(body, str) else body
    base = b"v0:" + timestamp.encode() + b":" + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class Deliverer:
    """Sends signed Slack requests to the bot's request URL (`.../slack/events`).

    `clock` dates the signatures; it must agree with the clock the bot verifies against
    (`time.time` for a real Bolt app), so it defaults to `time.time`, not the workspace clock.
    """

    def __init__(self, workspace: SlackWorkspace, bot_url: str, signing_secret: str, *,
                 http: httpx.AsyncClient | None = None, clock: Callable[[], float] | None = None,
                 timeout: float | None = 3.0) -> None:
        self.workspace = workspace
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.clock = clock or time.time
        self.timeout = timeout
        self._own_http = http is None
        self.http = http or httpx.AsyncClient()
        self.deliveries: list[Delivery] = []

    async def aclose(self) -> None:
        """Close the HTTP client if this Deliverer created it."""
        if self._own_http:
            await self.http.aclose()

    async def __aenter__(self) -> Deliverer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def last(self) -> Delivery:
        """The most recent delivery."""
        if not self.deliveries:
            raise LookupError("nothing delivered yet")
        return self.deliveries[-1]

    # --- requests ------------------------------------------------------------------------

    async def slash_command(self, user: str, channel: str, text: str, command: str = "/image",
                            *, bad_signature: bool = False, stale: bool = False,
                            trigger_id: str | None = None, team_id: str = TEAM_ID,
                            api_app_id: str = APP_ID) -> httpx.Response:
        """Type `command text` as `user` in `channel` (ids or names); `team_id`/`api_app_id`
        stand for another workspace or app signing with the same secret."""
        ws = self.workspace
        u = ws.user(user)
        ch = ws.channel(channel)
        ru = ws.new_response_url(ch.id, u.id, "command")
        tid = trigger_id or ws.new_trigger_id()
        form = {
            "token": VERIFICATION_TOKEN, "team_id": team_id, "team_domain": TEAM_DOMAIN,
            "channel_id": ch.id, "channel_name": "directmessage" if ch.is_im else ch.name,
            "user_id": u.id, "user_name": u.name, "command": command, "text": text,
            "api_app_id": api_app_id, "is_enterprise_install": "false",
            "response_url": ws.response_url(ru), "trigger_id": tid,
        }
        ws.commands.append(CommandRun(u.id, ch.id, command, text, ws.clock(), tid, ru.id))
        delivery = Delivery("command", urlencode(form), u.id, ch.id, tid, ws.response_url(ru),
                            ru.id)
        return await self._send(delivery, bad_signature=bad_signature, stale=stale)

    async def click(self, user: str, channel: str, message_ts: str, action_id: str,
                    value: str | None = None, block_id: str | None = None, *,
                    bad_signature: bool = False, stale: bool = False,
                    trigger_id: str | None = None) -> httpx.Response:
        """Click the button `action_id` on message `message_ts` (channel or ephemeral)."""
        ws = self.workspace
        u = ws.user(user)
        ch = ws.channel(channel)
        target: Message | Ephemeral
        try:
            target = ws.find_message(ch.id, message_ts)
            is_ephemeral = False
        except ApiError:
            try:
                target = ws.find_ephemeral(message_ts)
            except ApiError:
                raise LookupError(f"no message {message_ts} in {ch.id}") from None
            is_ephemeral = True
        if isinstance(target, Ephemeral) and target.user != u.id:
            # Only its recipient sees an ephemeral, so only they can click its buttons.
            raise LookupError(f"message {message_ts} is shown to {target.user} only")
        found_block_id, button = _find_button(target, action_id, value)
        block_id = block_id or found_block_id or "actions"
        thread_ts = target.thread_ts if target.thread_ts != target.ts else None
        ru = ws.new_response_url(ch.id, u.id, "action", message_ts=message_ts,
                                 is_ephemeral=is_ephemeral, thread_ts=thread_ts)
        tid = trigger_id or ws.new_trigger_id()
        action: dict[str, Any] = {
            "type": "button", "action_id": action_id, "block_id": block_id,
            "text": button.get("text") or {"type": "plain_text", "text": action_id,
                                           "emoji": True},
            "action_ts": f"{ws.clock():.6f}",
        }
        chosen = value if value is not None else button.get("value")
        if chosen is not None:
            action["value"] = chosen
        if button.get("style"):
            action["style"] = button["style"]
        container: dict[str, Any] = {"type": "message", "message_ts": message_ts,
                                     "channel_id": ch.id, "is_ephemeral": is_ephemeral}
        if thread_ts:
            container["thread_ts"] = thread_ts
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": u.id, "username": u.name, "name": u.name, "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": VERIFICATION_TOKEN, "container": container,
            "trigger_id": tid, "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": ch.id, "name": "directmessage" if ch.is_im else ch.name},
            "state": {"values": {}}, "response_url": ws.response_url(ru),
            "actions": [action],
        }
        # Slack leaves the message out for ephemeral containers.
        if not is_ephemeral:
            payload["message"] = target.to_api()
        body = urlencode({"payload": json.dumps(payload)})
        delivery = Delivery("block_actions", body, u.id, ch.id, tid, ws.response_url(ru), ru.id)
        return await self._send(delivery, bad_signature=bad_signature, stale=stale)

    async def open_home(self, user: str, tab: str = "home") -> httpx.Response:
        """`user` opens the app's Home (its Home tab, or `tab="messages"`): Slack sends the
        `app_home_opened` event, with the Home view last published for them if there is one
        (docs.slack.dev/reference/events/app_home_opened), in an `event_callback` envelope
        (docs.slack.dev/apis/events-api): JSON over HTTP, `events_api` over Socket Mode."""
        ws = self.workspace
        u = ws.user(user)
        dm = ws.dm(u.id)
        event: dict[str, Any] = {"type": "app_home_opened", "user": u.id, "channel": dm.id,
                                 "tab": tab, "event_ts": f"{ws.clock():.6f}"}
        if tab == "home" and u.id in ws.home_views:
            event["view"] = copy.deepcopy(ws.home_views[u.id])
        now = int(ws.clock())
        envelope = {
            "token": VERIFICATION_TOKEN, "team_id": TEAM_ID, "api_app_id": APP_ID,
            "event": event, "type": "event_callback",
            "event_id": f"Ev{secrets.token_hex(5).upper()}", "event_time": now,
            "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID,
                                "user_id": BOT_USER_ID, "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False, "event_context": f"4-{secrets.token_hex(12)}",
        }
        ws.events.append(envelope)
        delivery = Delivery("event", json.dumps(envelope), u.id, dm.id, "", "", "")
        return await self._send(delivery, bad_signature=False, stale=False)

    async def click_home(self, user: str, action_id: str, value: str | None = None,
                         block_id: str | None = None) -> httpx.Response:
        """Click a button on `user`'s Home tab: a `block_actions` payload whose container is
        the view; Slack sends no response_url for a Home tab (there is no message to answer)."""
        ws = self.workspace
        u = ws.user(user)
        view = ws.home_views.get(u.id)
        if view is None:
            raise LookupError(f"{u.name} has no Home tab published")
        found = [(bid, b) for bid, b in iter_buttons(view["blocks"])
                 if b.get("action_id") == action_id
                 and (value is None or b.get("value") == value)]
        if not found:
            raise LookupError(f"no button {action_id!r} on {u.name}'s Home tab")
        found_block_id, button = found[0]
        action: dict[str, Any] = {
            "type": "button", "action_id": action_id,
            "block_id": block_id or found_block_id or "actions",
            "text": button.get("text") or {"type": "plain_text", "text": action_id},
            "action_ts": f"{ws.clock():.6f}"}
        if button.get("value") is not None:
            action["value"] = button["value"]
        tid = ws.new_trigger_id()
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": u.id, "username": u.name, "name": u.name, "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": VERIFICATION_TOKEN,
            "container": {"type": "view", "view_id": view["id"]}, "trigger_id": tid,
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN}, "enterprise": None,
            "is_enterprise_install": False, "view": copy.deepcopy(view),
            "actions": [action],
        }
        body = urlencode({"payload": json.dumps(payload)})
        delivery = Delivery("block_actions", body, u.id, "", tid, "", "")
        return await self._send(delivery, bad_signature=False, stale=False)

    async def press(self, button: ButtonRef | int, user: str, **options: Any) -> httpx.Response:
        """Click a button from a rendered transcript (a `ButtonRef` or its number)."""
        ref = self.workspace.button(button) if isinstance(button, int) else button
        return await self.click(user, ref.channel, ref.message_ts, ref.action_id, ref.value,
                                ref.block_id, **options)

    async def redeliver(self, delivery: Delivery | None = None, *, retry_num: int = 1,
                        retry_reason: str = "http_timeout", bad_signature: bool = False,
                        stale: bool = False) -> httpx.Response:
        """Send a delivery again (same body, same trigger_id) as a Slack retry."""
        original = delivery or self.last
        again = Delivery(original.kind, original.body, original.user, original.channel,
                         original.trigger_id, original.response_url, original.response_url_id)
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        return await self._send(again, bad_signature=bad_signature, stale=stale,
                                extra_headers=headers)

    # --- plumbing ------------------------------------------------------------------------

    def headers_for(self, body: str, *, bad_signature: bool = False, stale: bool = False,
                    content_type: str = "application/x-www-form-urlencoded"
                    ) -> dict[str, str]:
        """Signed headers for `body` (optionally with a wrong signature or a stale stamp)."""
        now = self.clock() - (STALE_BY if stale else 0.0)
        timestamp = str(int(now))
        secret = self.signing_secret + ("-wrong" if bad_signature else "")
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": sign(secret, timestamp, body),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }

    async def _send(self, delivery: Delivery, *, bad_signature: bool, stale: bool,
                    extra_headers: dict[str, str] | None = None) -> httpx.Response:
        if self.bot_url == SOCKET_MODE:
            return await self._send_over_socket(delivery)
        # The Events API posts JSON; commands and interactions are form posts.
        ctype = "application/json" if delivery.kind == "event" else \
            "application/x-www-form-urlencoded"
        headers = self.headers_for(delivery.body, bad_signature=bad_signature, stale=stale,
                                   content_type=ctype)
        headers.update(extra_headers or {})
        self.deliveries.append(delivery)
        genuine = not (bad_signature or stale or extra_headers)
        try:
            response = await self.http.post(self.bot_url, content=delivery.body.encode(),
                                            headers=headers, timeout=self.timeout)
        except httpx.TimeoutException:
            if delivery.kind == "command" and genuine:
                self._slackbot_error(delivery, "operation_timeout")
            raise
        delivery.response = response
        if delivery.kind == "command" and genuine:
            self._show_command_answer(delivery, response)
        return response

    async def _send_over_socket(self, delivery: Delivery) -> httpx.Response:
        """Socket Mode: the same payload in an envelope over the app's connection; the ack's
        payload comes back as the response body, as Slack would use it."""
        hub = self.workspace.socket_hub
        if hub is None:
            raise RuntimeError("the emulator app is not running (no Socket Mode hub)")
        payload: dict[str, Any]
        if delivery.kind == "event":
            kind, payload = "events_api", json.loads(delivery.body)
        elif delivery.kind == "command":
            kind, payload = "slash_commands", dict(parse_qsl(delivery.body))
        else:
            kind, payload = "interactive", json.loads(dict(parse_qsl(delivery.body))["payload"])
        self.deliveries.append(delivery)
        ack = await hub.deliver(kind, payload, ack_within=self.timeout or 3.0)
        response = httpx.Response(200, json=ack) if ack else httpx.Response(200)
        delivery.response = response
        if delivery.kind == "command":
            self._show_command_answer(delivery, response)
        return response

    def _show_command_answer(self, delivery: Delivery, response: httpx.Response) -> None:
        if response.status_code != 200:
            self._slackbot_error(delivery, "dispatch_failed")
            return
        body = response.content.strip()
        if not body:
            return
        payload: dict[str, Any]
        try:
            decoded = json.loads(body)
            payload = decoded if isinstance(decoded, dict) else {"text": str(decoded)}
        except ValueError:
            payload = {"text": body.decode("utf-8", "replace")}
        try:
            self.workspace.respond(delivery.response_url_id, payload, counts=False)
        except ApiError:
            # Slack drops an unusable ack body silently for the user; the test sees the call.
            pass

    def _slackbot_error(self, delivery: Delivery, code: str) -> None:
        run = next((c for c in reversed(self.workspace.commands)
                    if c.trigger_id == delivery.trigger_id), None)
        command = run.command if run else "/command"
        self.workspace.post_ephemeral(
            delivery.channel, delivery.user, text=f'{command} failed with the error "{code}"',
            via="slackbot", check_membership=False, author=SLACKBOT_ID)


def _find_button(target: Message | Ephemeral, action_id: str,
                 value: str | None) -> tuple[str | None, Block]:
    """The button as the clicking user saw it: current blocks first, then earlier versions."""
    versions = [target.blocks] + [e.blocks for e in reversed(target.edits)]
    for blocks in versions:
        matches = [(bid, b) for bid, b in iter_buttons(blocks) if b.get("action_id") == action_id]
        for bid, button in matches:
            if value is None or button.get("value") == value:
                return bid, button
        if matches:
            return matches[0]
    return None, {}
