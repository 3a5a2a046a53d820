"""The Home tab and DMs of the emulated workspace: `views.publish` and `conversations.open`.

Checked as Slack checks them (no I/O; `ApiError` carries Slack's error code):
- views.publish (docs.slack.dev/reference/methods/views.publish): `user_id` and `view` required
  (`invalid_arguments`, "invalid `user_id`"); the Home tab must be enabled for the app
  (`not_enabled`); a stale `hash` is a `hash_conflict`; a view over 250 KB is `view_too_large`;
  `external_id` is unique per team (`duplicate_external_id`).
- Home tab view objects (docs.slack.dev/reference/views/home-tab-views): `type` "home",
  `blocks` required, at most 100; `private_metadata` at most 3,000 characters, `callback_id` at
  most 255. Block problems answer `invalid_arguments` with a pointer, as views do.
- conversations.open (docs.slack.dev/reference/methods/conversations.open): `users` (comma
  separated) or `channel` (an IM's id); neither is `users_list_not_supplied`; an unknown user
  `user_not_found`; more than 8 `too_many_users`; a channel that is no IM
  `method_not_supported_for_channel_type`. Bot scope `im:write` (sandbox.slack.scopes).
  Opening an open DM answers `no_op` / `already_open`. Group DMs (several users) are not
  emulated and are refused rather than faked.
"""

from __future__ import annotations

import copy
import json
import secrets
from typing import Any

from sandbox.slack.model import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    ApiError,
    Channel,
    SlackWorkspace,
    validate_blocks,
)

MAX_VIEW_BLOCKS = 100
MAX_PRIVATE_METADATA = 3_000
MAX_CALLBACK_ID = 255
# "greater than 250kb" (views.publish, view_too_large); read as 250,000 bytes of JSON, the
# stricter of the two readings.
MAX_VIEW_BYTES = 250_000
MAX_OPEN_USERS = 8


def _invalid(detail: str) -> ApiError:
    return ApiError("invalid_arguments", detail=f"[ERROR] {detail}")


def validate_home_view(view: Any) -> dict[str, Any]:
    """A Home tab view object as Slack accepts it, or `ApiError`."""
    if not isinstance(view, dict):
        raise _invalid("view must be an object [json-pointer:/view]")
    if view.get("type") != "home":
        raise _invalid("views.publish takes a view of type home [json-pointer:/view/type]")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        raise _invalid("missing required field: blocks [json-pointer:/view/blocks]")
    if len(blocks) > MAX_VIEW_BLOCKS:
        raise _invalid(f"no more than {MAX_VIEW_BLOCKS} items allowed "
                       "[json-pointer:/view/blocks]")
    try:
        validate_blocks(blocks, max_blocks=MAX_VIEW_BLOCKS)
    except ApiError as exc:
        raise _invalid(f"{exc.detail} [json-pointer:/view/blocks]") from None
    for name, limit in (("private_metadata", MAX_PRIVATE_METADATA),
                        ("callback_id", MAX_CALLBACK_ID)):
        value = view.get(name, "")
        if not isinstance(value, str) or len(value) > limit:
            raise _invalid(f"{name} must be a string of at most {limit} characters "
                           f"[json-pointer:/view/{name}]")
    if len(json.dumps(view, ensure_ascii=False).encode()) > MAX_VIEW_BYTES:
        raise ApiError("view_too_large")
    return copy.deepcopy(view)


def publish_home(ws: SlackWorkspace, user_id: Any, view: Any,
                 view_hash: Any = None) -> dict[str, Any]:
    """views.publish: store `view` as `user_id`'s Home tab; returns the published view."""
    if not user_id or str(user_id) not in ws.users or ws.users[str(user_id)].is_bot:
        raise _invalid("invalid `user_id`")
    user = str(user_id)
    if view is None:
        raise _invalid("missing required field: view")
    checked = validate_home_view(view)
    if not ws.home_tab_enabled:
        raise ApiError("not_enabled")
    current = ws.home_views.get(user)
    if view_hash and (current is None or current["hash"] != str(view_hash)):
        raise ApiError("hash_conflict")
    external_id = str(checked.get("external_id") or "")
    if external_id and any(v.get("external_id") == external_id
                           for u, v in ws.home_views.items() if u != user):
        raise ApiError("duplicate_external_id")
    view_id = current["id"] if current else f"V{secrets.token_hex(5).upper()}"
    published = {
        "id": view_id, "team_id": TEAM_ID, "type": "home", "blocks": checked["blocks"],
        "private_metadata": checked.get("private_metadata", ""),
        "callback_id": checked.get("callback_id", ""), "state": {"values": {}},
        "hash": f"{ws.clock():.7f}.{secrets.token_hex(4)}", "title": None, "close": None,
        "submit": None, "clear_on_close": False, "notify_on_close": False,
        "root_view_id": view_id, "previous_view_id": None, "app_id": APP_ID,
        "external_id": external_id, "app_installed_team_id": TEAM_ID, "bot_id": BOT_ID,
    }
    ws.home_views[user] = published
    return copy.deepcopy(published)


def open_conversation(ws: SlackWorkspace, users: Any = None,
                      channel: Any = None) -> tuple[Channel, bool]:
    """conversations.open: the DM with one user (opened if need be); (channel, was open)."""
    if channel:
        found = ws.channel(str(channel))
        if not found.is_im:
            raise ApiError("method_not_supported_for_channel_type")
        if BOT_USER_ID not in found.members:
            raise ApiError("channel_not_found")
        return found, True
    ids = [u.strip() for u in str(users or "").split(",") if u.strip()]
    if not ids:
        raise ApiError("users_list_not_supplied")
    if len(ids) > MAX_OPEN_USERS:
        raise ApiError("too_many_users")
    if any(uid not in ws.users for uid in ids):
        raise ApiError("user_not_found")
    if len(ids) > 1:
        raise _invalid("group DMs are not emulated")
    was_open = ("D" + ids[0][1:]) in ws.channels
    return ws.dm(ids[0]), was_open
