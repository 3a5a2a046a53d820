"""What Slack's refusals of a message mean for the notifier: which are for good (about the
channel, or about the message itself, which then goes again as short plain text) and how long
to wait before the next try of one that is not."""

from __future__ import annotations

import random

from bot.blocks import truncate

# Permanent refusals about the channel (the bot cannot post there at all).
CHANNEL_REFUSALS = frozenset({"not_in_channel", "channel_not_found", "is_archived",
                              "restricted_action", "restricted_action_read_only_channel",
                              "cannot_reply_to_message", "ekm_access_denied"})
# Permanent refusals about the message: the same news as plain, short text goes through.
CONTENT_REFUSALS = frozenset({"msg_too_long", "invalid_blocks", "invalid_blocks_format",
                              "too_many_attachments", "invalid_attachments",
                              "invalid_metadata_format", "invalid_metadata_schema",
                              "metadata_too_large", "no_text", "markdown_text_conflict"})
SHORT_TEXT = 3000
MAX_BACKOFF = 300.0


def backoff_delay(attempts: int, retry_after: float | None) -> float:
    """Seconds before retrying an item that failed `attempts` times."""
    if retry_after is not None:
        return max(retry_after, 0.5)
    return min(MAX_BACKOFF, 2.0 ** min(attempts, 8)) * (0.5 + random.random() / 2)


def shortened(text: str) -> str:
    """The fallback text of a message Slack refused as too long or malformed."""
    return truncate(text, SHORT_TEXT) if text else "(message could not be shown)"
